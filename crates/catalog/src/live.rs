//! The search index kept in step with the `products` table.
//!
//! Each catalog replica holds its own [`SearchIndex`]. A background task reads
//! `catalog_version` (one primary-key read, every [`POLL_INTERVAL`]); the
//! database's triggers move it on every change to `products` and record in
//! `product_changes` which products each version touched. When it moved by
//! at most [`MAX_INCREMENTAL_CHANGES`] products, the task reads those
//! products again and applies them to the index as document updates and
//! deletes (an **incremental update**: milliseconds). It loads the whole
//! table into a new index (a **full build**, 3–4 s per million products on
//! the project's machine) only at start, after a bulk change (a statement of
//! more than 10 000 rows, a `TRUNCATE`), or when the replica fell further
//! behind than the change log keeps. So a change is searchable on every
//! replica within `POLL_INTERVAL` + one update; meanwhile searches see the
//! previous view. During a full build the replica holds two indexes.
//!
//! Why the version is read first: a change, its count and its log rows
//! commit together, so a load that starts after reading version `v` sees
//! every change up to `v`; a change during the load moves the version past
//! `v` and the next poll applies it (applying a change twice is harmless).
//!
//! Until the first build the index is absent: searches answer 503 with
//! `Retry-After` (`SEARCH_INDEX_NOT_READY`) and the gRPC health check
//! reports NOT_SERVING ([`LiveIndex::ready`]).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use otus_db::Db;
use otus_proto::catalog::v1::Product;
use otus_telemetry::{CancellationToken, registered};
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DbErr, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, Statement,
};
use tokio::sync::{Mutex, watch};

use crate::{
    entity,
    index::{IndexError, SearchIndex, Snapshot},
};

/// How often each replica checks `catalog_version`.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Rows read per query while loading.
pub const LOAD_PAGE: u64 = 50_000;
/// Most products one incremental update applies; more changed (or a
/// replica further behind, in versions) means a full build. Also how many
/// versions of the change log replicas keep.
pub const MAX_INCREMENTAL_CHANGES: i64 = 10_000;
/// Products read per query in an incremental update.
const FETCH_CHUNK: usize = 1_000;

/// A view of the index and the `catalog_version` it reflects.
#[derive(Debug)]
pub struct Loaded {
    pub index: Snapshot,
    pub version: i64,
}

#[derive(Clone)]
struct Metrics {
    products: IntGauge,
    version: IntGauge,
    build_seconds: Gauge,
    builds: IntCounterVec,
    updates: IntCounterVec,
    changes: prometheus::IntCounter,
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
                "How long the last successful full index build took (load from the database + build).",
            )?,
        )?;
        let builds = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "catalog_index_builds_total",
                    "Full index builds by outcome (ok, error: the previous index keeps serving).",
                ),
                &["outcome"],
            )?,
        )?;
        let updates = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "catalog_index_updates_total",
                    "Incremental index updates (the changed products only) by outcome.",
                ),
                &["outcome"],
            )?,
        )?;
        let changes = registered(
            registry,
            prometheus::IntCounter::new(
                "catalog_index_changed_products_total",
                "Products re-read and applied to the index by incremental updates.",
            )?,
        )?;
        Ok(Self {
            products,
            version,
            build_seconds,
            builds,
            updates,
            changes,
        })
    }
}

/// The serving index, shared by the service and its refresh task.
#[derive(Clone)]
pub struct LiveIndex {
    current: Arc<RwLock<Option<Arc<Loaded>>>>,
    /// The writable index (None before the first build); one refresh at a
    /// time holds it.
    writer: Arc<Mutex<Option<SearchIndex>>>,
    ready: watch::Sender<bool>,
    metrics: Metrics,
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("index task: {0}")]
    Task(String),
}

/// What a refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// Nothing changed.
    Nothing,
    /// The changed products were applied (how many).
    Incremental(usize),
    /// The whole table was loaded into a new index.
    Full,
}

/// Runs blocking index work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RefreshError> + Send + 'static,
) -> Result<T, RefreshError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RefreshError::Task(e.to_string()))?
}

impl LiveIndex {
    /// An empty (not yet loaded) index; its metrics go to `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            current: Arc::default(),
            writer: Arc::default(),
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

    /// One poll: applies what changed since the serving version, or builds
    /// the index anew when that is cheaper or the only way.
    pub async fn refresh(&self, db: &Db) -> Result<Refreshed, RefreshError> {
        let mut writer = self.writer.lock().await;
        let version = read_version(db).await?;
        let serving = self.current().map(|l| l.version);
        if serving == Some(version) {
            return Ok(Refreshed::Nothing);
        }
        if let (Some(index), Some(from)) = (writer.take(), serving) {
            match self.incremental(db, index, from, version).await {
                Ok((index, n)) => {
                    *writer = Some(index);
                    prune(db, version).await;
                    return Ok(Refreshed::Incremental(n));
                }
                Err(Incremental::TooFar) => {}
                Err(Incremental::Failed(index, e)) => {
                    // Keep the index: the next poll tries again.
                    *writer = index.map(|b| *b);
                    self.metrics.updates.with_label_values(&["error"]).inc();
                    return Err(e);
                }
            }
        }
        let started = Instant::now();
        let built = build(db).await;
        let (index, snapshot) = match built {
            Ok(built) => built,
            Err(e) => {
                self.metrics.builds.with_label_values(&["error"]).inc();
                return Err(e);
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            products = snapshot.len(),
            version,
            seconds,
            "search index built"
        );
        self.metrics.build_seconds.set(seconds);
        self.metrics.builds.with_label_values(&["ok"]).inc();
        self.install(Loaded {
            index: snapshot,
            version,
        });
        *writer = Some(index);
        prune(db, version).await;
        Ok(Refreshed::Full)
    }

    /// Applies the products changed after version `from` up to `to`.
    async fn incremental(
        &self,
        db: &Db,
        mut index: SearchIndex,
        from: i64,
        to: i64,
    ) -> Result<(SearchIndex, usize), Incremental> {
        let failed = |index, e: RefreshError| Incremental::Failed(index, e);
        let ids = match changed_products(db, from, to).await {
            Ok(Some(ids)) => ids,
            Ok(None) => return Err(Incremental::TooFar),
            Err(e) => return Err(failed(Some(Box::new(index)), e.into())),
        };
        let mut rows: Vec<Product> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FETCH_CHUNK) {
            match rows_by_id(db, chunk).await {
                Ok(found) => rows.extend(found.into_iter().map(product)),
                Err(e) => return Err(failed(Some(Box::new(index)), e.into())),
            }
        }
        let started = Instant::now();
        let n = ids.len();
        let applied = tokio::task::spawn_blocking(move || {
            let found: HashMap<i64, &Product> = rows.iter().map(|p| (p.id, p)).collect();
            let result = (|| {
                for id in &ids {
                    match found.get(id) {
                        Some(product) => index.upsert(product)?,
                        // Deleted since.
                        None => index.remove(*id),
                    }
                }
                index.commit()
            })();
            (index, result)
        })
        .await;
        let (index, snapshot) = match applied {
            Ok((index, Ok(snapshot))) => (index, snapshot),
            Ok((index, Err(e))) => return Err(failed(Some(Box::new(index)), e.into())),
            // The task panicked: the writer went with it; a full build
            // makes a new one.
            Err(e) => return Err(failed(None, RefreshError::Task(e.to_string()))),
        };
        tracing::info!(
            changed = n,
            version = to,
            seconds = started.elapsed().as_secs_f64(),
            "search index updated incrementally"
        );
        self.metrics.updates.with_label_values(&["ok"]).inc();
        self.metrics.changes.inc_by(n as u64);
        self.install(Loaded {
            index: snapshot,
            version: to,
        });
        Ok((index, n))
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

/// Why an incremental update did not happen.
enum Incremental {
    /// Too many changes, or the log no longer holds them: build anew.
    TooFar,
    /// A failure; the index (if it survived) is handed back.
    Failed(Option<Box<SearchIndex>>, RefreshError),
}

/// A product as the index needs it: id, name, description, category, price
/// (what a search page shows).
type Row = (i64, String, String, String, i64);

/// The columns of a [`Row`], in its order.
const ROW_COLUMNS: [entity::Column; 5] = [
    entity::Column::Id,
    entity::Column::Name,
    entity::Column::Description,
    entity::Column::Category,
    entity::Column::PriceCents,
];

fn product((id, name, description, category, price_cents): Row) -> Product {
    Product {
        id,
        name,
        description,
        category,
        price_cents,
    }
}

/// The products changed after version `from` up to `to`, or None when an
/// incremental update cannot apply them (too many, a bulk change, or log
/// rows already pruned).
async fn changed_products(db: &Db, from: i64, to: i64) -> Result<Option<Vec<i64>>, DbErr> {
    if to - from > MAX_INCREMENTAL_CHANGES || to < from {
        return Ok(None);
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT version, product_id FROM product_changes \
                     WHERE version > $1 AND version <= $2 ORDER BY version LIMIT $3"
                }
                _ => {
                    "SELECT version, product_id FROM product_changes \
                     WHERE version > ? AND version <= ? ORDER BY version LIMIT ?"
                }
            },
            [from.into(), to.into(), (MAX_INCREMENTAL_CHANGES + 1).into()],
        ))
        .await?;
    if rows.len() as i64 > MAX_INCREMENTAL_CHANGES {
        return Ok(None);
    }
    // Every version has at least one log row: a first row past `from + 1`
    // means the rows in between were pruned.
    let first: Option<i64> = match rows.first() {
        Some(r) => Some(r.try_get("", "version")?),
        None => None,
    };
    if first != Some(from + 1) {
        return Ok(None);
    }
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        match r.try_get::<Option<i64>>("", "product_id")? {
            Some(id) => ids.push(id),
            // A bulk change: reload everything.
            None => return Ok(None),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Some(ids))
}

async fn rows_by_id(db: &Db, ids: &[i64]) -> Result<Vec<Row>, DbErr> {
    entity::Entity::find()
        .select_only()
        .columns(ROW_COLUMNS)
        .filter(entity::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await
}

/// Deletes log rows no replica can use any more: one further behind than
/// [`MAX_INCREMENTAL_CHANGES`] versions builds anew anyway. Best effort.
async fn prune(db: &Db, version: i64) {
    let below = version - MAX_INCREMENTAL_CHANGES;
    if below <= 0 {
        return;
    }
    let sql = format!("DELETE FROM product_changes WHERE version < {below}");
    if let Err(e) = db.execute_unprepared(&sql).await {
        tracing::debug!(error = %e, "pruning product_changes failed; the next update tries again");
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
async fn build(db: &Db) -> Result<(SearchIndex, Snapshot), RefreshError> {
    let mut index = blocking(|| Ok(SearchIndex::new()?)).await?;
    let mut after = 0i64;
    loop {
        let rows: Vec<Row> = entity::Entity::find()
            .select_only()
            .columns(ROW_COLUMNS)
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
        index = blocking(move || {
            for row in rows {
                index.add(&product(row))?;
            }
            Ok(index)
        })
        .await?;
        if !full {
            break;
        }
        after = last;
    }
    blocking(move || {
        let snapshot = index.merge_all()?;
        Ok((index, snapshot))
    })
    .await
}

#[cfg(test)]
mod tests {
    use otus_proto::catalog::v1::SearchProductsRequest;

    use super::*;
    use crate::{search::Search, seed};

    fn ids(live: &LiveIndex, q: &str) -> Vec<i64> {
        let search = Search::new(&SearchProductsRequest {
            query: q.into(),
            limit: Some(100),
            ..Default::default()
        })
        .expect("valid");
        live.current()
            .expect("loaded")
            .index
            .search(&search)
            .expect("search")
            .ids()
    }

    #[tokio::test]
    async fn built_once_then_kept_in_step_by_incremental_updates() {
        let db = crate::memory_db().await;
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
        // 500 rows in SQLite are 500 versions: within the log's reach, but
        // nothing is loaded yet, so the first refresh builds.
        assert_eq!(
            live.refresh(&db).await.expect("first build"),
            Refreshed::Full
        );
        assert!(*ready.borrow(), "ready after the first build");
        assert_eq!(live.current().expect("loaded").index.len(), 500);
        assert_eq!(
            live.refresh(&db).await.expect("poll"),
            Refreshed::Nothing,
            "no change, no work"
        );

        let target = ids(&live, "рюкзак")[0];
        db.execute_unprepared(&format!(
            "UPDATE products SET name = 'Пульсарный стул' WHERE id = {target}"
        ))
        .await
        .expect("update");
        assert!(ids(&live, "пульсарный").is_empty(), "not before the poll");
        assert_eq!(
            live.refresh(&db).await.expect("update"),
            Refreshed::Incremental(1),
            "one product changed: one document updated"
        );
        assert_eq!(ids(&live, "пульсарный"), vec![target]);
        assert!(!ids(&live, "рюкзак").contains(&target));
        assert_eq!(live.current().expect("loaded").index.len(), 500);

        db.execute_unprepared(&format!("DELETE FROM products WHERE id = {target}"))
            .await
            .expect("delete");
        db.execute_unprepared(
            "INSERT INTO products (name, name_search, description, category, price_cents) \
             VALUES ('Квазарная лампа', 'квазарная лампа', '', 'Дом и сад', 100)",
        )
        .await
        .expect("insert");
        assert_eq!(
            live.refresh(&db).await.expect("update"),
            Refreshed::Incremental(2)
        );
        assert!(ids(&live, "пульсарный").is_empty());
        assert_eq!(ids(&live, "квазарные").len(), 1, "another form finds it");
        assert_eq!(live.current().expect("loaded").index.len(), 500);

        // A change the log cannot carry (more products than an incremental
        // update applies) builds anew.
        seed::load(
            db.connection(),
            300,
            2,
            seed::Shape::Catalog,
            seed::Mode::Append,
            100,
            |_, _| {},
        )
        .await
        .expect("seed more");
        db.execute_unprepared(&format!(
            "UPDATE catalog_version SET version = version + {MAX_INCREMENTAL_CHANGES}"
        ))
        .await
        .expect("jump");
        assert_eq!(live.refresh(&db).await.expect("rebuild"), Refreshed::Full);
        assert_eq!(live.current().expect("loaded").index.len(), 800);
    }
}
