//! How every gRPC service of the system is served: standard health
//! (`grpc.health.v1.Health`), server reflection (v1 and v1alpha, so both
//! grpcurl and `buf curl` can list and call methods), graceful shutdown.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use anyhow::Context as _;
use otus_auth::{AuthApi, LoginLimiter, SessionStore};
use otus_db::Db;
use otus_identity::IdentityKey;
use otus_proto::{
    auth::v1::auth_service_server::AuthServiceServer,
    catalog::v1::catalog_service_server::CatalogServiceServer,
    users::v1::users_service_server::UsersServiceServer,
};
use otus_telemetry::CancellationToken;
use otus_users::UsersApi;
use tonic::transport::Server;

use crate::listener::bind;
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

/// SERVING when the service's own table answers: the database is up *and*
/// migrated. (A bare ping would report ready before the migrations Job ran,
/// and requests would then fail on a missing table.)
async fn database_status(db: &Db, service: &str, table: &str) -> ServingStatus {
    use sea_orm::ConnectionTrait as _;
    let probe = sea_orm::Statement::from_string(
        db.get_database_backend(),
        format!("SELECT 1 FROM {table} LIMIT 1"),
    );
    match db.query_one_raw(probe).await {
        Ok(_) => ServingStatus::Serving,
        Err(e) => {
            tracing::warn!(error = %e, %service, %table, "database not ready");
            ServingStatus::NotServing
        }
    }
}

/// Keeps `service`'s health status in step with the database: NOT_SERVING
/// while a ping fails, so readiness probes (and the edge's `/ready`) notice;
/// and, with a `gate`, also while the gate is false (the catalog's search
/// index before its first build). The first status is set before this
/// returns, so the service never answers health checks with "unknown
/// service".
async fn watch_database(
    reporter: HealthReporter,
    service: &'static str,
    table: &'static str,
    db: Db,
    gate: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: CancellationToken,
) {
    let open = |gate: &Option<tokio::sync::watch::Receiver<bool>>| {
        gate.as_ref().is_none_or(|g| *g.borrow())
    };
    let status_now = async |db: &Db, open: bool| {
        if open {
            database_status(db, service, table).await
        } else {
            ServingStatus::NotServing
        }
    };
    let mut last = status_now(&db, open(&gate)).await;
    reporter.set_service_status(service, last).await;
    tokio::spawn(async move {
        let mut gate = gate;
        loop {
            let changed = async {
                match gate.as_mut() {
                    // A closed gate (its sender gone) never changes again.
                    Some(g) => {
                        if g.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(DB_HEALTH_INTERVAL) => {}
                () = changed => {}
            }
            let status = status_now(&db, open(&gate)).await;
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

/// The health reporter, health service and reflection services every gRPC
/// server carries, with `service`'s status following the database.
/// A tonic router whose every call is metered.
type MeteredRouter = tonic::transport::server::Router<
    tower::layer::util::Stack<otus_telemetry::grpc::GrpcMetricsLayer, tower::layer::util::Identity>,
>;

async fn standard_services(
    service: &'static str,
    table: &'static str,
    db: &Db,
    gate: Option<tokio::sync::watch::Receiver<bool>>,
    metrics: &otus_telemetry::Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<MeteredRouter> {
    let (reporter, health) = tonic_health::server::health_reporter();
    watch_database(reporter, service, table, db.clone(), gate, shutdown.clone()).await;
    let (reflection_v1, reflection_v1alpha) = reflection_services()?;
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

/// A bound gRPC server: its address and the future that serves it until
/// shutdown (in-flight calls finish first).
pub type Bound = (
    SocketAddr,
    Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
);

/// Binds and wires the users service.
pub async fn serve_users(
    addr: SocketAddr,
    db: Db,
    key: IdentityKey,
    metrics: &otus_telemetry::Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Bound> {
    let (local, incoming) = bind(addr, "users").await?;
    let router = standard_services(
        otus_users::SERVICE_NAME,
        "users",
        &db,
        None,
        metrics,
        &shutdown,
    )
    .await?
    .add_service(UsersServiceServer::new(UsersApi::new(db, key)));
    let fut = async move {
        router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
            .context("users gRPC server")
    };
    Ok((local, Box::pin(fut)))
}

/// How often expired SQL sessions are deleted.
const SESSION_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// What the auth service is built from.
pub struct AuthDeps {
    /// Its database (credentials; sessions without Redis).
    pub db: Db,
    /// Redis client and key prefix, when configured.
    pub redis: Option<(fred::prelude::Client, String)>,
    /// Channel to the users service.
    pub users: otus_telemetry::MeteredChannel,
    /// Signs identity tokens.
    pub key: IdentityKey,
    /// TTLs and limits.
    pub settings: otus_auth::AuthSettings,
}

/// Binds and wires the auth service.
pub async fn serve_auth(
    addr: SocketAddr,
    deps: AuthDeps,
    metrics: &otus_telemetry::Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Bound> {
    let AuthDeps {
        db,
        redis,
        users,
        key,
        settings,
    } = deps;
    let (sessions, limiter) = match redis {
        Some((client, prefix)) => (
            SessionStore::Redis {
                client: client.clone(),
                prefix: prefix.clone(),
            },
            LoginLimiter::Redis { client, prefix },
        ),
        None => (SessionStore::Sql(db.clone()), LoginLimiter::local()),
    };
    let prune = sessions.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(SESSION_PRUNE_INTERVAL) => {}
            }
            match prune.prune_expired().await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "expired sessions pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning expired sessions failed"),
            }
        }
    });
    let api = AuthApi::new(db.clone(), sessions, limiter, users, key, settings)
        .map_err(|e| anyhow::anyhow!("starting the auth service: {e}"))?;
    let (local, incoming) = bind(addr, "auth").await?;
    let router = standard_services(
        otus_auth::SERVICE_NAME,
        "credentials",
        &db,
        None,
        metrics,
        &shutdown,
    )
    .await?
    .add_service(AuthServiceServer::new(api));
    let fut = async move {
        router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
            .context("auth gRPC server")
    };
    Ok((local, Box::pin(fut)))
}

/// What the catalog service is built from.
pub struct CatalogDeps {
    /// Its database (products).
    pub db: Db,
    /// Where search answers are cached.
    pub store: otus_catalog::cache::Store,
    /// How long a cached answer is served.
    pub ttl: Duration,
    /// How the database matches words (when it answers).
    pub strategy: otus_catalog::search::Strategy,
    /// Whether searches use the in-memory index (readiness then waits for
    /// its first build).
    pub in_memory_index: bool,
}

/// Binds and wires the catalog service.
pub async fn serve_catalog(
    addr: SocketAddr,
    deps: CatalogDeps,
    metrics: &otus_telemetry::Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Bound> {
    let CatalogDeps {
        db,
        store,
        ttl,
        strategy,
        in_memory_index,
    } = deps;
    let cache = otus_catalog::SearchCache::new(store, ttl, metrics.registry())
        .context("registering catalog metrics")?;
    let index = if in_memory_index {
        let live = otus_catalog::live::LiveIndex::new(metrics.registry())
            .context("registering search index metrics")?;
        live.spawn(db.clone(), shutdown.clone());
        Some(live)
    } else {
        None
    };
    let (local, incoming) = bind(addr, "catalog").await?;
    let router = standard_services(
        otus_catalog::SERVICE_NAME,
        "products",
        &db,
        index.as_ref().map(otus_catalog::live::LiveIndex::ready),
        metrics,
        &shutdown,
    )
    .await?
    .add_service(CatalogServiceServer::new(otus_catalog::CatalogApi::new(
        db, cache, strategy, index,
    )));
    let fut = async move {
        router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
            .context("catalog gRPC server")
    };
    Ok((local, Box::pin(fut)))
}

/// Connects to Redis with bounded timeouts (a slow Redis must not hang
/// requests) and automatic reconnection.
pub async fn connect_redis(url: &str) -> anyhow::Result<fred::prelude::Client> {
    use fred::prelude::{Builder, ClientLike as _, Config, ReconnectPolicy};
    let config = Config::from_url(url).context("invalid REDIS_URL")?;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(1))
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    let client = builder.build().context("building the Redis client")?;
    client.init().await.context("connecting to Redis")?;
    tracing::info!("redis connected");
    Ok(client)
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

    /// The catalog reports NOT_SERVING until its search index is built, even
    /// with the database up, and SERVING as soon as the gate opens (without
    /// waiting for the next database check).
    #[tokio::test]
    async fn a_closed_gate_keeps_the_service_not_serving() {
        // One connection: each connection to `:memory:` is its own database.
        let mut options = sea_orm::ConnectOptions::new("sqlite::memory:");
        options.max_connections(1);
        let conn = sea_orm::Database::connect(options).await.expect("sqlite");
        let db = Db::always_up(conn);
        use sea_orm::ConnectionTrait as _;
        db.execute_unprepared("CREATE TABLE things (id INTEGER)")
            .await
            .expect("table");
        let reporter = HealthReporter::new();
        let health = HealthService::from_health_reporter(reporter.clone());
        let (open, gate) = tokio::sync::watch::channel(false);
        let shutdown = CancellationToken::new();
        watch_database(reporter, "svc", "things", db, Some(gate), shutdown.clone()).await;
        assert_eq!(status(&health, "svc").await, Pb::NotServing);
        open.send_replace(true);
        let deadline = tokio::time::Instant::now() + DB_HEALTH_INTERVAL / 2;
        while status(&health, "svc").await != Pb::Serving {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still NOT_SERVING after the gate opened"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
    }
}
