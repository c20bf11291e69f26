//! Telemetry shared by every otus-rs process.
//!
//! - [`init`], [`init_logging`] (`logging`): structured logs through `tracing`
//!   (text or JSON), filtered by `RUST_LOG`, and OTLP trace export ([`trace`]).
//! - [`Metrics`]: the process's Prometheus registry; each component registers its
//!   own collectors on it.
//! - [`serve_admin`]: the admin HTTP server with `/metrics`. It listens on its own
//!   port, which the public ingress never routes, so metrics are not public.
//! - [`shutdown_signal`]: SIGINT/SIGTERM as a [`CancellationToken`] that every
//!   server of the process watches, so one signal drains them all.
//! - [`grpc_metrics`]: gRPC call metrics and spans, as a tower layer for
//!   servers and client channels alike (the channels themselves are
//!   `otus_grpc::client`'s).
//! - [`windowed_max`]: the windowed maximum behind the `*_max_seconds` gauges.

mod admin;
pub mod grpc_metrics;
mod logging;
mod metrics;
#[cfg(target_os = "linux")]
pub mod process;
mod shutdown;
pub mod trace;
pub mod windowed_max;

pub use admin::{admin_router, serve_admin};
pub use logging::{
    DEFAULT_LOG_FILTER, ENVIRONMENT, EnvVar, LogFormat, TRACE_ONLY, init, init_logging,
};
pub use metrics::{LATENCY_BUCKETS, Metrics, registered};
pub use shutdown::shutdown_signal;
pub use tokio_util::sync::CancellationToken;
