//! The stores every service shares: the SQL database and Redis.
//!
//! - [`connect`]: opening it (PostgreSQL when `DATABASE_URL` says so,
//!   otherwise the embedded SQLite default) with the pool settings every
//!   service shares.
//! - [`Db`]: the pool behind a circuit breaker, which services query; while
//!   the database is known to be down, queries fail at once instead of
//!   waiting for the pool's acquire timeout.
//! - [`is_unavailable`]: which errors mean "the database cannot be reached"
//!   (→ UNAVAILABLE, retryable) as opposed to a bug (→ INTERNAL).
//! - [`Redis`]: the Redis client with bounded timeouts, and the key prefix.

mod breaker;
mod connect;
pub mod redis;

pub use redis::Redis;

pub use breaker::{Db, ProbeSettings};
pub use connect::{DEFAULT_DATABASE_URL, PoolSettings, connect, redact_url};
use sea_orm::{DbErr, RuntimeErr};

/// Whether `e` means the database could not be reached or dropped the
/// connection (down, restarting, pool exhausted, network), as opposed to a
/// query it refused. Callers answer UNAVAILABLE for these: a retry later can
/// succeed.
pub fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            match &**s {
                Sqlx::Io(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::Tls(_)
                | Sqlx::WorkerCrashed => true,
                // PostgreSQL saying it is going away or cannot take the
                // connection: class 08 (connection exception), 57P01-03
                // (shutdown, crash shutdown, starting up), 53300 (too many
                // connections).
                Sqlx::Database(db) => db.code().is_some_and(|code| {
                    code.starts_with("08")
                        || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
                }),
                _ => false,
            }
        }
        _ => false,
    }
}
