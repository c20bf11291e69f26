//! Cache-aside for search answers.
//!
//! The service looks the normalised search up first; on a miss it asks the
//! database and stores the encoded answer with a TTL. Only successful answers
//! are stored. The cache is an in-process moka cache by default and Redis when
//! `REDIS_URL` is set (shared by replicas). A slow or dead Redis costs a search
//! at most [`REDIS_TIMEOUT`] and never its answer: errors count as misses and
//! the database answers.
//!
//! With Redis, each process also keeps a near copy of the answers that can
//! never change ([`Lasting::Forever`]: those of the in-memory index, whose key
//! names the index version that computed them), so a repeated search does not
//! go to Redis at all; at most [`NEAR_BYTES`] of them, each for the TTL.

use std::time::Duration;

use fred::prelude::{Expiration, KeysInterface as _};
use otus_db::Redis;
use otus_telemetry::{registered, trace::redis_span};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use tracing::Instrument as _;

/// Bound on one Redis cache operation.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(200);

/// Most bytes (keys and answers) of the near copy a process keeps of a
/// Redis cache's lasting answers: 32 MiB, some 8 000 answers of 20
/// products, 500 of the largest page (`limit=100`, ~57 KB).
pub const NEAR_BYTES: u64 = 32 << 20;

/// Most bytes (keys and answers) the in-process cache holds (no Redis),
/// whatever `CACHE_MAX_ENTRIES` allows: 64 MiB. 10 000 answers of the
/// largest page (`limit=100`, ~57 KB) would otherwise hold 570 MB, and
/// anonymous searches can fill the cache within its TTL.
pub const LOCAL_BYTES: u64 = 64 << 20;

/// What a cached answer holds in memory: its key and its bytes.
fn bytes(key: &str, value: &[u8]) -> u64 {
    (key.len() as u64).saturating_add(value.len() as u64)
}

/// Where cached answers live.
#[derive(Clone)]
pub enum Store {
    /// No caching: nothing is read or written (`CACHE_ENABLED=0`).
    Disabled,
    /// This process's memory.
    Local(moka::future::Cache<String, Vec<u8>>),
    /// Redis, under the deployment's prefix ([`search_key`]), and this
    /// process's near copy of the lasting answers read or written there.
    Redis(Redis, moka::future::Cache<String, Vec<u8>>),
}

/// Whether the answer under a key can change while the key is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lasting {
    /// Never: the key names the index version that computed the answer, and
    /// every change to the products moves that version. A copy anywhere is
    /// as good as the original.
    Forever,
    /// For the TTL only (an answer of the database): only the shared store
    /// holds it, so it is served for at most the TTL after it was computed.
    Ttl,
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
    /// `catalog_search_cache_near_hits_total`: hits answered by the near
    /// copy of a Redis cache (counted as hits in `requests` too).
    near_hits: IntCounter,
}

/// The search cache's settings: what the binary's flags map onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// Cache search answers at all.
    pub enabled: bool,
    /// How long a cached answer is served: the consistency window.
    pub ttl: Duration,
    /// Most answers the in-process cache holds, within [`LOCAL_BYTES`] in
    /// all (Redis: its `maxmemory`).
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
            Some(redis) => Store::Redis(redis.clone(), SearchCache::near_store(self.ttl)),
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
        let near_hits = registered(
            registry,
            IntCounter::new(
                "catalog_search_cache_near_hits_total",
                "Search cache hits answered by this process's near copy of a Redis cache, without asking Redis (also counted as hits).",
            )?,
        )?;
        Ok(Self {
            store,
            ttl,
            requests,
            durations,
            coalesced,
            near_hits,
        })
    }

    /// An in-process cache holding, each for `ttl`, at most `max_entries`
    /// answers and at most [`LOCAL_BYTES`] of them: each answer weighs its
    /// bytes but at least an equal share of the bytes.
    pub fn local_store(ttl: Duration, max_entries: u64) -> Store {
        let share = LOCAL_BYTES.checked_div(max_entries).unwrap_or(0).max(1);
        let capacity = if max_entries == 0 { 0 } else { LOCAL_BYTES };
        Store::Local(
            moka::future::Cache::builder()
                .max_capacity(capacity)
                .weigher(move |k: &String, v: &Vec<u8>| {
                    u32::try_from(bytes(k, v).max(share)).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
        )
    }

    /// The near copy of a Redis cache: at most [`NEAR_BYTES`], each answer
    /// for `ttl` (an older version's answers are not asked for again).
    pub fn near_store(ttl: Duration) -> moka::future::Cache<String, Vec<u8>> {
        moka::future::Cache::builder()
            .max_capacity(NEAR_BYTES)
            .weigher(|k: &String, v: &Vec<u8>| u32::try_from(bytes(k, v)).unwrap_or(u32::MAX))
            .time_to_live(ttl)
            .build()
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
    pub async fn get(&self, key: &str, lasting: Lasting) -> Lookup {
        let started = std::time::Instant::now();
        let found = match &self.store {
            Store::Disabled => return Lookup::Miss,
            Store::Local(c) => Ok(c.get(key).await),
            Store::Redis(redis, near) => {
                if lasting == Lasting::Forever
                    && let Some(v) = near.get(key).await
                {
                    self.near_hits.inc();
                    self.count("hit");
                    return Lookup::Hit(v);
                }
                let k = redis.key(search_key(key));
                match tokio::time::timeout(REDIS_TIMEOUT, redis.client.get::<Option<Vec<u8>>, _>(k))
                    .await
                {
                    Ok(Ok(Some(v))) if lasting == Lasting::Forever => {
                        near.insert(key.to_owned(), v.clone()).await;
                        Ok(Some(v))
                    }
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
    pub async fn put(&self, key: String, value: Vec<u8>, lasting: Lasting) {
        let started = std::time::Instant::now();
        match &self.store {
            Store::Disabled => {}
            Store::Local(c) => {
                c.insert(key, value).await;
                self.timed("set", true, started);
            }
            Store::Redis(redis, near) => {
                let k = redis.key(search_key(&key));
                if lasting == Lasting::Forever {
                    near.insert(key, value.clone()).await;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers of the index (lasting forever) are kept near once written or
    /// read, so they are served after Redis lost them; answers of the
    /// database (lasting the TTL) are only ever in Redis.
    #[tokio::test]
    #[cfg_attr(
        not(otus_redis_tests),
        ignore = "TEST_REDIS_URL is not set: cannot test the near copy of a Redis cache"
    )]
    async fn lasting_answers_are_served_near_and_others_only_from_redis() {
        let redis = otus_test_db::redis("cache-test").await;
        let registry = Registry::new();
        let settings = CacheSettings::DEFAULT;
        let cache = SearchCache::new(settings.store(Some(&redis)), settings.ttl, &registry)
            .expect("metrics");
        let in_redis = |key: &str| redis.key(search_key(key));
        let forget = async |key: &str| {
            let _: i64 = redis.client.del(in_redis(key)).await.expect("DEL");
        };
        let hit = |l: Lookup| match l {
            Lookup::Hit(v) => Some(v),
            Lookup::Miss => None,
            Lookup::Error => panic!("the cache could not answer"),
        };

        // Written by this process, then lost from Redis.
        cache
            .put(
                "a|index=1".into(),
                b"index answer".to_vec(),
                Lasting::Forever,
            )
            .await;
        cache
            .put("a|db".into(), b"db answer".to_vec(), Lasting::Ttl)
            .await;
        forget("a|index=1").await;
        forget("a|db").await;
        assert_eq!(
            hit(cache.get("a|index=1", Lasting::Forever).await).as_deref(),
            Some(&b"index answer"[..])
        );
        assert_eq!(hit(cache.get("a|db", Lasting::Ttl).await), None);

        // Written by another replica: read from Redis once, then near.
        for (key, value) in [
            ("b|index=1", "other's answer"),
            ("b|db", "other's db answer"),
        ] {
            let _: () = redis
                .client
                .set(
                    in_redis(key),
                    value.as_bytes().to_vec(),
                    Some(Expiration::EX(60)),
                    None,
                    false,
                )
                .await
                .expect("SET");
        }
        for key in ["b|index=1", "b|db"] {
            let lasting = if key.ends_with("|db") {
                Lasting::Ttl
            } else {
                Lasting::Forever
            };
            assert!(
                hit(cache.get(key, lasting).await).is_some(),
                "{key} from Redis"
            );
        }
        forget("b|index=1").await;
        forget("b|db").await;
        assert_eq!(
            hit(cache.get("b|index=1", Lasting::Forever).await).as_deref(),
            Some(&b"other's answer"[..])
        );
        assert_eq!(hit(cache.get("b|db", Lasting::Ttl).await), None);

        // Four hits: two from Redis, two from near (counted apart too).
        assert_eq!(cache.near_hits.get(), 2);
        assert_eq!(cache.requests.with_label_values(&["hit"]).get(), 4);
    }

    /// The in-process cache holds at most its entries of small answers and
    /// at most LOCAL_BYTES of large ones.
    #[tokio::test]
    async fn the_in_process_cache_holds_at_most_its_entries_and_its_bytes() {
        let local =
            |max_entries| match SearchCache::local_store(Duration::from_secs(60), max_entries) {
                Store::Local(c) => c,
                _ => unreachable!("local_store makes a local store"),
            };
        let small = local(100);
        for i in 0..300 {
            small.insert(format!("k{i}|db"), vec![0u8; 100]).await;
        }
        small.run_pending_tasks().await;
        let n = small.entry_count();
        assert!(
            (50..=100).contains(&n),
            "{n} small answers kept, at most 100"
        );

        let large = local(CacheSettings::DEFAULT.max_entries);
        offered_twice_its_bytes(&large, LOCAL_BYTES, "db").await;

        let none = local(0);
        none.insert("k|db".to_owned(), vec![1]).await;
        none.run_pending_tasks().await;
        assert_eq!(none.entry_count(), 0, "CACHE_MAX_ENTRIES=0 keeps nothing");
    }

    /// The near copy holds at most NEAR_BYTES, whatever it is offered.
    #[tokio::test]
    async fn the_near_copy_stays_within_its_bytes() {
        let near = SearchCache::near_store(Duration::from_secs(60));
        offered_twice_its_bytes(&near, NEAR_BYTES, "index=1").await;
    }

    /// Offers `cache` answers of 64 KiB (keys ending `|{suffix}`) worth
    /// twice `budget` bytes: it must keep at most `budget`, and more than
    /// half of it.
    async fn offered_twice_its_bytes(
        cache: &moka::future::Cache<String, Vec<u8>>,
        budget: u64,
        suffix: &str,
    ) {
        let answer = vec![0u8; 64 << 10];
        for i in 0..2 * budget / (64 << 10) {
            cache.insert(format!("k{i}|{suffix}"), answer.clone()).await;
        }
        cache.run_pending_tasks().await;
        let kept: u64 = cache.iter().map(|(k, v)| bytes(&k, &v)).sum();
        assert!(kept <= budget, "{kept} bytes kept");
        assert!(kept > budget / 2, "only {kept} bytes kept");
    }
}
