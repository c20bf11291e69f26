//! The Redis connection every service opens the same way.

use std::time::Duration;

use anyhow::Context as _;
use fred::prelude::{Builder, Client, ClientLike as _, Config, ReconnectPolicy};

/// The prefix of every key unless `REDIS_KEY_PREFIX` says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "otus:";

/// A Redis client and the prefix every key of this deployment starts with
/// (`REDIS_KEY_PREFIX`, so several systems, or test runs, can share one
/// Redis). Each service builds its own keys under it, in its `keys` module.
#[derive(Clone)]
pub struct Redis {
    /// The connected client (it reconnects by itself).
    pub client: Client,
    /// Prepended to every key.
    pub prefix: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects to `url` with bounded timeouts (a slow Redis must not hang
    /// requests: every command gives up after 1 s) and automatic
    /// reconnection.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> anyhow::Result<Self> {
        let config = Config::from_url(url).context("invalid REDIS_URL")?;
        let mut builder = Builder::from_config(config);
        builder
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(1))
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        let client = builder.build().context("building the Redis client")?;
        client.init().await.context("connecting to Redis")?;
        tracing::info!("redis connected");
        Ok(Self {
            client,
            prefix: prefix.into(),
        })
    }

    /// `key` under this deployment's prefix.
    pub fn key(&self, key: impl std::fmt::Display) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// What a Redis server does when its memory is full, read from the server
/// (`CONFIG GET maxmemory*`, `INFO server`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// `maxmemory` in bytes; 0 means no bound.
    pub maxmemory: u64,
    /// `maxmemory-policy`: `noeviction`, `allkeys-lfu`, `volatile-lru`, …
    pub policy: String,
    /// The server's `run_id`: two URLs that reach one server give the same.
    pub run_id: String,
}

impl MemoryPolicy {
    /// Whether a key can be removed before it expires to make room for
    /// others (every policy but `noeviction` does, once `maxmemory` is set;
    /// the `volatile-*` ones pick among keys with a TTL, which sessions have).
    pub fn evicts(&self) -> bool {
        self.maxmemory > 0 && self.policy != "noeviction"
    }

    /// Whether the server refuses writes or evicts at some size.
    pub fn bounded(&self) -> bool {
        self.maxmemory > 0
    }
}

impl std::fmt::Display for MemoryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.maxmemory == 0 {
            write!(
                f,
                "maxmemory 0 (unbounded), maxmemory-policy {}",
                self.policy
            )
        } else {
            write!(
                f,
                "maxmemory {} bytes, maxmemory-policy {}",
                self.maxmemory, self.policy
            )
        }
    }
}

/// Why a Redis cannot hold sessions (and login counters), or `None` when it
/// can. `cache` is the search cache's Redis when the same process writes
/// one. The rule (CONTRACT: sessions never evictable by cache traffic):
/// the session store never evicts, and it never shares a bounded memory
/// with a cache, which would fill it until new sessions fail.
pub fn session_store_problem(
    sessions: &MemoryPolicy,
    cache: Option<&MemoryPolicy>,
) -> Option<String> {
    if sessions.evicts() {
        return Some(format!(
            "the Redis for sessions evicts keys when full ({sessions}): any other traffic, \
             such as anonymous searches filling a cache, would log users out. Give sessions \
             a Redis with maxmemory-policy noeviction (SESSION_REDIS_URL), or leave REDIS_URL \
             unset to keep sessions in the database"
        ));
    }
    if let Some(cache) = cache
        && cache.run_id == sessions.run_id
        && sessions.bounded()
    {
        return Some(format!(
            "the search cache and sessions share one Redis with a memory bound ({sessions}): \
             cache traffic would fill it and logins would fail. Give sessions their own Redis \
             (SESSION_REDIS_URL), or remove the bound (maxmemory 0)"
        ));
    }
    None
}

impl Redis {
    /// This server's memory policy.
    pub async fn memory_policy(&self) -> anyhow::Result<MemoryPolicy> {
        use fred::types::{ClusterHash, CustomCommand};
        let config = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
        let pairs: std::collections::HashMap<String, String> = self
            .client
            .custom(config, vec!["GET", "maxmemory*"])
            .await
            .context("CONFIG GET maxmemory*")?;
        let maxmemory = pairs
            .get("maxmemory")
            .and_then(|v| v.parse::<u64>().ok())
            .context("CONFIG GET gave no numeric maxmemory")?;
        let policy = pairs
            .get("maxmemory-policy")
            .cloned()
            .context("CONFIG GET gave no maxmemory-policy")?;
        let info = CustomCommand::new_static("INFO", ClusterHash::Random, false);
        let server: String = self
            .client
            .custom(info, vec!["server"])
            .await
            .context("INFO server")?;
        let run_id = server
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .context("INFO server gave no run_id")?;
        Ok(MemoryPolicy {
            maxmemory,
            policy,
            run_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(maxmemory: u64, policy: &str, run_id: &str) -> MemoryPolicy {
        MemoryPolicy {
            maxmemory,
            policy: policy.to_owned(),
            run_id: run_id.to_owned(),
        }
    }

    #[test]
    fn sessions_refuse_a_redis_that_evicts() {
        for p in [
            "allkeys-lfu",
            "allkeys-lru",
            "allkeys-random",
            "volatile-ttl",
            "volatile-lru",
        ] {
            let why = session_store_problem(&policy(16 << 20, p, "a"), None);
            assert!(why.is_some_and(|w| w.contains(p)), "{p} accepted");
        }
        // Unbounded: nothing is ever evicted, whatever the policy says.
        assert_eq!(
            session_store_problem(&policy(0, "allkeys-lfu", "a"), None),
            None
        );
        assert_eq!(
            session_store_problem(&policy(16 << 20, "noeviction", "a"), None),
            None
        );
    }

    #[test]
    fn sessions_refuse_to_share_a_bounded_redis_with_the_cache() {
        let sessions = policy(16 << 20, "noeviction", "a");
        let shared = session_store_problem(&sessions, Some(&policy(16 << 20, "noeviction", "a")));
        assert!(shared.is_some_and(|w| w.contains("share")));
        // Another server for the cache, or no bound: fine.
        assert_eq!(
            session_store_problem(&sessions, Some(&policy(16 << 20, "allkeys-lfu", "b"))),
            None
        );
        let unbounded = policy(0, "noeviction", "a");
        assert_eq!(session_store_problem(&unbounded, Some(&unbounded)), None);
    }
}
