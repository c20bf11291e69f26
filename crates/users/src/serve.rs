//! The users service's wiring: what it is built from, and its server.

use otus_db::Db;
use otus_grpc::{BoundServer, Host, Readiness, service_router};
use otus_identity::IdentityKey;
use otus_proto::users::v1::users_service_server::UsersServiceServer;

use crate::{SERVICE_NAME, UsersApi};

/// What the users service is built from.
#[derive(Clone)]
pub struct UsersDeps {
    /// Its database (the `users` table), migrated.
    pub db: Db,
    /// Verifies the identity tokens callers send.
    pub key: IdentityKey,
}

/// Binds the host's address and wires the users service: ready while its
/// table answers.
pub async fn serve(deps: UsersDeps, host: &Host) -> anyhow::Result<BoundServer> {
    let readiness =
        Readiness::new(SERVICE_NAME, deps.db.table_probe("users")).recheck_on(deps.db.watch_up());
    let router = service_router(readiness, host)
        .await?
        .add_service(UsersServiceServer::new(UsersApi::new(deps.db, deps.key)));
    BoundServer::bind(host, "users", router).await
}
