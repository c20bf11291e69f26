//! What the services are built from, for the settings: database
//! connections (metered, behind the circuit breaker), Redis, and the
//! catalog's cache store.

use anyhow::Context as _;
use otus_db as db;
use otus_telemetry::Metrics;
use sea_orm::DatabaseConnection;

use crate::config::{CacheArgs, DbArgs, RedisArgs, SessionRedisArgs};

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
    let db = db::Db::new(conn, &args.database_url, &db::ProbeSettings::default());
    follow_breaker(&db, metrics);
    Ok(db)
}

/// `otus_db_up` (1 while the circuit breaker is closed, 0 while open), kept
/// in step by a task, for an alert and a dashboard panel.
fn follow_breaker(db: &db::Db, metrics: &Metrics) {
    let gauge = match prometheus::IntGauge::new(
        "otus_db_up",
        "1 while this process's database answers (its circuit breaker closed), 0 while not",
    )
    .and_then(|g| otus_telemetry::registered(metrics.registry(), g))
    {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "otus_db_up not registered");
            return;
        }
    };
    let mut up = db.watch_up();
    gauge.set(i64::from(*up.borrow()));
    tokio::spawn(async move {
        while up.changed().await.is_ok() {
            gauge.set(i64::from(*up.borrow_and_update()));
        }
    });
}

/// Redis, when `REDIS_URL` is set.
pub(crate) async fn redis(args: &RedisArgs) -> anyhow::Result<Option<db::Redis>> {
    match &args.redis_url {
        Some(url) if !url.is_empty() => Ok(Some(
            db::Redis::connect(url, args.redis_key_prefix.clone()).await?,
        )),
        _ => Ok(None),
    }
}

/// The Redis for sessions and login counters: `SESSION_REDIS_URL`, else
/// the one `REDIS_URL` opened (`shared`). Refuses one where sessions could be
/// evicted, or could be crowded out by the search cache (`cache`: the cache's
/// Redis when this process writes one), with the reason and what to set.
/// A Redis that will not tell its policy (`CONFIG` disabled, as some managed
/// services do) is used with a warning.
pub(crate) async fn session_redis(
    args: &SessionRedisArgs,
    redis: &RedisArgs,
    shared: Option<&db::Redis>,
    cache: Option<&db::Redis>,
) -> anyhow::Result<Option<db::Redis>> {
    let sessions = match &args.session_redis_url {
        Some(url) if !url.is_empty() => db::Redis::connect(url, redis.redis_key_prefix.clone())
            .await
            .context("connecting to SESSION_REDIS_URL")?,
        _ => match shared {
            Some(r) => r.clone(),
            None => return Ok(None),
        },
    };
    let policy = match sessions.memory_policy().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"),
                "cannot read the session Redis's memory policy; make sure it never evicts \
                 (maxmemory-policy noeviction) and holds no cache");
            return Ok(Some(sessions));
        }
    };
    let cache_policy = match cache {
        Some(c) => c.memory_policy().await.ok(),
        None => None,
    };
    if let Some(why) = db::redis::session_store_problem(&policy, cache_policy.as_ref()) {
        anyhow::bail!("refusing to keep sessions in Redis: {why}");
    }
    tracing::info!(%policy, "sessions in Redis");
    Ok(Some(sessions))
}

/// What the catalog service is built from, for these settings.
pub(crate) fn catalog_deps(
    db: otus_db::Db,
    cache: &CacheArgs,
    redis: Option<&db::Redis>,
) -> otus_catalog::serve::CatalogDeps {
    let settings = cache.settings();
    otus_catalog::serve::CatalogDeps {
        db,
        store: settings.store(redis),
        ttl: settings.ttl,
        mode: otus_catalog::search::SearchMode::from_settings(
            cache.catalog_search_index,
            cache.catalog_search_baseline,
        ),
    }
}
