//! The catalog service's wiring: what it is built from, its server, and its
//! background work (keeping the in-memory search index in step with the
//! database).

use std::time::Duration;

use anyhow::Context as _;
use otus_db::Db;
use otus_grpc::{BoundServer, Host, Readiness, service_router};
use otus_proto::catalog::v1::catalog_service_server::CatalogServiceServer;

use crate::{
    CatalogApi, SERVICE_NAME, SearchCache, cache::Store, live::LiveIndex, search::SearchMode,
};

/// What the catalog service is built from.
pub struct CatalogDeps {
    /// Its database (products).
    pub db: Db,
    /// Where search answers are cached.
    pub store: Store,
    /// How long a cached answer is served.
    pub ttl: Duration,
    /// What answers searches (with the in-memory index, readiness waits for
    /// its first build).
    pub mode: SearchMode,
}

/// Binds the host's address and wires the catalog service: ready while its
/// `products` table answers and, with the in-memory index, once the index
/// is built.
pub async fn serve(deps: CatalogDeps, host: &Host) -> anyhow::Result<BoundServer> {
    let metrics = &host.metrics;
    let db = deps.db;
    let cache = SearchCache::new(deps.store, deps.ttl, metrics.registry())
        .context("registering catalog metrics")?;
    let index = if deps.mode.in_memory_index() {
        let live =
            LiveIndex::new(metrics.registry()).context("registering search index metrics")?;
        live.spawn(db.clone(), host.shutdown.clone());
        Some(live)
    } else {
        None
    };
    let readiness = Readiness::new(SERVICE_NAME, db.table_probe("products"))
        .recheck_on(db.watch_up())
        .gated_by(index.as_ref().map(LiveIndex::ready));
    let router = service_router(readiness, host)
        .await?
        .add_service(CatalogServiceServer::new(CatalogApi::new(
            db, cache, deps.mode, index,
        )));
    BoundServer::bind(host, "catalog", router).await
}
