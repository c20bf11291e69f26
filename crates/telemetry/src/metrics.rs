//! The process's Prometheus registry and the collectors every component
//! shares (SQL statements, gRPC calls on both sides).

use std::sync::Arc;

use prometheus::{Encoder as _, HistogramOpts, HistogramVec, Registry, TextEncoder};

use crate::grpc_metrics as grpc;

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
        if let Err(e) = registry.register(Box::new(crate::process::ProcessCollector::for_self())) {
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

    /// Tower layer for gRPC client channels (`otus_grpc::client::channel`
    /// puts it on every channel).
    pub fn grpc_client_layer(&self) -> grpc::GrpcMetricsLayer {
        grpc::GrpcMetricsLayer::new(self.grpc_client.clone(), grpc::Side::Client)
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

/// Registers `collector` on `registry` and hands it back, so a component
/// makes and registers each of its collectors in one expression.
pub fn registered<C>(registry: &Registry, collector: C) -> prometheus::Result<C>
where
    C: prometheus::core::Collector + Clone + 'static,
{
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

/// Histogram buckets (seconds) that resolve sub-millisecond answers as well as
/// multi-second ones: 0.25 ms … 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
