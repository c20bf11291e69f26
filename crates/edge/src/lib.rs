//! The edge: the public REST/JSON API (`../shared/CONTRACT.md`) on :8000,
//! translated onto the gRPC services.
//!
//! - [`health`]: `/health`, `/health/` (liveness) and `/ready` (backends up).
//! - [`auth`]: the account routes → `AuthService`: registration
//!   (`/register`, `POST /user`), `/login`, `/logout`.
//! - [`users`]: the `/user/{userId}` and `/me` resource → `UsersService` with
//!   the caller's identity token (the users service enforces ownership).
//! - [`products`]: public `/products` search and lookup → `CatalogService`
//!   (the catalog owns the search rules; the edge parses types).
//! - [`session`]: who is calling (Bearer token or session cookie →
//!   `AuthService/Authenticate` → [`session::Caller`]), the session cookie.
//! - [`profile`]: the REST `User` and the fields a client may send, from the
//!   one field table (`otus_proto::user_fields`).
//! - [`state`]: [`EdgeConfig`] and [`AppState`] (the gRPC clients, and how a
//!   handler's gRPC request carries deadline, request id and identity).
//! - [`body`]: strict JSON body reading (4xx JSON errors, never 500).
//! - [`error`]: [`ApiError`], the one error shape, and the gRPC→HTTP mapping.
//! - [`observe`]: request id, access log, metrics by route template, timeout.
//! - [`listener`]: the HTTP/1.1 listener (header-read timeout, connection
//!   cap) and body reading (413 on a declared oversize, 408 on a stalled body).
//!
//! A request flows: `observe` (id, span, metrics) → `timeout` → body read →
//! handler → gRPC call with a deadline and the request id in metadata →
//! response or [`ApiError`].
//!
//! Imports inside the crate point one way: route modules (`auth`, `users`,
//! `products`, `health`) → `session`, `profile`, `body` → `state`,
//! `observe`, `listener` → `error`; the crate root only declares modules and
//! merges the routers.

pub mod auth;
pub mod body;
pub mod conn;
pub mod credentials;
pub mod error;
pub mod health;
pub mod listener;
pub mod observe;
pub mod products;
pub mod profile;
pub mod session;
pub mod state;
pub mod users;

use anyhow::Context as _;
use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    http::StatusCode,
    middleware,
    routing::get,
};
pub use error::ApiError;
use otus_telemetry::{CancellationToken, Metrics};
pub use state::{AppState, EdgeConfig};

/// The port the edge answers HTTP on unless told otherwise.
pub const HTTP_PORT: u16 = 8000;

/// The complete edge router.
pub fn router(
    cfg: &EdgeConfig,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Router> {
    let state = AppState::new(cfg, metrics, shutdown)?;
    let http_metrics =
        observe::HttpMetrics::register(metrics.registry()).context("registering HTTP metrics")?;
    Ok(Router::new()
        .route("/health", get(health::health))
        .route("/health/", get(health::health))
        .route("/ready", get(health::ready))
        .merge(users::router())
        .merge(auth::router())
        .merge(products::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // The body limit has one owner: the pipeline below reads every body
        // under `cfg.body_limit` (413 with the limit in the message) before
        // any extractor runs, so axum's own limit would only be a second,
        // unreachable one.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            observe::Pipeline {
                metrics: http_metrics,
                timeout: cfg.request_timeout,
                body: listener::BodyLimits {
                    max_bytes: cfg.body_limit,
                    read_timeout: cfg.body_read_timeout,
                },
            },
            observe::request,
        )))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

pub use auth::parse_trusted_proxy;
pub use ipnet::IpNet;
pub use listener::{ListenerLimits, serve};
