//! Logs (text or JSON, filtered by `RUST_LOG`) and the subscriber that also
//! exports traces over OTLP when an endpoint is configured.

use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use crate::trace;

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
