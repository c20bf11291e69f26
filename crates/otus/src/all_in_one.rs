//! `otus all-in-one`: every service in one process, calling each other over
//! gRPC on loopback as in Kubernetes (the local mode, and what the
//! integration tests start on port 0).

use std::net::SocketAddr;

use otus_db as db;
use otus_telemetry::{CancellationToken, Metrics};

use crate::{
    config::AllInOneArgs,
    deps::{catalog_deps, connect_metered, redis, session_redis},
    jobs::migrate,
    process::{Serving, grpc, http, join_all},
};

/// A started all-in-one system: where it listens, and the future that serves
/// it until the shutdown token fires.
pub struct AllInOne {
    /// Public REST address.
    pub http_addr: SocketAddr,
    /// Admin (/metrics) address.
    pub admin_addr: SocketAddr,
    /// Users service gRPC address.
    pub users_grpc_addr: SocketAddr,
    /// Auth service gRPC address.
    pub auth_grpc_addr: SocketAddr,
    /// Catalog service gRPC address.
    pub catalog_grpc_addr: SocketAddr,
    servers: Vec<Serving>,
}

impl AllInOne {
    /// Connects, migrates, and binds every listener (port 0 works).
    pub async fn start(args: &AllInOneArgs, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let conn = connect_metered(&args.db, &metrics).await?;
        migrate(conn.connection()).await?;
        let key = args.identity.key_or_random()?;
        let redis = redis(&args.redis).await?;
        let cache_redis = redis.as_ref().filter(|_| args.cache.cache_enabled);
        let sessions = session_redis(
            &args.session_redis,
            &args.redis,
            redis.as_ref(),
            cache_redis,
        )
        .await?;
        let deadline = std::time::Duration::from_millis(args.edge.grpc_deadline_ms);
        let host = |addr| otus_grpc::Host::new(addr, metrics.clone(), shutdown.clone());
        let catalog = otus_catalog::serve(
            catalog_deps(conn.clone(), &args.cache, redis.as_ref()),
            &host(args.catalog_grpc_addr),
        )
        .await?;
        let users = otus_users::serve(
            otus_users::serve::UsersDeps {
                db: conn.clone(),
                key: key.clone(),
            },
            &host(args.users_grpc_addr),
        )
        .await?;
        let users_url = format!("http://{}", loopback(users.addr()));
        let auth = otus_auth::serve(
            otus_auth::serve::AuthDeps {
                db: conn,
                redis: sessions,
                users: otus_grpc::client::channel(&metrics, &users_url)?,
                key,
                settings: args.auth.settings(deadline),
            },
            &host(args.auth_grpc_addr),
        )
        .await?;
        let auth_url = format!("http://{}", loopback(auth.addr()));
        let catalog_url = format!("http://{}", loopback(catalog.addr()));
        let edge_cfg = args.edge.edge_config(users_url, auth_url, catalog_url)?;
        let router = otus_edge::router(&edge_cfg, &metrics, shutdown.clone())?;
        let (http_addr, edge) = otus_edge::serve(
            args.http_addr,
            router,
            args.edge.listener_limits(),
            &metrics,
            shutdown.clone(),
        )
        .await?;
        let (admin_addr, admin) =
            otus_telemetry::serve_admin(args.admin_addr, metrics, shutdown).await?;
        Ok(Self {
            http_addr,
            admin_addr,
            users_grpc_addr: users.addr(),
            auth_grpc_addr: auth.addr(),
            catalog_grpc_addr: catalog.addr(),
            servers: vec![
                grpc("users", users),
                grpc("auth", auth),
                grpc("catalog", catalog),
                http("edge HTTP", edge),
                http("admin", admin),
            ],
        })
    }

    /// Serves until the shutdown token fires and everything has drained.
    pub async fn run(self) -> anyhow::Result<()> {
        join_all(self.servers).await
    }
}

/// An address to connect to: a wildcard bind address means "this host".
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// `otus all-in-one`.
pub async fn run_all_in_one(args: AllInOneArgs) -> anyhow::Result<()> {
    let shutdown = otus_telemetry::shutdown_signal();
    let app = AllInOne::start(&args, shutdown).await?;
    tracing::info!(
        http = %app.http_addr,
        admin = %app.admin_addr,
        "otus all-in-one listening: REST on http://{} (try /health/), metrics on http://{}/metrics, gRPC users on {}, auth on {}, catalog on {}; database {}",
        app.http_addr,
        app.admin_addr,
        app.users_grpc_addr,
        app.auth_grpc_addr,
        app.catalog_grpc_addr,
        db::redact_url(&args.db.database_url),
    );
    app.run().await
}
