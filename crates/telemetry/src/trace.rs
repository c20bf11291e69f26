//! OpenTelemetry traces: W3C trace context in and out, export over OTLP/gRPC.
//!
//! Export is configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (unset: no exporter, no cost beyond `tracing` itself) and
//! `OTEL_SERVICE_NAME` (default: the subcommand's name). Jaeger accepts OTLP
//! directly on :4317.
//!
//! Propagation: the edge continues a client's `traceparent`; every gRPC call
//! carries the caller's span context in its metadata ([`inject`]); every gRPC
//! server continues it ([`extract`]). sea-orm's `tracing-spans` adds one child
//! span per SQL statement.

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
    trace::TraceContextExt as _,
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes `span`'s context into outgoing headers (`traceparent`).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

/// Makes `span` continue the trace of incoming headers, if they carry one,
/// and records its trace id in the span's `trace_id` field (so log lines
/// inside it carry it).
pub fn extract(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() {
        // Nothing records it (a trace-only span without an exporter).
        return;
    }
    let parent: Context = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// The trace id of `span`, when it is part of a trace (an exporter is
/// configured), as 32 hex digits: for log lines outside the span.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let id = span.context().span().span_context().trace_id();
    (id != opentelemetry::TraceId::INVALID).then(|| id.to_string())
}

/// Sets an attribute on `span`'s OpenTelemetry span only. Unlike
/// `span.record(..)`, the log layer never sees it: recording into a span
/// the JSON log layer has formatted makes that layer parse the span's
/// fields back from JSON and write them again, on every request.
pub fn set_attribute(span: &tracing::Span, key: &'static str, value: i64) {
    span.set_attribute(key, value);
}

/// Keeps the exporter alive; [`TracingGuard::shutdown`] flushes it.
#[derive(Default)]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Sends every finished span and stops the exporter.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "flushing traces failed");
            }
            let _ = p.shutdown();
        }
    }
}

impl From<Option<SdkTracerProvider>> for TracingGuard {
    fn from(provider: Option<SdkTracerProvider>) -> Self {
        Self { provider }
    }
}

/// The OTLP exporter's tracer provider, when an endpoint is configured.
pub(crate) fn provider(service_name: &str, endpoint: Option<String>) -> Option<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let endpoint = endpoint
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.is_empty())?;
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| service_name.to_owned());
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("OTLP exporter for {endpoint} could not be built, traces are off: {e}");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            RequestsOnly,
        )))
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(name).build())
        .build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    Some(provider)
}

/// Which traces are kept: a trace starts where a request arrives (a server
/// span), except the probes' (`GET /health`, `GET /ready`, gRPC health
/// checks), which a kubelet sends every few seconds per pod. Background
/// work with no request around it (the catalog's index poll every second,
/// the database watchers' health queries) would otherwise be a one-span trace
/// each time. Children follow their parent (`ParentBased`).
#[derive(Debug, Clone)]
struct RequestsOnly;

/// Root span names that are probes, not requests.
fn is_probe(name: &str) -> bool {
    matches!(name, "GET /health" | "GET /health/" | "GET /ready")
        || name.starts_with("grpc.health.v1.Health/")
}

impl opentelemetry_sdk::trace::ShouldSample for RequestsOnly {
    fn should_sample(
        &self,
        _parent: Option<&Context>,
        _trace_id: opentelemetry::TraceId,
        name: &str,
        kind: &opentelemetry::trace::SpanKind,
        _attributes: &[opentelemetry::KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        use opentelemetry::trace::SpanKind;
        use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult};
        let keep = *kind == SpanKind::Server && !is_probe(name);
        SamplingResult {
            decision: if keep {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: Default::default(),
        }
    }
}

/// A client span for one Redis operation (`command` is e.g. `GET` or
/// `SESSION CREATE` for a short sequence), so traces show Redis round trips.
pub fn redis_span(command: &'static str) -> tracing::Span {
    tracing::info_span!(
        "redis",
        otel.name = command,
        otel.kind = "client",
        db.system = "redis",
        db.operation = command,
    )
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanKind, TraceContextExt as _, TraceId};
    use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample as _};

    use super::*;

    fn decide(parent: Option<&Context>, name: &str, kind: SpanKind) -> SamplingDecision {
        Sampler::ParentBased(Box::new(RequestsOnly))
            .should_sample(parent, TraceId::from(7), name, &kind, &[], &[])
            .decision
    }

    #[test]
    fn traces_start_at_requests_not_at_probes_or_background_work() {
        use SamplingDecision::{Drop, RecordAndSample};
        assert_eq!(
            decide(None, "GET /products", SpanKind::Server),
            RecordAndSample
        );
        assert_eq!(
            decide(None, "otus.users.v1.UsersService/GetUser", SpanKind::Server),
            RecordAndSample
        );
        for probe in [
            "GET /health",
            "GET /health/",
            "GET /ready",
            "grpc.health.v1.Health/Check",
        ] {
            assert_eq!(decide(None, probe, SpanKind::Server), Drop, "{probe}");
        }
        // SQL or Redis with no request around it (pollers, health watchers).
        assert_eq!(decide(None, "sea_orm.query", SpanKind::Client), Drop);
        assert_eq!(decide(None, "catalog.index", SpanKind::Internal), Drop);
        // Inside a sampled request, everything follows the parent.
        let parent =
            Context::new().with_remote_span_context(opentelemetry::trace::SpanContext::new(
                TraceId::from(7),
                opentelemetry::trace::SpanId::from(9),
                opentelemetry::trace::TraceFlags::SAMPLED,
                true,
                Default::default(),
            ));
        assert_eq!(
            decide(Some(&parent), "sea_orm.query", SpanKind::Client),
            RecordAndSample
        );
    }
}
