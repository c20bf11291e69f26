//! What every long-running subcommand does around its servers.

use std::{net::SocketAddr, pin::Pin};

use anyhow::Context as _;
use otus_telemetry::{CancellationToken, Metrics};

/// A server of this process: what it is, and what serves it until shutdown.
pub(crate) type Serving = (
    &'static str,
    Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
);

/// A gRPC server of a service crate, as one of this process's servers.
pub(crate) fn grpc(name: &'static str, server: otus_grpc::BoundServer) -> Serving {
    (name, Box::pin(server.run()))
}

/// An HTTP server (the edge, the admin port), as one of this process's
/// servers.
pub(crate) fn http(
    name: &'static str,
    serve: impl Future<Output = std::io::Result<()>> + Send + 'static,
) -> Serving {
    (
        name,
        Box::pin(async move { serve.await.with_context(|| format!("{name} server")) }),
    )
}

/// Waits for every server; the first failure is the answer.
pub(crate) async fn join_all(servers: Vec<Serving>) -> anyhow::Result<()> {
    let results = futures::future::join_all(servers.into_iter().map(|(_, f)| f)).await;
    results.into_iter().collect()
}

/// What every long-running subcommand does: SIGINT/SIGTERM become the
/// shutdown token, `start` binds the process's servers with a fresh metrics
/// registry, the admin port serves that registry, and the process runs until
/// every server has drained.
pub async fn run_process<F, Fut>(admin_addr: SocketAddr, start: F) -> anyhow::Result<()>
where
    F: FnOnce(Metrics, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Serving>>>,
{
    let shutdown = otus_telemetry::shutdown_signal();
    let metrics = Metrics::new();
    let mut servers = start(metrics.clone(), shutdown.clone()).await?;
    let (admin, serve_admin) = otus_telemetry::serve_admin(admin_addr, metrics, shutdown).await?;
    let names: Vec<&str> = servers.iter().map(|(name, _)| *name).collect();
    tracing::info!(%admin, servers = ?names, "listening; metrics on http://{admin}/metrics");
    servers.push(http("admin", serve_admin));
    join_all(servers).await
}
