//! The search index kept in step with the `products` table.
//!
//! Each catalog replica holds its own [`SearchIndex`]. A background task reads
//! `catalog_version` (one primary-key read, every [`POLL_INTERVAL`]); the
//! database's triggers move it on every change to `products`. When it moved,
//! the task loads the whole table again in id order (keyset pages of
//! [`LOAD_PAGE`] rows), builds a new index beside the one serving, and swaps
//! it in. So a change is searchable on every replica within
//! `POLL_INTERVAL` + one build (3–4 s per million products on the
//! project's machine); meanwhile searches see the previous index. During a
//! build the replica holds two indexes.
//!
//! Why the version is read first: a change and its count commit together,
//! so a load that starts after reading version `v` sees every change up to
//! `v`; a change during the load moves the version past `v` and the next
//! poll loads again.
//!
//! Until the first build the index is absent: the service answers from the
//! database and reports NOT_SERVING ([`LiveIndex::ready`]).

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use otus_db::Db;
use otus_telemetry::{CancellationToken, registered};
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DbErr, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, Statement,
};
use tokio::sync::watch;

use crate::{entity, index::SearchIndex};

/// How often each replica checks `catalog_version`.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Rows read per query while loading.
pub const LOAD_PAGE: u64 = 50_000;

/// An index and the `catalog_version` it reflects.
#[derive(Debug)]
pub struct Loaded {
    pub index: SearchIndex,
    pub version: i64,
}

#[derive(Clone)]
struct Metrics {
    products: IntGauge,
    version: IntGauge,
    build_seconds: Gauge,
    builds: IntCounterVec,
}

impl Metrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let products = registered(
            registry,
            IntGauge::new(
                "catalog_index_products",
                "Products in this replica's in-memory search index.",
            )?,
        )?;
        let version = registered(
            registry,
            IntGauge::new(
                "catalog_index_version",
                "The catalog_version (change counter of the products table) the index reflects.",
            )?,
        )?;
        let build_seconds = registered(
            registry,
            Gauge::new(
                "catalog_index_build_seconds",
                "How long the last successful index build took (load from the database + build).",
            )?,
        )?;
        let builds = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "catalog_index_builds_total",
                    "Index builds by outcome (ok, error: the previous index keeps serving).",
                ),
                &["outcome"],
            )?,
        )?;
        Ok(Self {
            products,
            version,
            build_seconds,
            builds,
        })
    }
}

/// The serving index, shared by the service and its refresh task.
#[derive(Clone)]
pub struct LiveIndex {
    current: Arc<RwLock<Option<Arc<Loaded>>>>,
    ready: watch::Sender<bool>,
    metrics: Metrics,
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("building the index: {0}")]
    Build(String),
}

impl LiveIndex {
    /// An empty (not yet loaded) index; its metrics go to `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            current: Arc::default(),
            ready: watch::Sender::new(false),
            metrics: Metrics::new(registry)?,
        })
    }

    /// The serving index, once one was built.
    pub fn current(&self) -> Option<Arc<Loaded>> {
        // A poisoned lock only means a writer panicked between two plain
        // assignments; the value is still a whole `Option<Arc<_>>`.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// `true` from the first successful build on.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    fn install(&self, loaded: Loaded) {
        self.metrics
            .products
            .set(i64::try_from(loaded.index.len()).unwrap_or(i64::MAX));
        self.metrics.version.set(loaded.version);
        let loaded = Some(Arc::new(loaded));
        match self.current.write() {
            Ok(mut guard) => *guard = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        self.ready.send_replace(true);
    }

    /// One poll: rebuilds when `catalog_version` moved (or nothing is loaded
    /// yet). Returns whether it rebuilt.
    pub async fn refresh(&self, db: &Db) -> Result<bool, RefreshError> {
        let version = read_version(db).await?;
        if self.current().is_some_and(|l| l.version == version) {
            return Ok(false);
        }
        let started = Instant::now();
        let built = build(db).await;
        let index = match built {
            Ok(index) => index,
            Err(e) => {
                self.metrics.builds.with_label_values(&["error"]).inc();
                return Err(e);
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            products = index.len(),
            version,
            seconds,
            "search index built"
        );
        self.metrics.build_seconds.set(seconds);
        self.metrics.builds.with_label_values(&["ok"]).inc();
        self.install(Loaded { index, version });
        Ok(true)
    }

    /// Keeps the index in step with the database until `shutdown`.
    pub fn spawn(&self, db: Db, shutdown: CancellationToken) {
        let live = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match live.refresh(&db).await {
                    Ok(_) if failing => {
                        tracing::info!("search index refresh works again");
                        failing = false;
                    }
                    Ok(_) => {}
                    // Logged once per streak: the database being down is
                    // reported by its own health checks.
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "search index refresh failed; the previous index keeps serving");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        });
    }
}

/// The database's `catalog_version`: how many changes `products` has seen.
pub async fn read_version(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM catalog_version WHERE id = 1",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("catalog_version has no row".into()))?;
    row.try_get("", "version")
}

/// Loads every product in id order into a new index.
async fn build(db: &Db) -> Result<SearchIndex, RefreshError> {
    let mut index = SearchIndex::new();
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, String, String, i64)> = entity::Entity::find()
            .select_only()
            .columns([
                entity::Column::Id,
                entity::Column::NameSearch,
                entity::Column::Category,
                entity::Column::PriceCents,
            ])
            .filter(entity::Column::Id.gt(after))
            .order_by_asc(entity::Column::Id)
            .limit(LOAD_PAGE)
            .into_tuple()
            .all(db)
            .await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            break;
        };
        let full = rows.len() as u64 == LOAD_PAGE;
        // Adding is CPU work (tens of milliseconds a page): off the async
        // workers, so searches keep their latency during a build.
        index = tokio::task::spawn_blocking(move || {
            for (id, name, category, price) in rows {
                index.add(id, &name, &category, price)?;
            }
            Ok::<_, crate::index::IndexError>(index)
        })
        .await
        .map_err(|e| RefreshError::Build(e.to_string()))?
        .map_err(|e| RefreshError::Build(e.to_string()))?;
        if !full {
            break;
        }
        after = last;
    }
    index.shrink_to_fit();
    Ok(index)
}

#[cfg(test)]
mod tests {
    use otus_migration::{Migrator, MigratorTrait as _};
    use otus_proto::catalog::v1::SearchProductsRequest;
    use sea_orm::{ConnectOptions, Database};

    use super::*;
    use crate::{
        search::{Search, fold},
        seed,
    };

    async fn database() -> Db {
        // One connection: every connection to `:memory:` is its own database.
        let mut options = ConnectOptions::new("sqlite::memory:");
        options.max_connections(1).min_connections(1);
        let conn = Database::connect(options).await.expect("sqlite");
        Migrator::up(&conn, None).await.expect("migrate");
        Db::always_up(conn)
    }

    fn ids(live: &LiveIndex, q: &str) -> Vec<i64> {
        let search = Search::new(&SearchProductsRequest {
            query: q.into(),
            limit: Some(100),
            ..Default::default()
        })
        .expect("valid");
        live.current().expect("loaded").index.search(&search).0
    }

    #[tokio::test]
    async fn not_ready_until_built_then_rebuilt_only_when_products_change() {
        let db = database().await;
        let live = LiveIndex::new(&Registry::new()).expect("metrics");
        let ready = live.ready();
        assert!(!*ready.borrow(), "not ready before the first build");
        assert!(live.current().is_none());

        seed::load(
            db.connection(),
            500,
            1,
            seed::Shape::Catalog,
            seed::Mode::Replace,
            100,
            |_, _| {},
        )
        .await
        .expect("seed");
        assert!(live.refresh(&db).await.expect("first build"));
        assert!(*ready.borrow(), "ready after the first build");
        assert_eq!(live.current().expect("loaded").index.len(), 500);
        assert!(
            !live.refresh(&db).await.expect("poll"),
            "no change, no build"
        );

        let target = ids(&live, "рюкзак")[0];
        db.execute_unprepared(&format!(
            "UPDATE products SET name_search = '{}' WHERE id = {target}",
            fold("Пульсарный стул")
        ))
        .await
        .expect("update");
        assert!(ids(&live, "пульсарный").is_empty(), "not before the poll");
        assert!(live.refresh(&db).await.expect("rebuild"));
        assert_eq!(ids(&live, "пульсарный"), vec![target]);
        assert!(!ids(&live, "рюкзак").contains(&target));

        db.execute_unprepared(&format!("DELETE FROM products WHERE id = {target}"))
            .await
            .expect("delete");
        assert!(live.refresh(&db).await.expect("rebuild"));
        assert!(ids(&live, "пульсарный").is_empty());
        assert_eq!(live.current().expect("loaded").index.len(), 499);
    }
}
