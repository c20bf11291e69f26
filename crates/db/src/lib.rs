//! The stores every service shares: the SQL database and Redis.
//!
//! - [`connect`]: opening it (PostgreSQL when `DATABASE_URL` says so,
//!   otherwise the embedded SQLite default) with the pool settings every
//!   service shares.
//! - [`Db`]: the pool behind a circuit breaker, which services query; while
//!   the database is known to be down, queries fail at once instead of
//!   waiting for the pool's acquire timeout.
//! - [`fault`]: what kind of failure a database error is:
//!   [`is_unavailable`] (out of reach), [`Unique`] (which unique constraint
//!   a violation tripped, by name, on either backend), or a bug.
//! - [`Db::table_probe`]: readiness as "the service's own table answers".
//! - [`Redis`]: the Redis client with bounded timeouts, and the key prefix.

mod breaker;
mod connect;
pub mod fault;
pub mod redis;

pub use redis::Redis;

pub use breaker::{Db, ProbeSettings};
pub use connect::{DEFAULT_DATABASE_URL, PoolSettings, connect, connect_plain, redact_url};
pub use fault::{Unique, is_unavailable};
