//! The admin HTTP server: `GET /metrics` on a port of its own, which the
//! public ingress never routes.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};

use crate::{CancellationToken, Metrics};

/// The admin router: `GET /metrics`.
pub fn admin_router(metrics: Metrics) -> Router {
    async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics.render(),
        )
    }
    Router::new()
        .route("/metrics", get(render))
        .with_state(metrics)
}

/// Binds the admin server and returns its address and the serving future.
pub async fn serve_admin(
    addr: SocketAddr,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin (metrics) port {addr}"))?;
    let local = listener.local_addr()?;
    let fut = async move {
        axum::serve(listener, admin_router(metrics))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    };
    Ok((local, fut))
}
