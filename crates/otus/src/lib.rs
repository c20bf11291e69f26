//! The `otus` binary's library: process wiring for every subcommand.
//!
//! - [`config`]: the command line and environment variables.
//! - [`grpc`]: how a gRPC service is served (health, reflection, shutdown).
//! - [`listener`]: binding a gRPC port; a deadline for a new connection's first bytes.
//! - [`run_all_in_one`], [`run_edge`], [`run_users`], [`run_auth`], [`migrate`]: one per
//!   subcommand. `main.rs` only parses arguments and calls one of them.
//!
//! Integration tests start [`AllInOne`] on port 0 against a fresh database.

pub mod config;
pub mod grpc;
pub mod listener;

use std::net::SocketAddr;

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

/// Redis client and key prefix, when `REDIS_URL` is set.
async fn redis(args: &RedisArgs) -> anyhow::Result<Option<(fred::prelude::Client, String)>> {
    match &args.redis_url {
        Some(url) if !url.is_empty() => Ok(Some((
            grpc::connect_redis(url).await?,
            args.redis_key_prefix.clone(),
        ))),
        _ => Ok(None),
    }
}

/// What the catalog service is built from, for these settings.
fn catalog_deps(
    db: otus_db::Db,
    cache: &CacheArgs,
    redis: Option<&(fred::prelude::Client, String)>,
) -> grpc::CatalogDeps {
    grpc::CatalogDeps {
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
fn cache_store(
    cache: &CacheArgs,
    redis: Option<&(fred::prelude::Client, String)>,
) -> otus_catalog::cache::Store {
    use otus_catalog::cache::Store;
    if !cache.cache_enabled {
        return Store::Disabled;
    }
    match redis {
        Some((client, prefix)) => Store::Redis {
            client: client.clone(),
            prefix: prefix.clone(),
        },
        None => otus_catalog::SearchCache::local_store(
            std::time::Duration::from_secs(cache.cache_ttl_secs.max(1)),
            cache.cache_max_entries,
        ),
    }
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
    serve: std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
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
        let (catalog_grpc_addr, catalog) = grpc::serve_catalog(
            args.catalog_grpc_addr,
            catalog_deps(conn.clone(), &args.cache, redis.as_ref()),
            &metrics,
            shutdown.clone(),
        )
        .await?;
        let (users_grpc_addr, users) = grpc::serve_users(
            args.users_grpc_addr,
            conn.clone(),
            key.clone(),
            &metrics,
            shutdown.clone(),
        )
        .await?;
        let users_url = format!("http://{}", loopback(users_grpc_addr));
        let (auth_grpc_addr, auth) = grpc::serve_auth(
            args.auth_grpc_addr,
            grpc::AuthDeps {
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
        let auth_url = format!("http://{}", loopback(auth_grpc_addr));
        let catalog_url = format!("http://{}", loopback(catalog_grpc_addr));
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
        let serve = Box::pin(async move {
            let (u, a, c, e, m) = tokio::join!(users, auth, catalog, edge, admin);
            u?;
            a?;
            c?;
            e.context("edge HTTP server")?;
            m.context("admin server")?;
            Ok(())
        });
        Ok(Self {
            http_addr,
            admin_addr,
            users_grpc_addr,
            auth_grpc_addr,
            catalog_grpc_addr,
            serve,
        })
    }

    /// Serves until the shutdown token fires and everything has drained.
    pub async fn run(self) -> anyhow::Result<()> {
        self.serve.await
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
    let shutdown = otus_telemetry::shutdown_signal();
    let metrics = Metrics::new();
    let router = otus_edge::router(
        &args.tuning.edge_config(
            args.users_grpc_url.clone(),
            args.auth_grpc_url.clone(),
            args.catalog_grpc_url.clone(),
        ),
        &metrics,
        shutdown.clone(),
    )?;
    let (http, edge) = otus_edge::serve(
        args.http_addr,
        router,
        args.tuning.listener_limits(),
        shutdown.clone(),
    )
    .await?;
    let (admin, admin_fut) =
        otus_telemetry::serve_admin(args.admin_addr, metrics, shutdown).await?;
    tracing::info!(%http, %admin, users = %args.users_grpc_url, "edge listening");
    let (e, a) = tokio::join!(edge, admin_fut);
    e.context("edge HTTP server")?;
    a.context("admin server")?;
    Ok(())
}

/// `otus users`.
pub async fn run_users(args: UsersArgs) -> anyhow::Result<()> {
    let key = args.identity.key()?;
    let shutdown = otus_telemetry::shutdown_signal();
    let metrics = Metrics::new();
    let conn = connect_metered(&args.db, &metrics).await?;
    if args.migrate_on_start {
        migrate(conn.connection()).await?;
    }
    let (grpc, users) =
        grpc::serve_users(args.grpc_addr, conn, key, &metrics, shutdown.clone()).await?;
    let (admin, admin_fut) =
        otus_telemetry::serve_admin(args.admin_addr, metrics, shutdown).await?;
    tracing::info!(%grpc, %admin, "users service listening");
    let (u, a) = tokio::join!(users, admin_fut);
    u?;
    a.context("admin server")?;
    Ok(())
}

/// `otus auth`.
pub async fn run_auth(args: AuthArgs) -> anyhow::Result<()> {
    let key = args.identity.key()?;
    let shutdown = otus_telemetry::shutdown_signal();
    let metrics = Metrics::new();
    let conn = connect_metered(&args.db, &metrics).await?;
    let redis = redis(&args.redis).await?;
    let deadline = std::time::Duration::from_millis(args.grpc_deadline_ms);
    let (grpc, auth) = grpc::serve_auth(
        args.grpc_addr,
        grpc::AuthDeps {
            db: conn,
            redis,
            users: metrics.metered_channel(&args.users_grpc_url)?,
            key,
            settings: args.auth.settings(deadline),
        },
        &metrics,
        shutdown.clone(),
    )
    .await?;
    let (admin, admin_fut) =
        otus_telemetry::serve_admin(args.admin_addr, metrics, shutdown).await?;
    tracing::info!(%grpc, %admin, users = %args.users_grpc_url, "auth service listening");
    let (a, m) = tokio::join!(auth, admin_fut);
    a?;
    m.context("admin server")?;
    Ok(())
}

/// `otus catalog`.
pub async fn run_catalog(args: CatalogArgs) -> anyhow::Result<()> {
    let shutdown = otus_telemetry::shutdown_signal();
    let metrics = Metrics::new();
    let conn = connect_metered(&args.db, &metrics).await?;
    let redis = redis(&args.redis).await?;
    let (grpc, catalog) = grpc::serve_catalog(
        args.grpc_addr,
        catalog_deps(conn, &args.cache, redis.as_ref()),
        &metrics,
        shutdown.clone(),
    )
    .await?;
    let (admin, admin_fut) =
        otus_telemetry::serve_admin(args.admin_addr, metrics, shutdown).await?;
    tracing::info!(%grpc, %admin, cache = args.cache.cache_enabled, "catalog service listening");
    let (c, m) = tokio::join!(catalog, admin_fut);
    c?;
    m.context("admin server")?;
    Ok(())
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
