//! Telemetry shared by every otus-rs process.
//!
//! - [`init_logging`]: structured logs through `tracing` (text or JSON), filtered
//!   by `RUST_LOG`.
//! - [`Metrics`]: the process's Prometheus registry; each component registers its
//!   own collectors on it.
//! - [`serve_admin`]: the admin HTTP server with `/metrics`. It listens on its own
//!   port, which the public ingress never routes, so metrics are not public.
//! - [`shutdown_signal`]: SIGINT/SIGTERM as a [`CancellationToken`] that every
//!   server of the process watches, so one signal drains them all.

pub mod balance;
pub mod grpc;
pub mod max;
pub mod trace;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus::{Encoder as _, HistogramOpts, HistogramVec, Registry, TextEncoder};
pub use tokio_util::sync::CancellationToken;

/// A gRPC client channel whose calls are counted and timed
/// (`grpc_client_handling_seconds`) and spread over the backend's addresses
/// ([`balance`]); made by [`Metrics::metered_channel`]. The edge's channels to
/// every backend and auth's channel to users are this one type.
pub type MeteredChannel = grpc::GrpcMetrics<balance::Balanced>;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Log filter used when `RUST_LOG` is unset: our crates at info, and the SQL
/// driver quiet (sqlx logs every statement at INFO otherwise).
/// sea-orm stays at info: its per-statement spans (not log lines) are INFO.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,h2=warn,tower=warn,hyper=warn";

/// An environment variable read directly (a standard name other tools set)
/// rather than through `otus`'s command line.
#[derive(Clone, Copy, Debug)]
pub struct EnvVar {
    /// The variable.
    pub name: &'static str,
    /// What applies when it is unset.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
}

/// Every variable this crate reads from the environment itself. The README's
/// configuration table lists them beside the command-line ones (a test keeps
/// the two in step).
pub const ENVIRONMENT: &[EnvVar] = &[
    EnvVar {
        name: "OTEL_EXPORTER_OTLP_ENDPOINT",
        default: "unset (no export)",
        meaning: "OTLP/gRPC endpoint for traces, e.g. `http://jaeger:4317`",
    },
    EnvVar {
        name: "OTEL_SERVICE_NAME",
        default: "`otus-edge`, `otus-users`, … (`otus` for all-in-one)",
        meaning: "Service name on the spans",
    },
    EnvVar {
        name: "RUST_LOG",
        default: "`info,sqlx=warn,…`",
        meaning: "Log filter (also filters spans: keep `sea_orm=info` for SQL spans)",
    },
];

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable single lines (local development).
    #[default]
    Text,
    /// One JSON object per line (Kubernetes, log shippers).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Installs the global `tracing` subscriber without trace export. Safe to
/// call more than once (tests do): later calls are ignored.
pub fn init_logging(format: LogFormat) {
    let _ = init(format, "otus", None);
}

/// Target of the spans that exist for traces only: the edge's request span
/// and the client side of gRPC calls. The log layer never sees them (an
/// edge request would otherwise pay for formatting its span's fields as JSON
/// although a success logs nothing), so without an OTLP endpoint they are
/// not created at all. The edge's access line carries the request id, route
/// and trace id itself; the services' own spans (`grpc.server`, SQL) stay in
/// the logs, so their lines keep their context.
pub const TRACE_ONLY: &str = "otus::trace";

/// Installs the global `tracing` subscriber: logs, and OTLP trace export when
/// `otlp_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Keep the guard
/// and call its `shutdown` before exiting, so the last spans are sent.
pub fn init(
    format: LogFormat,
    service_name: &str,
    otlp_endpoint: Option<String>,
) -> trace::TracingGuard {
    let provider = trace::provider(service_name, otlp_endpoint);
    let tracer = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        p.tracer("otus")
    });
    // `try_init` fails only when a subscriber is already installed: keep it.
    let _ = subscriber(format, tracer, log_filter).try_init();
    trace::TracingGuard::from(provider)
}

/// `RUST_LOG`, or [`DEFAULT_LOG_FILTER`] when it is unset or not understood.
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
}

/// The subscriber [`init`] installs: a log layer (without [`TRACE_ONLY`]
/// spans) and, with a tracer, the OpenTelemetry layer; each filtered by
/// `filter()`.
fn subscriber(
    format: LogFormat,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
    filter: fn() -> EnvFilter,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    use tracing_subscriber::{Layer, filter::FilterExt as _, registry::Registry};
    let logged = filter().and(tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.is_span() && meta.target() == TRACE_ONLY)
    }));
    // Colour codes only for a terminal: in a file or a pipe they are noise,
    // and formatting them costs every line.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let log: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_ansi(ansi)
            .with_filter(logged)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(logged)
            .boxed(),
    };
    // Every layer has its own filter, so a span no layer wants is not
    // created at all. (An absent layer written as `Option::None` would count
    // as a layer that wants everything.)
    let mut layers = vec![log];
    if let Some(tracer) = tracer {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter())
                .boxed(),
        );
    }
    Box::new(tracing_subscriber::registry().with(layers))
}

/// A process's metrics registry, with the collectors every component
/// shares. Cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    grpc_server: HistogramVec,
    grpc_client: HistogramVec,
    db_queries: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    // Fixed names, fixed labels, a fresh registry: these cannot clash.
    let h = HistogramVec::new(opts, labels).unwrap_or_else(|e| {
        panic!("invalid built-in histogram {name}: {e}") // cannot fail: literal, valid options
    });
    if let Err(e) = registry.register(Box::new(h.clone())) {
        tracing::error!(error = %e, metric = name, "registering a metric failed");
    }
    h
}

impl Metrics {
    /// A registry with process metrics (CPU, memory, file descriptors) and
    /// the shared gRPC and database histograms.
    pub fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        let grpc_labels = ["grpc_service", "grpc_method", "grpc_code"];
        Self {
            grpc_server: histogram(
                &registry,
                "grpc_server_handling_seconds",
                "gRPC calls served, by service, method and status code.",
                &grpc_labels,
            ),
            grpc_client: histogram(
                &registry,
                "grpc_client_handling_seconds",
                "gRPC calls made to other services, by service, method and status code.",
                &grpc_labels,
            ),
            db_queries: histogram(
                &registry,
                "db_query_duration_seconds",
                "SQL statements, by operation (select, insert, update, delete, other) and outcome (ok, error).",
                &["operation", "outcome"],
            ),
            registry: Arc::new(registry),
        }
    }

    /// Tower layer for gRPC servers (tonic `Server::builder().layer(...)`).
    pub fn grpc_server_layer(&self) -> grpc::GrpcMetricsLayer {
        grpc::GrpcMetricsLayer::new(self.grpc_server.clone(), grpc::Side::Server)
    }

    /// Tower layer for gRPC client channels.
    pub fn grpc_client_layer(&self) -> grpc::GrpcMetricsLayer {
        grpc::GrpcMetricsLayer::new(self.grpc_client.clone(), grpc::Side::Client)
    }

    /// A [`balance::Balanced`] channel to `url` (its name resolved again every
    /// [`balance::RESOLVE_EVERY`]) with client metrics. It connects on first
    /// use, so a caller starts (and answers its own health checks) while the
    /// backend is still down; calls then fail fast with UNAVAILABLE. Needs a
    /// Tokio runtime.
    pub fn metered_channel(&self, url: &str) -> anyhow::Result<MeteredChannel> {
        use tower::Layer as _;
        let channel = balance::Balanced::new(url, balance::RESOLVE_EVERY, balance::dns())?;
        Ok(self.grpc_client_layer().layer(channel))
    }

    /// Records one SQL statement.
    pub fn observe_db(&self, sql: &str, failed: bool, elapsed: std::time::Duration) {
        let verb = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let operation = match verb.as_str() {
            "select" | "with" => "select",
            "insert" => "insert",
            "update" => "update",
            "delete" => "delete",
            _ => "other",
        };
        let outcome = if failed { "error" } else { "ok" };
        self.db_queries
            .with_label_values(&[operation, outcome])
            .observe(elapsed.as_secs_f64());
    }

    /// The registry to register collectors on.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything registered, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec fails only on an inconsistent collector, which
        // would be a programming error; an empty page is the safe answer.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Histogram buckets (seconds) that resolve sub-millisecond answers as well as
/// multi-second ones: 0.25 ms … 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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

/// A token cancelled at the first SIGINT or SIGTERM.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {},
                        _ = term.recv() => {},
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received; draining");
        t.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> EnvFilter {
        EnvFilter::new("info")
    }

    #[test]
    fn trace_only_spans_exist_only_for_an_exporter() {
        // Without a tracer: nothing wants the edge's request span, so it is
        // never created (its fields are not even evaluated); the services'
        // spans still are, for the log lines inside them.
        let logs_only = subscriber(LogFormat::Json, None, info);
        tracing::subscriber::with_default(logs_only, || {
            assert!(tracing::info_span!(target: TRACE_ONLY, "http.request").is_disabled());
            assert!(!tracing::info_span!("grpc.server").is_disabled());
        });
        // With one, the OpenTelemetry layer gets it.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracer = {
            use opentelemetry::trace::TracerProvider as _;
            provider.tracer("test")
        };
        let traced = subscriber(LogFormat::Json, Some(tracer), info);
        tracing::subscriber::with_default(traced, || {
            assert!(!tracing::info_span!(target: TRACE_ONLY, "http.request").is_disabled());
        });
    }
}
