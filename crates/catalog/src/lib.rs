//! The catalog service: owns products and answers searches.
//!
//! - [`service`]: `otus.catalog.v1.CatalogService`. Search checks the cache
//!   first (cache-aside), then the database, and stores successful answers.
//! - [`search`]: parameter validation and normalisation (case and repeats,
//!   and the order of the words before the last, do not change the key), and
//!   the baseline SQL: every word a `name_search LIKE '%word%'`
//!   (trigram-indexed on PostgreSQL).
//! - [`index`], [`live`]: the tantivy index in memory that answers searches
//!   (stemming, typos, last-word prefix, relevance, facets), and the task
//!   keeping it in step with the database by incremental updates.
//! - [`cache`]: the search cache: off, in-process (moka) or Redis, with a hard
//!   timeout so a sick Redis never fails a search.
//! - [`seed`]: the deterministic product generator and bulk loader.
//! - [`error`]: [`CatalogError`] and its mapping to `tonic::Status`.
//! - [`serve`]: the wiring: [`serve::CatalogDeps`] and [`serve::serve`]
//!   (the index task, readiness gated on its first build).

pub mod cache;
pub mod coalesce;
pub mod entity;
pub mod error;
pub mod index;
pub mod live;
pub mod search;
pub mod seed;
pub mod serve;
pub mod service;
pub mod words;

pub use cache::{CacheSettings, SearchCache};
pub use error::CatalogError;
pub use serve::serve;
pub use service::CatalogApi;

/// Fully-qualified gRPC service name, as used by health checks.
pub use otus_proto::catalog::v1::catalog_service_server::SERVICE_NAME;

/// A migrated in-memory SQLite database for unit tests (one connection:
/// every connection to `:memory:` is its own database).
#[cfg(test)]
pub(crate) async fn memory_db() -> otus_db::Db {
    use otus_migration::{Migrator, MigratorTrait as _};
    let mut options = sea_orm::ConnectOptions::new("sqlite::memory:");
    options.max_connections(1).min_connections(1);
    let conn = sea_orm::Database::connect(options).await.expect("sqlite");
    Migrator::up(&conn, None).await.expect("migrate");
    otus_db::Db::always_up(conn)
}
