//! The users service's wiring: what it is built from, and its server.

use std::net::SocketAddr;

use otus_db::Db;
use otus_grpc::{BoundServer, Readiness, service_router};
use otus_identity::IdentityKey;
use otus_proto::users::v1::users_service_server::UsersServiceServer;
use otus_telemetry::{CancellationToken, Metrics};

use crate::{SERVICE_NAME, UsersApi};

/// What the users service is built from.
#[derive(Clone)]
pub struct UsersDeps {
    /// Its database (the `users` table), migrated.
    pub db: Db,
    /// Verifies the identity tokens callers send.
    pub key: IdentityKey,
}

/// Binds `addr` and wires the users service: ready while its table answers.
pub async fn serve(
    addr: SocketAddr,
    deps: UsersDeps,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<BoundServer> {
    let readiness = Readiness {
        service: SERVICE_NAME,
        table: "users",
        gate: None,
    };
    let router = service_router(readiness, &deps.db, metrics, &shutdown)
        .await?
        .add_service(UsersServiceServer::new(UsersApi::new(deps.db, deps.key)));
    BoundServer::bind(addr, "users", router, shutdown).await
}
