//! How every gRPC service of the system is served: standard health
//! (`grpc.health.v1.Health`), server reflection (v1 and v1alpha, so both
//! grpcurl and `buf curl` can list and call methods), graceful shutdown.

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use otus_proto::users::v1::users_service_server::UsersServiceServer;
use otus_telemetry::CancellationToken;
use otus_users::UsersApi;
use sea_orm::DatabaseConnection;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};

/// How often the users service checks its database for the health status.
const DB_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

fn reflection_services() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(otus_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((
        builder().build_v1().context("building reflection v1")?,
        builder()
            .build_v1alpha()
            .context("building reflection v1alpha")?,
    ))
}

async fn database_status(db: &DatabaseConnection, service: &str) -> ServingStatus {
    match db.ping().await {
        Ok(()) => ServingStatus::Serving,
        Err(e) => {
            tracing::warn!(error = %e, %service, "database ping failed");
            ServingStatus::NotServing
        }
    }
}

/// Keeps `service`'s health status in step with the database: NOT_SERVING
/// while a ping fails, so readiness probes (and the edge's `/ready`) notice.
/// The first status is set before this returns, so the service never
/// answers health checks with "unknown service".
async fn watch_database(
    reporter: HealthReporter,
    service: &'static str,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) {
    let mut last = database_status(&db, service).await;
    reporter.set_service_status(service, last).await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(DB_HEALTH_INTERVAL) => {}
            }
            let status = database_status(&db, service).await;
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

/// Binds the users service's gRPC port; returns the bound address and the
/// serving future (ends after `shutdown`, once in-flight calls finish).
pub async fn serve_users(
    addr: SocketAddr,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the users gRPC port {addr}"))?;
    let local = listener.local_addr()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    watch_database(
        reporter,
        otus_users::SERVICE_NAME,
        db.clone(),
        shutdown.clone(),
    )
    .await;
    let (reflection_v1, reflection_v1alpha) = reflection_services()?;
    let users = UsersServiceServer::new(UsersApi::new(db));
    let fut = async move {
        Server::builder()
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(users)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown.cancelled_owned(),
            )
            .await
            .context("users gRPC server")
    };
    Ok((local, fut))
}
