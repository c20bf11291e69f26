//! Cache-aside for search answers.
//!
//! The service looks the normalised search up first; on a miss it asks the
//! database and stores the encoded answer with a TTL. Only successful answers
//! are stored. The cache is an in-process moka cache by default and Redis when
//! `REDIS_URL` is set (shared by replicas). A slow or dead Redis costs a search
//! at most [`REDIS_TIMEOUT`] and never its answer: errors count as misses and
//! the database answers.

use std::time::Duration;

use fred::prelude::{Expiration, KeysInterface as _};
use otus_db::Redis;
use otus_telemetry::{registered, trace::redis_span};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use tracing::Instrument as _;

/// Bound on one Redis cache operation.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(200);

/// Where cached answers live.
#[derive(Clone)]
pub enum Store {
    /// No caching: nothing is read or written (`CACHE_ENABLED=0`).
    Disabled,
    /// This process's memory.
    Local(moka::future::Cache<String, Vec<u8>>),
    /// Redis, under the deployment's prefix ([`search_key`]).
    Redis(Redis),
}

/// The Redis key (under the deployment's prefix) of a cached answer to the
/// search whose [`crate::search::Search::cache_key`] is `key`: the catalog's
/// only Redis key.
pub fn search_key(key: &str) -> String {
    format!("catalog:search:{key}")
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Vec<u8>),
    Miss,
    /// The cache could not answer (Redis down or slow): treat as a miss.
    Error,
}

/// The cache with its TTL and metrics.
#[derive(Clone)]
pub struct SearchCache {
    store: Store,
    ttl: Duration,
    requests: IntCounterVec,
    /// `cache_operation_duration_seconds{operation="get|set",outcome="ok|error"}`.
    durations: HistogramVec,
    /// `catalog_search_coalesced_total`: misses answered by a concurrent
    /// identical search's computation.
    coalesced: IntCounter,
}

/// The search cache's settings: what the binary's flags map onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// Cache search answers at all.
    pub enabled: bool,
    /// How long a cached answer is served: the consistency window.
    pub ttl: Duration,
    /// Most answers the in-process cache holds (Redis: its `maxmemory`).
    pub max_entries: u64,
}

impl CacheSettings {
    /// The defaults (`CACHE_ENABLED=true`, `CACHE_TTL_SECS=60`,
    /// `CACHE_MAX_ENTRIES=10000`).
    pub const DEFAULT: Self = Self {
        enabled: true,
        ttl: Duration::from_secs(60),
        max_entries: 10_000,
    };

    /// Where answers are cached under these settings: nowhere when
    /// disabled, in `redis` when given (shared by replicas), else in
    /// process memory.
    pub fn store(&self, redis: Option<&Redis>) -> Store {
        match redis {
            _ if !self.enabled => Store::Disabled,
            Some(redis) => Store::Redis(redis.clone()),
            None => SearchCache::local_store(self.ttl, self.max_entries),
        }
    }
}

impl SearchCache {
    /// A cache over `store`; counters go to `registry`.
    pub fn new(store: Store, ttl: Duration, registry: &Registry) -> prometheus::Result<Self> {
        let requests = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "catalog_search_cache_requests_total",
                    "Search cache lookups by result: hit, miss, error (error = answered from the database).",
                ),
                &["result"],
            )?,
        )?;
        let durations = registered(
            registry,
            HistogramVec::new(
            HistogramOpts::new(
                "cache_operation_duration_seconds",
                "Search cache operations (get, set) by outcome (ok, error); a timeout is an error.",
            )
            .buckets(vec![
                0.000_05, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.2, 0.5,
            ]),
            &["operation", "outcome"],
        )?,
        )?;
        let coalesced = registered(
            registry,
            IntCounter::new(
                "catalog_search_coalesced_total",
                "Searches answered by a concurrent identical search's database query instead of their own.",
            )?,
        )?;
        Ok(Self {
            store,
            ttl,
            requests,
            durations,
            coalesced,
        })
    }

    /// An in-process cache holding at most `max_entries` answers for `ttl`.
    pub fn local_store(ttl: Duration, max_entries: u64) -> Store {
        Store::Local(
            moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
        )
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        !matches!(self.store, Store::Disabled)
    }

    /// Counts a search answered by another's computation.
    pub fn count_coalesced(&self) {
        self.coalesced.inc();
    }

    fn count(&self, result: &str) {
        self.requests.with_label_values(&[result]).inc();
    }

    fn timed(&self, operation: &str, ok: bool, started: std::time::Instant) {
        self.durations
            .with_label_values(&[operation, if ok { "ok" } else { "error" }])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Looks `key` up.
    pub async fn get(&self, key: &str) -> Lookup {
        let started = std::time::Instant::now();
        let found = match &self.store {
            Store::Disabled => return Lookup::Miss,
            Store::Local(c) => Ok(c.get(key).await),
            Store::Redis(redis) => {
                let k = redis.key(search_key(key));
                match tokio::time::timeout(REDIS_TIMEOUT, redis.client.get::<Option<Vec<u8>>, _>(k))
                    .await
                {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            }
        };
        self.timed("get", found.is_ok(), started);
        match found {
            Ok(Some(v)) => {
                self.count("hit");
                Lookup::Hit(v)
            }
            Ok(None) => {
                self.count("miss");
                Lookup::Miss
            }
            Err(e) => {
                tracing::warn!(error = %e, "search cache lookup failed; answering from the database");
                self.count("error");
                Lookup::Error
            }
        }
    }

    /// Stores an answer (best effort; failures are logged, not returned).
    pub async fn put(&self, key: String, value: Vec<u8>) {
        let started = std::time::Instant::now();
        match &self.store {
            Store::Disabled => {}
            Store::Local(c) => {
                c.insert(key, value).await;
                self.timed("set", true, started);
            }
            Store::Redis(redis) => {
                let k = redis.key(search_key(&key));
                let secs = i64::try_from(self.ttl.as_secs()).unwrap_or(60).max(1);
                let set = redis
                    .client
                    .set::<(), _, _>(k, value, Some(Expiration::EX(secs)), None, false)
                    .instrument(redis_span("SET"));
                let result = tokio::time::timeout(REDIS_TIMEOUT, set).await;
                self.timed("set", matches!(result, Ok(Ok(()))), started);
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "search cache store failed"),
                    Err(_) => tracing::warn!("search cache store timed out"),
                }
            }
        }
    }
}
