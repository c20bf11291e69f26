//! The Redis connection every service opens the same way.

use std::time::Duration;

use anyhow::Context as _;
use fred::prelude::{Builder, Client, ClientLike as _, Config, ReconnectPolicy};

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
