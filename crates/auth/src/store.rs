//! Where sessions and login counters live: Redis when `REDIS_URL` is set,
//! otherwise the embedded default (sessions in the SQL database, counters in
//! process memory).
//!
//! Redis keys (all under the configured prefix, default `otus:`):
//! `session:<sha256>` → user id, with the session's TTL;
//! `user-sessions:<id>` → set of that user's session hashes (for revoking
//! all at account deletion); `login:addr:<addr>` and `login:user:<name>` →
//! attempt counters with the window as TTL.
//!
//! If Redis restarts without persistence (the chart's default), every session
//! is gone: users log in again. Nothing fails open: a missing session is
//! simply an unauthenticated request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use fred::prelude::{Client, Expiration, KeysInterface as _, SetsInterface as _};
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, DatabaseConnection, DbErr,
    EntityTrait as _, QueryFilter as _,
};
use tracing::Instrument as _;

use crate::entity::session;

/// A storage failure (the caller answers UNAVAILABLE).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

fn unix_now() -> i64 {
    Utc::now().timestamp()
}

/// Session storage.
#[derive(Clone)]
pub enum SessionStore {
    /// The `sessions` table.
    Sql(DatabaseConnection),
    /// Redis keys under `prefix`.
    Redis { client: Client, prefix: String },
}

impl SessionStore {
    /// `redis` or `sql`, for span fields.
    fn backend(&self) -> &'static str {
        match self {
            Self::Sql(_) => "sql",
            Self::Redis { .. } => "redis",
        }
    }

    /// Stores a session for `user_id` that expires after `ttl`.
    #[tracing::instrument(name = "session_store.create", skip_all, fields(store = self.backend()))]
    pub async fn create(&self, hash: &str, user_id: i64, ttl: Duration) -> Result<(), StoreError> {
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        match self {
            Self::Sql(db) => {
                session::ActiveModel {
                    token_hash: Set(hash.to_owned()),
                    user_id: Set(user_id),
                    expires_at: Set(unix_now().saturating_add(secs)),
                    created_at: Set(Utc::now().fixed_offset()),
                }
                .insert(db)
                .await?;
            }
            Self::Redis { client, prefix } => {
                let key = format!("{prefix}session:{hash}");
                let set = format!("{prefix}user-sessions:{user_id}");
                let () = client
                    .set(&key, user_id, Some(Expiration::EX(secs)), None, false)
                    .await?;
                let _: i64 = client.sadd(&set, hash).await?;
                // The set lives as long as its newest session.
                let _: i64 = client.expire(&set, secs, None).await?;
            }
        }
        Ok(())
    }

    /// The user of a live session.
    #[tracing::instrument(name = "session_store.get", skip_all, fields(store = self.backend()))]
    pub async fn get(&self, hash: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Self::Sql(db) => Ok(session::Entity::find_by_id(hash.to_owned())
                .filter(session::Column::ExpiresAt.gt(unix_now()))
                .one(db)
                .await?
                .map(|s| s.user_id)),
            Self::Redis { client, prefix } => Ok(client
                .get(format!("{prefix}session:{hash}"))
                .instrument(otus_telemetry::trace::redis_span("GET"))
                .await?),
        }
    }

    /// Ends one session (no error if it did not exist).
    #[tracing::instrument(name = "session_store.delete", skip_all, fields(store = self.backend()))]
    pub async fn delete(&self, hash: &str) -> Result<(), StoreError> {
        match self {
            Self::Sql(db) => {
                session::Entity::delete_by_id(hash.to_owned())
                    .exec(db)
                    .await?;
            }
            Self::Redis { client, prefix } => {
                let _: i64 = client.del(format!("{prefix}session:{hash}")).await?;
            }
        }
        Ok(())
    }

    /// Ends every session of `user_id`.
    #[tracing::instrument(name = "session_store.delete_all", skip_all, fields(store = self.backend()))]
    pub async fn delete_all(&self, user_id: i64) -> Result<(), StoreError> {
        match self {
            Self::Sql(db) => {
                session::Entity::delete_many()
                    .filter(session::Column::UserId.eq(user_id))
                    .exec(db)
                    .await?;
            }
            Self::Redis { client, prefix } => {
                let set = format!("{prefix}user-sessions:{user_id}");
                let hashes: Vec<String> = client.smembers(&set).await?;
                let mut keys: Vec<String> = hashes
                    .iter()
                    .map(|h| format!("{prefix}session:{h}"))
                    .collect();
                keys.push(set);
                let _: i64 = client.del(keys).await?;
            }
        }
        Ok(())
    }

    /// Deletes expired rows (SQL only; Redis expires keys itself).
    #[tracing::instrument(name = "session_store.prune_expired", skip_all, fields(store = self.backend()))]
    pub async fn prune_expired(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sql(db) => Ok(session::Entity::delete_many()
                .filter(session::Column::ExpiresAt.lte(unix_now()))
                .exec(db)
                .await?
                .rows_affected),
            Self::Redis { .. } => Ok(0),
        }
    }
}

/// Login attempt limits.
#[derive(Clone, Debug)]
pub struct LoginLimits {
    /// Failed logins per username per window before 429.
    pub max_failures_per_username: u32,
    /// Login attempts (any outcome) per client address per window before 429.
    pub max_attempts_per_address: u32,
    /// The counting window.
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures_per_username: 5,
            max_attempts_per_address: 100,
            window: Duration::from_secs(300),
        }
    }
}

/// Fixed-window counters for login attempts.
#[derive(Clone)]
pub enum LoginLimiter {
    /// In process memory (one process: the embedded default).
    Local(Arc<Mutex<HashMap<String, (u32, Instant)>>>),
    /// Shared by every replica through Redis.
    Redis { client: Client, prefix: String },
}

impl LoginLimiter {
    /// `redis` or `memory`, for span fields.
    fn backend(&self) -> &'static str {
        match self {
            Self::Local(_) => "memory",
            Self::Redis { .. } => "redis",
        }
    }

    /// A limiter kept in this process.
    pub fn local() -> Self {
        Self::Local(Arc::default())
    }

    /// Adds one to `key`'s counter; returns the new count and the seconds
    /// until the window resets.
    #[tracing::instrument(name = "login_limiter.increment", skip_all, fields(store = self.backend()))]
    pub async fn increment(&self, key: &str, window: Duration) -> Result<(u32, u64), StoreError> {
        match self {
            Self::Local(map) => {
                let now = Instant::now();
                let mut map = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if map.len() > 100_000 {
                    map.retain(|_, (_, until)| *until > now);
                }
                let entry = map.entry(key.to_owned()).or_insert((0, now + window));
                if entry.1 <= now {
                    *entry = (0, now + window);
                }
                entry.0 = entry.0.saturating_add(1);
                Ok((
                    entry.0,
                    entry.1.saturating_duration_since(now).as_secs().max(1),
                ))
            }
            Self::Redis { client, prefix } => {
                let key = format!("{prefix}{key}");
                let count: i64 = client.incr(&key).await?;
                let secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX).max(1);
                if count == 1 {
                    let _: i64 = client.expire(&key, secs, None).await?;
                }
                let ttl: i64 = client.ttl(&key).await?;
                if ttl < 0 {
                    // A counter without expiry (lost EXPIRE): give it one.
                    let _: i64 = client.expire(&key, secs, None).await?;
                }
                let ttl = if ttl > 0 { ttl } else { secs };
                Ok((
                    u32::try_from(count).unwrap_or(u32::MAX),
                    u64::try_from(ttl).unwrap_or(1),
                ))
            }
        }
    }

    /// `key`'s current count and seconds until reset (0, 0 when unset).
    #[tracing::instrument(name = "login_limiter.peek", skip_all, fields(store = self.backend()))]
    pub async fn peek(&self, key: &str) -> Result<(u32, u64), StoreError> {
        match self {
            Self::Local(map) => {
                let now = Instant::now();
                let map = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Ok(match map.get(key) {
                    Some((n, until)) if *until > now => {
                        (*n, until.saturating_duration_since(now).as_secs().max(1))
                    }
                    _ => (0, 0),
                })
            }
            Self::Redis { client, prefix } => {
                let key = format!("{prefix}{key}");
                let count: Option<i64> = client.get(&key).await?;
                let ttl: i64 = client.ttl(&key).await?;
                Ok((
                    count.and_then(|c| u32::try_from(c).ok()).unwrap_or(0),
                    u64::try_from(ttl.max(1)).unwrap_or(1),
                ))
            }
        }
    }

    /// Forgets `key`'s counter.
    #[tracing::instrument(name = "login_limiter.reset", skip_all, fields(store = self.backend()))]
    pub async fn reset(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Self::Local(map) => {
                map.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(key);
            }
            Self::Redis { client, prefix } => {
                let _: i64 = client.del(format!("{prefix}{key}")).await?;
            }
        }
        Ok(())
    }
}
