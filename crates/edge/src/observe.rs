//! Per-request plumbing: request id, the request span and log line, the HTTP
//! metrics, and the overall request timeout.

use std::time::{Duration, Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts, Registry};
use tracing::Instrument as _;

use crate::error::ApiError;

/// Header carrying the request id, in and out (ingress-nginx sets it too).
pub const REQUEST_ID: &str = "x-request-id";

/// Route label for requests that matched no route. Raw paths are never used as
/// labels: one series per user id would blow up Prometheus.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The edge's HTTP metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    /// The true maximum per route over the last 30–60 s (histograms only
    /// bound it by a bucket).
    max: otus_telemetry::max::WindowedMax,
}

impl HttpMetrics {
    /// Creates the collectors and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_server_request_duration_seconds",
                "Time from request received to response headers sent, by route template.",
            )
            .buckets(otus_telemetry::LATENCY_BUCKETS.to_vec()),
            &["method", "route", "status"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "http_server_active_requests",
                "Requests being served right now, by route template.",
            ),
            &["method", "route"],
        )?;
        let max = otus_telemetry::max::WindowedMax::new(
            "http_server_request_duration_max_seconds",
            "Largest request duration of the last 30-60 s, by route template.",
            &["method", "route"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(max.clone()))?;
        Ok(Self {
            duration,
            in_flight,
            max,
        })
    }
}

/// Bounded method label: unknown verbs collapse into `OTHER`.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Accepts a client's request id only if it is short and plain; otherwise a
/// fresh UUID (ids end up in logs and gRPC metadata).
fn request_id(req: &Request) -> HeaderValue {
    let ok = |v: &&HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
    };
    match req.headers().get(REQUEST_ID).filter(ok) {
        Some(v) => v.clone(),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            // A UUID's text is ASCII hex and dashes: always a valid header.
            HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"))
        }
    }
}

/// Headers every answer carries: `X-Content-Type-Options: nosniff` (a JSON
/// answer is never sniffed into HTML), and `Cache-Control: no-store` on
/// everything but the public catalog, so no shared cache keeps a profile, a
/// token or a session answer.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let public = req.uri().path().starts_with("/products");
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    if !public && !headers.contains_key(axum::http::header::CACHE_CONTROL) {
        headers.insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

/// Outermost middleware: request id, span, access log line and metrics.
pub async fn observe(State(metrics): State<HttpMetrics>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(&req);
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.method = method,
        http.route = %route,
        request_id = %id.to_str().unwrap_or_default(),
        trace_id = tracing::field::Empty,
    );
    // Continue the client's W3C `traceparent`, if any.
    otus_telemetry::trace::extract(&span, req.headers());
    let gauge = metrics.in_flight.with_label_values(&[method, &route]);
    gauge.inc();
    let mut resp = next.run(req).instrument(span.clone()).await;
    gauge.dec();
    let elapsed = start.elapsed();
    let status = resp.status();
    metrics
        .duration
        .with_label_values(&[method, &route, status.as_str()])
        .observe(elapsed.as_secs_f64());
    metrics
        .max
        .observe(&[method, &route], elapsed.as_secs_f64());
    // Into the trace only (the access line below carries it for the logs).
    otus_telemetry::trace::set_attribute(&span, "http.status_code", i64::from(status.as_u16()));
    // The access log line: server errors at WARN, client errors at INFO,
    // successes at DEBUG. Every request is already counted and timed in the
    // metrics and traced, and ingress-nginx keeps an access log; formatting
    // and writing a line for each success was the largest per-request cost
    // of the edge (about a third of its `/health/` throughput on 2 cores).
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        let code = status.as_u16();
        if status.is_server_error() {
            tracing::warn!(http.status = code, latency_ms, "request finished");
        } else if status.is_client_error() {
            tracing::info!(http.status = code, latency_ms, "request finished");
        } else {
            tracing::debug!(http.status = code, latency_ms, "request finished");
        }
    });
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
}

/// Answers 504 when the whole request takes longer than `limit` (a backstop:
/// the gRPC deadline is shorter and normally fires first).
pub async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}
