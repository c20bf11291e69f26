//! The `otus` binary's library: it parses configuration and composes the
//! services; each service crate owns its own wiring (`otus_users::serve`,
//! `otus_auth::serve`, `otus_catalog::serve`, `otus_edge::router`).
//!
//! - [`config`]: the command line and environment variables.
//! - [`run_all_in_one`], [`run_edge`], [`run_users`], [`run_auth`],
//!   [`run_catalog`], [`migrate`], [`seed_products`]: one per subcommand.
//!   `main.rs` only parses arguments and calls one of them. Each long-running
//!   one is [`run_process`]: the shutdown signal, the process's metrics and
//!   admin port, its servers, then waiting for all of them.
//!
//! Integration tests start [`AllInOne`] on port 0 against a fresh database.

pub mod config;

use std::{net::SocketAddr, pin::Pin};

use anyhow::Context as _;
use otus_db as db;
use otus_migration::{Migrator, MigratorTrait as _};
use otus_telemetry::{CancellationToken, Metrics};
use sea_orm::DatabaseConnection;

use crate::config::{
    AllInOneArgs, AuthArgs, CacheArgs, CatalogArgs, DbArgs, EdgeArgs, RedisArgs, SeedArgs,
    SeedMode, SeedShape, UsersArgs,
};

/// Connects to the configured database.
pub async fn connect(args: &DbArgs) -> anyhow::Result<DatabaseConnection> {
    db::connect(&args.database_url, &args.pool())
        .await
        .with_context(|| {
            format!(
                "connecting to the database at {}",
                db::redact_url(&args.database_url)
            )
        })
}

/// Connects for a service: every SQL statement's duration goes to
/// `metrics`, and the pool sits behind the circuit breaker (queries fail at
/// once while the database is known to be down).
pub async fn connect_metered(args: &DbArgs, metrics: &Metrics) -> anyhow::Result<db::Db> {
    let mut conn = connect(args).await?;
    let m = metrics.clone();
    conn.set_metric_callback(move |info| {
        m.observe_db(&info.statement.sql, info.failed, info.elapsed)
    });
    Ok(db::Db::new(
        conn,
        &args.database_url,
        &db::ProbeSettings::default(),
    ))
}

/// Applies pending migrations and reports what it did.
pub async fn migrate(conn: &DatabaseConnection) -> anyhow::Result<usize> {
    let pending = Migrator::get_pending_migrations(conn)
        .await
        .context("reading the migration table")?;
    for m in &pending {
        tracing::info!(migration = m.name(), "applying migration");
    }
    Migrator::up(conn, None)
        .await
        .context("applying migrations")?;
    // Data the schema cannot compute itself (keys computed in Rust).
    let keyed = otus_users::username::backfill_keys(conn)
        .await
        .context("back-filling username keys")?;
    if keyed > 0 {
        tracing::info!(rows = keyed, "username keys back-filled");
    }
    tracing::info!(applied = pending.len(), "database schema is up to date");
    Ok(pending.len())
}

/// Redis, when `REDIS_URL` is set.
async fn redis(args: &RedisArgs) -> anyhow::Result<Option<db::Redis>> {
    match &args.redis_url {
        Some(url) if !url.is_empty() => Ok(Some(
            db::Redis::connect(url, args.redis_key_prefix.clone()).await?,
        )),
        _ => Ok(None),
    }
}

/// What the catalog service is built from, for these settings.
fn catalog_deps(
    db: otus_db::Db,
    cache: &CacheArgs,
    redis: Option<&db::Redis>,
) -> otus_catalog::serve::CatalogDeps {
    otus_catalog::serve::CatalogDeps {
        db,
        store: cache_store(cache, redis),
        ttl: std::time::Duration::from_secs(cache.cache_ttl_secs.max(1)),
        strategy: if cache.catalog_search_baseline {
            otus_catalog::search::Strategy::UnindexedBaseline
        } else {
            otus_catalog::search::Strategy::Indexed
        },
        in_memory_index: cache.catalog_search_index && !cache.catalog_search_baseline,
    }
}

/// The search cache store for these settings.
fn cache_store(cache: &CacheArgs, redis: Option<&db::Redis>) -> otus_catalog::cache::Store {
    use otus_catalog::cache::Store;
    if !cache.cache_enabled {
        return Store::Disabled;
    }
    match redis {
        Some(redis) => Store::Redis(redis.clone()),
        None => otus_catalog::SearchCache::local_store(
            std::time::Duration::from_secs(cache.cache_ttl_secs.max(1)),
            cache.cache_max_entries,
        ),
    }
}

/// A server of this process: what it is, and what serves it until shutdown.
type Serving = (
    &'static str,
    Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
);

/// A gRPC server of a service crate, as one of this process's servers.
fn grpc(name: &'static str, server: otus_grpc::BoundServer) -> Serving {
    (name, Box::pin(server.run()))
}

/// An HTTP server (the edge, the admin port), as one of this process's
/// servers.
fn http(
    name: &'static str,
    serve: impl Future<Output = std::io::Result<()>> + Send + 'static,
) -> Serving {
    (
        name,
        Box::pin(async move { serve.await.with_context(|| format!("{name} server")) }),
    )
}

/// Waits for every server; the first failure is the answer.
async fn join_all(servers: Vec<Serving>) -> anyhow::Result<()> {
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
        let deadline = std::time::Duration::from_millis(args.edge.grpc_deadline_ms);
        let catalog = otus_catalog::serve(
            args.catalog_grpc_addr,
            catalog_deps(conn.clone(), &args.cache, redis.as_ref()),
            &metrics,
            shutdown.clone(),
        )
        .await?;
        let users = otus_users::serve(
            args.users_grpc_addr,
            otus_users::serve::UsersDeps {
                db: conn.clone(),
                key: key.clone(),
            },
            &metrics,
            shutdown.clone(),
        )
        .await?;
        let users_url = format!("http://{}", loopback(users.addr()));
        let auth = otus_auth::serve(
            args.auth_grpc_addr,
            otus_auth::serve::AuthDeps {
                db: conn,
                redis,
                users: metrics.metered_channel(&users_url)?,
                key,
                settings: args.auth.settings(deadline),
            },
            &metrics,
            shutdown.clone(),
        )
        .await?;
        let auth_url = format!("http://{}", loopback(auth.addr()));
        let catalog_url = format!("http://{}", loopback(catalog.addr()));
        let edge_cfg = args.edge.edge_config(users_url, auth_url, catalog_url);
        let router = otus_edge::router(&edge_cfg, &metrics, shutdown.clone())?;
        let (http_addr, edge) = otus_edge::serve(
            args.http_addr,
            router,
            args.edge.listener_limits(),
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
        "otus all-in-one: REST on http://{} (try /health/), metrics on http://{}/metrics, gRPC users on {}, auth on {}, catalog on {}; database {}",
        app.http_addr,
        app.admin_addr,
        app.users_grpc_addr,
        app.auth_grpc_addr,
        app.catalog_grpc_addr,
        db::redact_url(&args.db.database_url),
    );
    app.run().await
}

/// `otus edge`.
pub async fn run_edge(args: EdgeArgs) -> anyhow::Result<()> {
    run_process(args.admin_addr, async |metrics, shutdown| {
        let cfg = args.tuning.edge_config(
            args.users_grpc_url.clone(),
            args.auth_grpc_url.clone(),
            args.catalog_grpc_url.clone(),
        );
        let router = otus_edge::router(&cfg, &metrics, shutdown.clone())?;
        let (addr, edge) = otus_edge::serve(
            args.http_addr,
            router,
            args.tuning.listener_limits(),
            shutdown,
        )
        .await?;
        tracing::info!(http = %addr, users = %args.users_grpc_url, "edge listening");
        Ok(vec![http("edge HTTP", edge)])
    })
    .await
}

/// `otus users`.
pub async fn run_users(args: UsersArgs) -> anyhow::Result<()> {
    let key = args.identity.key()?;
    run_process(args.admin_addr, async |metrics, shutdown| {
        let db = connect_metered(&args.db, &metrics).await?;
        if args.migrate_on_start {
            migrate(db.connection()).await?;
        }
        let deps = otus_users::serve::UsersDeps { db, key };
        let users = otus_users::serve(args.grpc_addr, deps, &metrics, shutdown).await?;
        tracing::info!(grpc = %users.addr(), "users service listening");
        Ok(vec![grpc("users", users)])
    })
    .await
}

/// `otus auth`.
pub async fn run_auth(args: AuthArgs) -> anyhow::Result<()> {
    let key = args.identity.key()?;
    run_process(args.admin_addr, async |metrics, shutdown| {
        let deps = otus_auth::serve::AuthDeps {
            db: connect_metered(&args.db, &metrics).await?,
            redis: redis(&args.redis).await?,
            users: metrics.metered_channel(&args.users_grpc_url)?,
            key,
            settings: args
                .auth
                .settings(std::time::Duration::from_millis(args.grpc_deadline_ms)),
        };
        let auth = otus_auth::serve(args.grpc_addr, deps, &metrics, shutdown).await?;
        tracing::info!(grpc = %auth.addr(), users = %args.users_grpc_url, "auth service listening");
        Ok(vec![grpc("auth", auth)])
    })
    .await
}

/// `otus catalog`.
pub async fn run_catalog(args: CatalogArgs) -> anyhow::Result<()> {
    run_process(args.admin_addr, async |metrics, shutdown| {
        let db = connect_metered(&args.db, &metrics).await?;
        let redis = redis(&args.redis).await?;
        let deps = catalog_deps(db, &args.cache, redis.as_ref());
        let catalog = otus_catalog::serve(args.grpc_addr, deps, &metrics, shutdown).await?;
        tracing::info!(grpc = %catalog.addr(), cache = args.cache.cache_enabled, "catalog service listening");
        Ok(vec![grpc("catalog", catalog)])
    })
    .await
}

/// `otus seed-products`: migrates, then loads generated products with a
/// progress line on stderr.
pub async fn seed_products(args: SeedArgs) -> anyhow::Result<()> {
    use otus_catalog::seed::{self, Mode};
    use std::io::Write as _;
    let conn = connect(&args.db).await?;
    migrate(&conn).await?;
    let mode = match args.mode {
        SeedMode::IfEmpty => Mode::IfEmpty,
        SeedMode::Replace => Mode::Replace,
        SeedMode::Append => Mode::Append,
    };
    let started = std::time::Instant::now();
    let mut last_pct = u64::MAX;
    let report = seed::load(
        &conn,
        args.count,
        args.seed,
        match args.shape {
            SeedShape::Catalog => seed::Shape::Catalog,
            SeedShape::Words => seed::Shape::Words,
        },
        mode,
        args.batch_size,
        |done, total| {
            let pct = done * 100 / total.max(1);
            if pct / 10 != last_pct / 10 || done == total {
                last_pct = pct;
                let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprintln!("seed-products: {done}/{total} ({pct}%), {rate:.0} rows/s");
                let _ = std::io::stderr().flush();
            }
        },
    )
    .await
    .context("loading products")?;
    if report.inserted == 0 && report.existing_before > 0 {
        println!(
            "seed-products: the catalog already has {} products; nothing loaded (--mode if-empty)",
            report.existing_before
        );
    } else {
        println!(
            "seed-products: loaded {} products (seed {}) in {:.1} s",
            report.inserted,
            args.seed,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
