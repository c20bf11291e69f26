//! Where sessions and login counters live: Redis when `REDIS_URL` is set,
//! otherwise the embedded default (sessions in the SQL database, counters in
//! process memory).
//!
//! The keys are [`crate::keys`]'s (in Redis under the configured prefix,
//! default `otus:`).
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
use fred::prelude::{Expiration, KeysInterface as _, SetsInterface as _};
use otus_db::Redis;
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, DbErr, EntityTrait as _,
    QueryFilter as _,
};
use tracing::Instrument as _;

use crate::{entity::session, keys};

/// A storage failure (the caller answers UNAVAILABLE).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

fn unix_now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `ttl` in whole milliseconds, at least 1 (a zero TTL is not a session).
fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Rows whose session is still alive at `now_ms`: by `expires_at_ms`, or by
/// `expires_at` (seconds) for rows a replica of the previous release wrote
/// during a rolling update (`expires_at_ms = 0`; see the migration
/// `m20261125_000004_session_expiry_ms`).
fn alive_at(now_ms: i64) -> sea_orm::Condition {
    use sea_orm::Condition;
    Condition::any()
        .add(session::Column::ExpiresAtMs.gt(now_ms))
        .add(
            Condition::all()
                .add(session::Column::ExpiresAtMs.eq(0))
                .add(session::Column::ExpiresAt.gt(now_ms.div_euclid(1000))),
        )
}

/// Session storage.
#[derive(Clone)]
pub enum SessionStore {
    /// The `sessions` table.
    Sql(otus_db::Db),
    /// Redis keys under the deployment's prefix.
    Redis(Redis),
}

impl SessionStore {
    /// `redis` or `sql`, for span fields.
    fn backend(&self) -> &'static str {
        match self {
            Self::Sql(_) => "sql",
            Self::Redis(_) => "redis",
        }
    }

    /// Stores a session for `user_id` that expires `ttl` (to the
    /// millisecond) after this call.
    #[tracing::instrument(name = "session_store.create", skip_all, fields(store = self.backend()))]
    pub async fn create(&self, hash: &str, user_id: i64, ttl: Duration) -> Result<(), StoreError> {
        let millis = ttl_millis(ttl);
        match self {
            Self::Sql(db) => {
                let expires_at_ms = unix_now_ms().saturating_add(millis);
                session::ActiveModel {
                    token_hash: Set(hash.to_owned()),
                    user_id: Set(user_id),
                    // Rounded up, for replicas of the previous release.
                    expires_at: Set(expires_at_ms.saturating_add(999).div_euclid(1000)),
                    expires_at_ms: Set(expires_at_ms),
                    created_at: Set(Utc::now().fixed_offset()),
                }
                .insert(db)
                .await?;
            }
            Self::Redis(redis) => {
                let (client, key) = (&redis.client, redis.key(keys::session(hash)));
                let set = redis.key(keys::user_sessions(user_id));
                let () = client
                    .set(&key, user_id, Some(Expiration::PX(millis)), None, false)
                    .await?;
                let _: i64 = client.sadd(&set, hash).await?;
                // The set lives as long as its newest session.
                let _: i64 = client.pexpire(&set, millis, None).await?;
            }
        }
        Ok(())
    }

    /// The user of a live session.
    #[tracing::instrument(name = "session_store.get", skip_all, fields(store = self.backend()))]
    pub async fn get(&self, hash: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Self::Sql(db) => Ok(session::Entity::find_by_id(hash.to_owned())
                .filter(alive_at(unix_now_ms()))
                .one(db)
                .await?
                .map(|s| s.user_id)),
            Self::Redis(redis) => Ok(redis
                .client
                .get(redis.key(keys::session(hash)))
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
            Self::Redis(redis) => {
                let _: i64 = redis.client.del(redis.key(keys::session(hash))).await?;
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
            Self::Redis(redis) => {
                let set = redis.key(keys::user_sessions(user_id));
                let hashes: Vec<String> = redis.client.smembers(&set).await?;
                let mut doomed: Vec<String> =
                    hashes.iter().map(|h| redis.key(keys::session(h))).collect();
                doomed.push(set);
                let _: i64 = redis.client.del(doomed).await?;
            }
        }
        Ok(())
    }

    /// Deletes expired rows (SQL only; Redis expires keys itself).
    #[tracing::instrument(name = "session_store.prune_expired", skip_all, fields(store = self.backend()))]
    pub async fn prune_expired(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sql(db) => Ok(session::Entity::delete_many()
                .filter(alive_at(unix_now_ms()).not())
                .exec(db)
                .await?
                .rows_affected),
            Self::Redis(_) => Ok(0),
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

impl LoginLimits {
    /// The defaults (see [`crate::AuthSettings::DEFAULT`]).
    pub const DEFAULT: Self = Self {
        max_failures_per_username: 5,
        max_attempts_per_address: 100,
        window: Duration::from_secs(300),
    };
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Fixed-window counters for login attempts.
#[derive(Clone)]
pub enum LoginLimiter {
    /// In process memory (one process: the embedded default).
    Local(Arc<Mutex<HashMap<String, (u32, Instant)>>>),
    /// Shared by every replica through Redis.
    Redis(Redis),
}

impl LoginLimiter {
    /// `redis` or `memory`, for span fields.
    fn backend(&self) -> &'static str {
        match self {
            Self::Local(_) => "memory",
            Self::Redis(_) => "redis",
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
            Self::Redis(redis) => {
                let (client, key) = (&redis.client, redis.key(key));
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
            Self::Redis(redis) => {
                let (client, key) = (&redis.client, redis.key(key));
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
            Self::Redis(redis) => {
                let _: i64 = redis.client.del(redis.key(key)).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use sea_orm::{ConnectionTrait as _, DatabaseConnection};

    use super::*;

    /// A session of 1.5 s must still be alive at 1.2 s (a store counting whole
    /// seconds gives it between 0.5 and 1.5 s, and a truncating one between 0
    /// and 1 s) and gone just after 1.5 s. The "alive" observation only counts
    /// when the lookup returned before the TTL ran out, so a stalled machine
    /// makes the test retry, never pass without having seen it.
    async fn sessions_live_exactly_their_ttl(store: &SessionStore) {
        const TTL: Duration = Duration::from_millis(1500);
        const CHECK_ALIVE_AT: Duration = Duration::from_millis(1200);
        const ATTEMPTS: u32 = 5;
        let run = uuid_like();
        for attempt in 0..ATTEMPTS {
            let hash = format!("{run}{attempt:04}");
            let before = Instant::now();
            store.create(&hash, 7, TTL).await.expect("create");
            let created = Instant::now();
            tokio::time::sleep_until((before + CHECK_ALIVE_AT).into()).await;
            let alive = store.get(&hash).await.expect("get");
            let looked_up = before.elapsed();
            let conclusive = looked_up < TTL;
            if conclusive {
                assert_eq!(
                    alive,
                    Some(7),
                    "a {TTL:?} session was gone {looked_up:?} after it was created"
                );
            } else {
                eprintln!(
                    "attempt {attempt}: the lookup returned {looked_up:?} after creation, \
                     past the TTL: retrying"
                );
            }
            tokio::time::sleep_until((created + TTL + Duration::from_millis(50)).into()).await;
            assert_eq!(
                store.get(&hash).await.expect("get"),
                None,
                "a {TTL:?} session still answered {:?} after it was created",
                created.elapsed()
            );
            assert_eq!(
                store.prune_expired().await.expect("prune"),
                match store {
                    SessionStore::Sql(_) => 1,
                    SessionStore::Redis(_) => 0,
                }
            );
            if conclusive {
                return;
            }
        }
        panic!("no lookup returned within the TTL in {ATTEMPTS} attempts: machine too slow");
    }

    fn uuid_like() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    async fn migrate(db: DatabaseConnection) {
        use otus_migration::MigratorTrait as _;
        otus_migration::Migrator::up(&db, None)
            .await
            .expect("migrate");
    }

    async fn migrated_in_memory() -> DatabaseConnection {
        let db = otus_test_db::connect("sqlite::memory:", "in-memory SQLite").await;
        migrate(db.clone()).await;
        db
    }

    #[tokio::test]
    async fn sql_sessions_on_sqlite_expire_to_the_millisecond() {
        let db = migrated_in_memory().await;
        sessions_live_exactly_their_ttl(&SessionStore::Sql(otus_db::Db::always_up(db))).await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(otus_pg_tests),
        ignore = "TEST_DATABASE_URL is not set: the SQL store runs on SQLite only"
    )]
    async fn sql_sessions_on_postgres_expire_to_the_millisecond() {
        let test_db =
            otus_test_db::TestDb::create(otus_test_db::Backend::Postgres, "otus", migrate).await;
        let db = otus_test_db::connect(test_db.url(), "the test database").await;
        sessions_live_exactly_their_ttl(&SessionStore::Sql(otus_db::Db::always_up(db.clone())))
            .await;
        db.close().await.expect("close");
    }

    #[tokio::test]
    #[cfg_attr(
        not(otus_redis_tests),
        ignore = "TEST_REDIS_URL is not set: cannot test the Redis session store"
    )]
    async fn redis_sessions_expire_to_the_millisecond() {
        let redis = otus_test_db::redis("store-test").await;
        sessions_live_exactly_their_ttl(&SessionStore::Redis(redis.clone())).await;
        let _: i64 = redis
            .client
            .del(redis.key(keys::user_sessions(7)))
            .await
            .expect("clean up");
    }

    /// Rows written by the previous release (seconds only) keep working during
    /// a rolling update.
    #[tokio::test]
    async fn rows_without_milliseconds_expire_by_seconds() {
        let db = migrated_in_memory().await;
        let now = Utc::now().timestamp();
        for (hash, expires_at) in [("old-alive", now + 60), ("old-dead", now - 1)] {
            db.execute_unprepared(&format!(
                "INSERT INTO sessions (token_hash, user_id, expires_at, created_at) \
                 VALUES ('{hash}', 3, {expires_at}, '2026-11-24T00:00:00+00:00')"
            ))
            .await
            .expect("insert an old-style row");
        }
        let store = SessionStore::Sql(otus_db::Db::always_up(db));
        assert_eq!(store.get("old-alive").await.expect("get"), Some(3));
        assert_eq!(store.get("old-dead").await.expect("get"), None);
        assert_eq!(store.prune_expired().await.expect("prune"), 1);
        assert_eq!(store.get("old-alive").await.expect("get"), Some(3));
    }
}
