//! The `otus.catalog.v1.CatalogService` implementation.

use std::sync::Arc;

use otus_db::Db;
use otus_proto::catalog::v1::{
    CategoryCount, GetProductRequest, Product, SearchProductsRequest, SearchProductsResponse,
    TotalRelation, catalog_service_server::CatalogService,
};
use prost::Message as _;
use sea_orm::EntityTrait as _;
use tonic::{Request, Response, Status, metadata::MetadataValue};

use crate::{
    cache::{Lasting, Lookup, SearchCache},
    coalesce::{Coalescer, Source},
    entity,
    error::CatalogError,
    live::{LiveIndex, Loaded},
    search::{Search, SearchMode, Total},
};

pub use otus_proto::catalog::CACHE_HEADER;

/// Serves product search and lookup.
#[derive(Clone)]
pub struct CatalogApi {
    db: Db,
    cache: SearchCache,
    /// What answers searches (the database's matching when it answers).
    mode: SearchMode,
    /// The in-memory index (None: the database answers every search).
    index: Option<LiveIndex>,
    /// Searches being computed, shared by concurrent identical misses.
    inflight: Coalescer<Result<SearchProductsResponse, Status>>,
}

impl CatalogApi {
    /// A service over an open (and migrated) database answering searches as
    /// `mode` says; `index` is used only in [`SearchMode::Index`].
    pub fn new(db: Db, cache: SearchCache, mode: SearchMode, index: Option<LiveIndex>) -> Self {
        if mode == SearchMode::UnindexedBaseline {
            tracing::warn!("catalog runs the UNINDEXED baseline search (benchmarks only)");
        }
        Self {
            db,
            cache,
            mode,
            index: index.filter(|_| mode.in_memory_index()),
            inflight: Coalescer::default(),
        }
    }

    /// The page, the bounded total and the category counts: all from
    /// `loaded` (the in-memory index this search started with, which holds
    /// what a page shows), or from the database when the index is turned
    /// off. While the index is on but not yet built, a search is refused
    /// (503, retry): the database would answer with other rules.
    async fn find(
        &self,
        search: &Search,
        loaded: Option<Arc<Loaded>>,
    ) -> Result<(Vec<Product>, Total, Vec<(String, u64)>), CatalogError> {
        let Some(loaded) = loaded else {
            if self.index.is_some() {
                return Err(CatalogError::IndexNotReady);
            }
            let (rows, total) = search.run(&self.db, self.mode.sql()).await?;
            return Ok((rows.into_iter().map(to_proto).collect(), total, Vec::new()));
        };
        // Run on this worker: a search is bounded (16 tokens, 128 expansions
        // each, see `index`) and takes tens of microseconds typically, a few
        // milliseconds at worst at 1M products; handing it to the blocking
        // pool cost more than most searches (a thread wake-up and two
        // context switches per search, docs/performance.md).
        let answer = loaded
            .index
            .search(search)
            .map_err(|e| CatalogError::Internal(e.to_string()))?;
        Ok((answer.page, answer.total, answer.categories))
    }

    /// One search's answer.
    async fn compute(
        &self,
        search: &Search,
        loaded: Option<Arc<Loaded>>,
    ) -> Result<SearchProductsResponse, CatalogError> {
        let (products, total, categories) = self.find(search, loaded).await?;
        let (total, relation) = match total {
            Total::Exact(n) => (n, TotalRelation::Eq),
            Total::AtLeast(n) => (n, TotalRelation::Gte),
        };
        Ok(SearchProductsResponse {
            products,
            total: i64::try_from(total).unwrap_or(i64::MAX),
            limit: search.limit,
            offset: search.offset,
            total_relation: relation.into(),
            categories: categories
                .into_iter()
                .map(|(name, count)| CategoryCount {
                    name,
                    count: i64::try_from(count).unwrap_or(i64::MAX),
                })
                .collect(),
        })
    }
}

/// The cache key of an answer: the search, and what computed it. An answer
/// of the in-memory index is keyed by the `catalog_version` that index
/// reflects, so once a replica's index catches up with a change, its searches
/// look up new keys and never get an answer an older index computed (such as
/// the empty answers of a search made while products were being loaded).
/// Answers of the database (no index loaded, or the index turned off) are
/// current when computed and live for the TTL, the documented window.
fn answer_key(search: &Search, loaded: Option<&Loaded>) -> (String, Lasting) {
    match loaded {
        Some(l) => (
            format!("{}|index={}", search.cache_key(), l.version),
            Lasting::Forever,
        ),
        None => (format!("{}|db", search.cache_key()), Lasting::Ttl),
    }
}

fn to_proto(m: entity::Model) -> Product {
    Product {
        id: m.id,
        name: m.name,
        description: m.description,
        category: m.category,
        price_cents: m.price_cents,
    }
}

fn tagged(
    resp: SearchProductsResponse,
    cache: Option<&'static str>,
) -> Response<SearchProductsResponse> {
    let mut r = Response::new(resp);
    if let Some(v) = cache {
        r.metadata_mut()
            .insert(CACHE_HEADER, MetadataValue::from_static(v));
    }
    r
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    #[tracing::instrument(skip_all)]
    async fn search_products(
        &self,
        request: Request<SearchProductsRequest>,
    ) -> Result<Response<SearchProductsResponse>, Status> {
        let search = Search::new(request.get_ref())?;
        // One index for the whole search: the key names the version that
        // computes the answer it holds.
        let loaded = self.index.as_ref().and_then(LiveIndex::current);
        let (key, lasting) = answer_key(&search, loaded.as_deref());
        let caching = self.cache.enabled();
        if caching && let Lookup::Hit(bytes) = self.cache.get(&key, lasting).await {
            match SearchProductsResponse::decode(bytes.as_slice()) {
                Ok(resp) => return Ok(tagged(resp, Some("HIT"))),
                // A value written by an incompatible version: recompute.
                Err(e) => tracing::warn!(error = %e, "undecodable cache entry ignored"),
            }
        }
        // Concurrent misses for one search share one query; the one that
        // ran it stores the answer (successful answers only).
        let (answer, source) = self
            .inflight
            .run(&key, || async {
                let resp = self
                    .compute(&search, loaded.clone())
                    .await
                    .map_err(Status::from)?;
                if caching {
                    // Stored in the background: a slow cache never delays
                    // the answer.
                    let cache = self.cache.clone();
                    let bytes = resp.encode_to_vec();
                    let key = key.clone();
                    tokio::spawn(async move { cache.put(key, bytes, lasting).await });
                }
                Ok(resp)
            })
            .await;
        if source == Source::Shared {
            self.cache.count_coalesced();
        }
        Ok(tagged(answer?, caching.then_some("MISS")))
    }

    #[tracing::instrument(skip_all, fields(product.id = request.get_ref().id))]
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<Product>, Status> {
        let id = request.into_inner().id;
        if id <= 0 {
            return Err(CatalogError::BadRequest {
                reason: "INVALID_ID",
                message: format!("product id must be a positive integer, got {id}"),
            }
            .into());
        }
        let found = entity::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(CatalogError::Db)?
            .ok_or(CatalogError::NotFound(id))?;
        Ok(Response::new(to_proto(found)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::Registry;

    use super::*;
    use crate::{cache::Store, seed};

    /// While the index is on but not built, a search is refused with a
    /// retryable 503-class status naming why, never answered by the
    /// database under other rules; once built, it answers.
    #[tokio::test]
    async fn a_search_before_the_first_build_is_refused_with_a_retry_delay() {
        let db = crate::memory_db().await;
        seed::load(
            db.connection(),
            200,
            1,
            seed::Shape::Catalog,
            seed::Mode::Replace,
            100,
            |_, _| {},
        )
        .await
        .expect("seed");
        let registry = Registry::new();
        let cache =
            SearchCache::new(Store::Disabled, Duration::from_secs(60), &registry).expect("cache");
        let live = LiveIndex::new(&registry).expect("metrics");
        let api = CatalogApi::new(db.clone(), cache, SearchMode::Index, Some(live.clone()));
        let request = || {
            Request::new(SearchProductsRequest {
                query: "рюкзаки".into(),
                ..Default::default()
            })
        };

        let refused = api
            .search_products(request())
            .await
            .expect_err("refused while building");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(
            otus_grpc::client::CallError::of(&refused),
            otus_grpc::client::CallError::Service {
                reason: "SEARCH_INDEX_NOT_READY".into(),
                retry_after: Some(crate::error::INDEX_RETRY_AFTER),
            }
        );

        live.refresh(&db).await.expect("build");
        let answer = api
            .search_products(request())
            .await
            .expect("answers once built")
            .into_inner();
        assert!(answer.total > 0, "{answer:?}");
        assert!(!answer.categories.is_empty());
    }
}
