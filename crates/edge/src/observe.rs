//! Per-request plumbing, in one middleware ([`request`]) so a request pays
//! for one layer: request id, the request span and log line, the HTTP
//! metrics, the limits on the request's head and body, the overall request
//! timeout, and the security headers of every answer.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, PoisonError, RwLock},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use otus_telemetry::{registered, windowed_max::MaxHandle};
use prometheus::{HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, Registry};
use tracing::Instrument as _;

use crate::{
    error::ApiError,
    listener::{self, BodyLimits},
};

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
    max: otus_telemetry::windowed_max::WindowedMax,
    /// Each route's series, looked up once rather than per request.
    routes: Arc<RwLock<HashMap<Arc<str>, Arc<RouteSeries>>>>,
}

/// The series of one route template, per method label ([`METHODS`]).
struct RouteSeries {
    by_method: [OnceLock<(IntGauge, MaxHandle)>; METHODS.len()],
}

impl HttpMetrics {
    /// Creates the collectors and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let duration = registered(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "http_server_request_duration_seconds",
                    "Time from request received to response headers sent, by route template.",
                )
                .buckets(otus_telemetry::LATENCY_BUCKETS.to_vec()),
                &["method", "route", "status"],
            )?,
        )?;
        let in_flight = registered(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "http_server_active_requests",
                    "Requests being served right now, by route template.",
                ),
                &["method", "route"],
            )?,
        )?;
        let max = registered(
            registry,
            otus_telemetry::windowed_max::WindowedMax::new(
                "http_server_request_duration_max_seconds",
                "Largest request duration of the last 30-60 s, by route template.",
                &["method", "route"],
            )?,
        )?;
        Ok(Self {
            duration,
            in_flight,
            max,
            routes: Arc::default(),
        })
    }

    /// The in-flight gauge and the windowed max of (`method`, `route`).
    fn series(&self, method: usize, route: &str) -> (IntGauge, MaxHandle) {
        let known = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .cloned();
        let series = known.unwrap_or_else(|| {
            self.routes
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(Arc::from(route))
                .or_insert_with(|| {
                    Arc::new(RouteSeries {
                        by_method: Default::default(),
                    })
                })
                .clone()
        });
        // `method` indexes METHODS (method_label returns only such indexes).
        series.by_method[method]
            .get_or_init(|| {
                let labels = [METHODS[method], route];
                (
                    self.in_flight.with_label_values(&labels),
                    self.max.handle(&labels),
                )
            })
            .clone()
    }
}

/// The method labels: the common verbs, and `OTHER` for the rest.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER",
];

/// Bounded method label, as an index into [`METHODS`]: unknown verbs
/// collapse into `OTHER`.
fn method_label(m: &axum::http::Method) -> usize {
    use axum::http::Method;
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
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

/// On a response that any cache may keep because it is the same for every
/// caller (the public catalog): put there by the router that owns those
/// routes ([`shareable`]), so which routes are public is decided beside the
/// routes, not by a path here.
#[derive(Clone, Copy, Debug)]
pub struct Shareable;

/// Marks a route's answers [`Shareable`]: `.route_layer(map_response(shareable))`.
pub async fn shareable(mut resp: Response) -> Response {
    resp.extensions_mut().insert(Shareable);
    resp
}

/// Headers every answer carries: `X-Content-Type-Options: nosniff` (a JSON
/// answer is never sniffed into HTML), and `Cache-Control: no-store` on
/// everything not [`Shareable`], so no shared cache keeps a profile, a
/// token or a session answer.
fn security_headers(resp: &mut Response) {
    let public = resp.extensions().get::<Shareable>().is_some();
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
}

/// What [`request`] needs besides the metrics.
#[derive(Clone)]
pub struct Pipeline {
    /// The HTTP metrics.
    pub metrics: HttpMetrics,
    /// Longest a whole request may take (a backstop: the gRPC deadline is
    /// shorter and normally fires first); then 504.
    pub timeout: Duration,
    /// Bounds on the request body.
    pub body: BodyLimits,
}

/// The edge's one middleware, around every route: request id, span, metrics
/// and access line; then the head limits (414/431), the request timeout
/// (504) over reading the body (413/408) and the handler; the security
/// headers on whatever answers.
pub async fn request(State(p): State<Pipeline>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(&req);
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let method_index = method_label(req.method());
    let method = METHODS[method_index];
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    // For traces only (see `otus_telemetry::TRACE_ONLY`): without an OTLP
    // endpoint it is not created. The access line below says the same.
    let span = tracing::info_span!(
        target: otus_telemetry::TRACE_ONLY,
        "http.request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.method = method,
        http.route = %route,
        request_id = %id.to_str().unwrap_or_default(),
    );
    // Continue the client's W3C `traceparent`, if any.
    otus_telemetry::trace::extract(&span, req.headers());
    let (gauge, max) = p.metrics.series(method_index, route);
    gauge.inc();
    let inner = async {
        if let Some(resp) = listener::check_head(&req) {
            return resp;
        }
        let handled = async {
            match listener::read_body(p.body, req).await {
                Ok(req) => next.run(req).await,
                Err(resp) => resp,
            }
        };
        match tokio::time::timeout(p.timeout, handled).await {
            Ok(resp) => resp,
            Err(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!("the request took longer than {} ms", p.timeout.as_millis()),
            )
            .into_response(),
        }
    };
    let mut resp = inner.instrument(span.clone()).await;
    security_headers(&mut resp);
    gauge.dec();
    let elapsed = start.elapsed();
    let status = resp.status();
    p.metrics
        .duration
        .with_label_values(&[method, route, status.as_str()])
        .observe(elapsed.as_secs_f64());
    max.observe(elapsed.as_secs_f64());
    // Into the trace only (the access line below carries it for the logs).
    otus_telemetry::trace::set_attribute(&span, "http.status_code", i64::from(status.as_u16()));
    // The access log line: server errors at WARN, client errors at INFO,
    // successes at DEBUG. Every request is already counted and timed in the
    // metrics and traced, and ingress-nginx keeps an access log; formatting
    // and writing a line for each success was the largest per-request cost
    // of the edge (about a third of its `/health/` throughput on 2 cores).
    // Inside the span, so a trace shows it as an event of the request.
    span.in_scope(|| {
        let level = if status.is_server_error() {
            tracing::Level::WARN
        } else if status.is_client_error() {
            tracing::Level::INFO
        } else {
            tracing::Level::DEBUG
        };
        access_line(level, &id, method, route, status, elapsed, &span, &resp);
    });
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
}

/// Writes the access line at `level` (nothing is formatted when that level
/// is off). The request span is not in the logs (it is for traces), so the
/// line carries the request's identity itself.
#[allow(clippy::too_many_arguments)]
fn access_line(
    level: tracing::Level,
    id: &HeaderValue,
    method: &str,
    route: &str,
    status: StatusCode,
    elapsed: Duration,
    span: &tracing::Span,
    resp: &Response,
) {
    // `tracing` needs each level at compile time.
    macro_rules! line {
        ($lvl:expr) => {
            if tracing::enabled!($lvl) {
                let logged = resp.extensions().get::<crate::error::Logged>();
                tracing::event!(
                    $lvl,
                    request_id = %id.to_str().unwrap_or_default(),
                    http.method = method,
                    http.route = route,
                    http.status = status.as_u16(),
                    latency_ms = elapsed.as_secs_f64() * 1000.0,
                    reason = logged.map(|l| l.reason.as_str()),
                    cause = logged.and_then(|l| l.cause.as_deref()),
                    trace_id = otus_telemetry::trace::trace_id(span),
                    "request finished"
                );
            }
        };
    }
    match level {
        tracing::Level::WARN => line!(tracing::Level::WARN),
        tracing::Level::INFO => line!(tracing::Level::INFO),
        _ => line!(tracing::Level::DEBUG),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Body;
    use otus_telemetry::{CancellationToken, Metrics};
    use tower::ServiceExt as _;

    use super::*;
    use crate::{EdgeConfig, router};

    /// Log lines written by the subscriber under test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_request_logs_one_line_with_its_identity_and_cause() {
        let lines = Lines::default();
        let writer = lines.clone();
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone())
                .finish(),
        );
        // Nothing listens on these ports: the catalog call fails.
        let dead = "http://127.0.0.1:1".to_owned();
        let cfg = EdgeConfig {
            users_url: dead.clone(),
            auth_url: dead.clone(),
            catalog_url: dead,
            grpc_deadline: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            ..EdgeConfig::default()
        };
        let app = router(&cfg, &Metrics::new(), CancellationToken::new()).expect("router");
        let call = |uri: &str| {
            axum::http::Request::get(uri)
                .header(axum::http::header::HOST, "arch.homework")
                .header(REQUEST_ID, "req-503")
                .body(Body::empty())
                .expect("request")
        };
        let resp = app
            .clone()
            .oneshot(call("/products/7"))
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ok = app.oneshot(call("/health/")).await.expect("answer");
        assert_eq!(ok.status(), StatusCode::OK);

        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        let access: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "request finished")
            .collect();
        // The success is not logged at INFO; the failure is, once.
        assert_eq!(access.len(), 1, "access lines: {text}");
        let f = &access[0]["fields"];
        assert_eq!(access[0]["level"], "WARN");
        assert_eq!(f["request_id"], "req-503");
        assert_eq!(f["http.method"], "GET");
        assert_eq!(f["http.route"], "/products/{id}");
        assert_eq!(f["http.status"], 503);
        assert_eq!(f["reason"], "BACKEND_UNAVAILABLE");
        let cause = f["cause"].as_str().unwrap_or_default();
        assert!(cause.contains("Unavailable"), "cause: {cause}");
    }
}
