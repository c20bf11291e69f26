//! How every gRPC service of the system is served: standard health
//! (`grpc.health.v1.Health`, following the service's readiness probe), server
//! reflection (v1 and v1alpha, so both grpcurl and `buf curl` can list and
//! call methods), metrics on every call, HTTP/2 keep-alive, and graceful
//! shutdown.
//!
//! A service crate builds its router with [`service_router`], adds its own
//! service, and hands it to [`BoundServer::bind`]: the port is bound at once
//! (port 0 works in tests; [`BoundServer::addr`] tells which), and
//! [`BoundServer::run`] serves until the shutdown token fires and in-flight
//! calls have finished.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;
use otus_telemetry::{CancellationToken, Metrics};
use tokio::sync::watch;
use tonic::transport::Server;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::listener::bind;

/// How often a service asks its readiness probe.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// A readiness check: `Ok` when the service can serve, otherwise why not
/// (logged at WARN each time it is asked and fails).
pub type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A tonic router whose every call is metered.
pub type ServiceRouter = tonic::transport::server::Router<
    tower::layer::util::Stack<
        otus_telemetry::grpc_metrics::GrpcMetricsLayer,
        tower::layer::util::Identity,
    >,
>;

/// When a service is ready (its health status SERVING): its probe answers
/// `Ok` (asked every [`PROBE_INTERVAL`], and at once when a watched signal
/// moves) and its gate, if any, is open. The gRPC crate runs no query of its
/// own: the probe comes from what the service depends on (for a service on
/// the database, `otus_db::Db::table_probe`: its own table answers).
pub struct Readiness {
    service: &'static str,
    probe: Probe,
    recheck_on: Option<watch::Receiver<bool>>,
    gate: Option<watch::Receiver<bool>>,
}

impl Readiness {
    /// The fully-qualified gRPC `service` name, ready while `probe` says so.
    pub fn new<F>(service: &'static str, probe: F) -> Self
    where
        F: Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync + 'static,
    {
        Self {
            service,
            probe: Arc::new(probe),
            recheck_on: None,
            gate: None,
        }
    }

    /// Asks the probe again as soon as `signal` changes (the database's
    /// circuit breaker opening or closing), not at the next interval.
    pub fn recheck_on(mut self, signal: watch::Receiver<bool>) -> Self {
        self.recheck_on = Some(signal);
        self
    }

    /// Also wait for `gate` to be true (the catalog's search index before
    /// its first build); `None` changes nothing.
    pub fn gated_by(mut self, gate: Option<watch::Receiver<bool>>) -> Self {
        self.gate = gate;
        self
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("service", &self.service)
            .field("gated", &self.gate.is_some())
            .finish_non_exhaustive()
    }
}

/// The standard services every server has besides its own: what its
/// reflection lists next to the service's name.
const STANDARD_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Reflection for a server of `service`: it lists that service and the
/// standard ones only (the descriptor set holds every otus API, and a list
/// of all of them would offer calls this server answers `unimplemented`).
fn reflection_services(
    service: &'static str,
) -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        STANDARD_SERVICES.into_iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(otus_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Both reflection versions in both, so either describes
                // every service it lists.
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .with_service_name(service),
            |builder, name| builder.with_service_name(name),
        )
    };
    Ok((
        builder().build_v1().context("building reflection v1")?,
        builder()
            .build_v1alpha()
            .context("building reflection v1alpha")?,
    ))
}

/// SERVING when the probe says so; the reason it gives otherwise is logged.
async fn probe_status(probe: &Probe, service: &str) -> ServingStatus {
    match probe().await {
        Ok(()) => ServingStatus::Serving,
        Err(why) => {
            tracing::warn!(%service, %why, "not ready");
            ServingStatus::NotServing
        }
    }
}

/// Keeps the service's health status in step with [`Readiness`]:
/// NOT_SERVING while its probe fails (so readiness probes, and the edge's
/// `/ready`, notice) and while the gate is false. The first status is set
/// before this returns, so the service never answers health checks with
/// "unknown service".
async fn watch_readiness(
    reporter: HealthReporter,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let Readiness {
        service,
        probe,
        recheck_on,
        gate,
    } = readiness;
    let open = |gate: &Option<watch::Receiver<bool>>| gate.as_ref().is_none_or(|g| *g.borrow());
    let status_now = async |probe: &Probe, open: bool| {
        if open {
            probe_status(probe, service).await
        } else {
            ServingStatus::NotServing
        }
    };
    let mut last = status_now(&probe, open(&gate)).await;
    reporter.set_service_status(service, last).await;
    tokio::spawn(async move {
        let (mut gate, mut recheck_on) = (gate, recheck_on);
        loop {
            // A watched signal moving (the circuit breaker opening or
            // closing, the gate opening): the status follows at once, not at
            // the next poll. A signal whose sender is gone never moves again.
            let moved = async |signal: &mut Option<watch::Receiver<bool>>| {
                let alive = match signal {
                    Some(s) => s.changed().await.is_ok(),
                    None => false,
                };
                if !alive {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(PROBE_INTERVAL) => {}
                () = moved(&mut gate) => {}
                () = moved(&mut recheck_on) => {}
            }
            let status = status_now(&probe, open(&gate)).await;
            if status != last {
                reporter.set_service_status(service, status).await;
                last = status;
            }
        }
        // Draining: tell load balancers to stop sending new calls.
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    });
}

/// Where a service's server runs: the address to bind (port 0 picks one),
/// and the process it is part of (its metrics registry, and the shutdown
/// token every server of the process watches).
#[derive(Clone)]
pub struct Host {
    /// The gRPC address to bind.
    pub addr: SocketAddr,
    /// The process's registry; every call is metered on it.
    pub metrics: Metrics,
    /// Fires when the process drains.
    pub shutdown: CancellationToken,
}

impl Host {
    /// A server at `addr` in the process with these metrics and shutdown.
    pub fn new(addr: SocketAddr, metrics: Metrics, shutdown: CancellationToken) -> Self {
        Self {
            addr,
            metrics,
            shutdown,
        }
    }
}

/// The router every gRPC server starts from: metrics on every call,
/// keep-alive, health (following `readiness`) and reflection listing
/// `readiness.service` and the standard services. The caller adds that
/// service.
pub async fn service_router(readiness: Readiness, host: &Host) -> anyhow::Result<ServiceRouter> {
    let (metrics, shutdown) = (&host.metrics, &host.shutdown);
    let (reflection_v1, reflection_v1alpha) = reflection_services(readiness.service)?;
    let (reporter, health) = tonic_health::server::health_reporter();
    watch_readiness(reporter, readiness, shutdown.clone()).await;
    Ok(Server::builder()
        // A peer that stopped answering (gone without closing) is dropped
        // after a minute and a half instead of holding its connection.
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(metrics.grpc_server_layer())
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha))
}

/// A bound gRPC server: its address, and what serves it until shutdown.
pub struct BoundServer {
    addr: SocketAddr,
    serve: Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
}

impl BoundServer {
    /// Binds the host's address for the `name` service; serving starts with
    /// [`Self::run`] and stops when the host's shutdown token fires
    /// (in-flight calls finish first).
    pub async fn bind(
        host: &Host,
        name: &'static str,
        router: ServiceRouter,
    ) -> anyhow::Result<Self> {
        let (addr, incoming) = bind(host.addr, name).await?;
        let shutdown = host.shutdown.clone();
        let serve = async move {
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
                .with_context(|| format!("{name} gRPC server"))
        };
        Ok(Self {
            addr,
            serve: Box::pin(serve),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until shutdown.
    pub async fn run(self) -> anyhow::Result<()> {
        self.serve.await
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::{
        pb::{
            HealthCheckRequest, health_check_response::ServingStatus as Pb,
            health_server::Health as _,
        },
        server::HealthService,
    };

    use super::*;

    async fn status(health: &HealthService, service: &str) -> Pb {
        let resp = health
            .check(tonic::Request::new(HealthCheckRequest {
                service: service.into(),
            }))
            .await
            .expect("known service");
        resp.into_inner().status()
    }

    /// Waits for SERVING, failing if it takes half a probe interval: the
    /// status must follow `what` at once, not at the next poll.
    async fn serving_before_the_next_poll(health: &HealthService, what: &str) {
        let deadline = tokio::time::Instant::now() + PROBE_INTERVAL / 2;
        while status(health, "svc").await != Pb::Serving {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still NOT_SERVING after {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The catalog reports NOT_SERVING until its search index is built, even
    /// with the database up, and SERVING as soon as the gate opens (without
    /// waiting for the next database check).
    #[tokio::test]
    async fn a_closed_gate_keeps_the_service_not_serving() {
        let reporter = HealthReporter::new();
        let health = HealthService::from_health_reporter(reporter.clone());
        let (open, gate) = tokio::sync::watch::channel(false);
        let shutdown = CancellationToken::new();
        let readiness = Readiness::new("svc", || Box::pin(async { Ok(()) })).gated_by(Some(gate));
        watch_readiness(reporter, readiness, shutdown.clone()).await;
        assert_eq!(status(&health, "svc").await, Pb::NotServing);
        open.send_replace(true);
        serving_before_the_next_poll(&health, "the gate opened").await;
        shutdown.cancel();
    }

    /// A failing probe keeps the service NOT_SERVING; when the watched
    /// signal moves (the circuit breaker closing), the probe is asked again
    /// at once rather than at the next interval.
    #[tokio::test]
    async fn the_probe_is_asked_again_when_its_signal_moves() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let reporter = HealthReporter::new();
        let health = HealthService::from_health_reporter(reporter.clone());
        let up = Arc::new(AtomicBool::new(false));
        let probe_up = up.clone();
        let (breaker, signal) = tokio::sync::watch::channel(false);
        let shutdown = CancellationToken::new();
        let readiness = Readiness::new("svc", move || {
            let up = probe_up.load(Ordering::SeqCst);
            Box::pin(async move { if up { Ok(()) } else { Err("down".into()) } })
        })
        .recheck_on(signal);
        watch_readiness(reporter, readiness, shutdown.clone()).await;
        assert_eq!(status(&health, "svc").await, Pb::NotServing);
        up.store(true, Ordering::SeqCst);
        breaker.send_replace(true);
        serving_before_the_next_poll(&health, "the signal moved").await;
        shutdown.cancel();
    }
}
