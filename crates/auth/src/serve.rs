//! The auth service's wiring: what it is built from, its server, and its
//! background work (pruning expired SQL sessions).

use std::time::Duration;

use otus_db::{Db, Redis};
use otus_grpc::client::Channel;
use otus_grpc::{BoundServer, Host, Readiness, service_router};
use otus_identity::IdentityKey;
use otus_proto::auth::v1::auth_service_server::AuthServiceServer;
use otus_telemetry::CancellationToken;

use crate::{AuthApi, AuthSettings, LoginLimiter, SERVICE_NAME, SessionStore};

/// How often expired SQL sessions are deleted.
pub const SESSION_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// What the auth service is built from.
pub struct AuthDeps {
    /// Its database (credentials; sessions without Redis).
    pub db: Db,
    /// Sessions and login counters, when `REDIS_URL` is set (else the
    /// database and process memory).
    pub redis: Option<Redis>,
    /// Channel to the users service.
    pub users: Channel,
    /// Signs identity tokens.
    pub key: IdentityKey,
    /// TTLs and limits.
    pub settings: AuthSettings,
}

/// Binds the host's address and wires the auth service: ready while its
/// `credentials` table answers; expired SQL sessions are pruned every
/// [`SESSION_PRUNE_INTERVAL`] until the host's shutdown.
pub async fn serve(deps: AuthDeps, host: &Host) -> anyhow::Result<BoundServer> {
    let db = deps.db;
    let (sessions, limiter) = match deps.redis {
        Some(redis) => (
            SessionStore::Redis(redis.clone()),
            LoginLimiter::Redis(redis),
        ),
        None => (SessionStore::Sql(db.clone()), LoginLimiter::local()),
    };
    spawn_pruner(sessions.clone(), host.shutdown.clone());
    let api = AuthApi::new(
        db.clone(),
        sessions,
        limiter,
        deps.users,
        deps.key,
        deps.settings,
    )
    .map_err(|e| anyhow::anyhow!("starting the auth service: {e}"))?;
    let readiness =
        Readiness::new(SERVICE_NAME, db.table_probe("credentials")).recheck_on(db.watch_up());
    let router = service_router(readiness, host)
        .await?
        .add_service(AuthServiceServer::new(api));
    BoundServer::bind(host, "auth", router).await
}

/// Deletes expired sessions every [`SESSION_PRUNE_INTERVAL`] (a no-op with
/// Redis, which expires keys itself).
fn spawn_pruner(sessions: SessionStore, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(SESSION_PRUNE_INTERVAL) => {}
            }
            match sessions.prune_expired().await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "expired sessions pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning expired sessions failed"),
            }
        }
    });
}
