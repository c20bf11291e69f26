//! Opening the database: PostgreSQL when `DATABASE_URL` says so, otherwise the
//! embedded SQLite default.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Where the embedded default keeps its data when `DATABASE_URL` is unset: a
/// file in the working directory, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://otus.sqlite?mode=rwc";

/// Connection pool settings that are not part of the URL.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Upper bound on pooled connections.
    pub max_connections: u32,
    /// How long a query waits for a free connection (or a new one) before the
    /// request fails with UNAVAILABLE instead of hanging.
    pub acquire_timeout: Duration,
}

impl PoolSettings {
    /// The defaults: the one place they are written (the command line's
    /// `DATABASE_MAX_CONNECTIONS` and `DATABASE_ACQUIRE_TIMEOUT_MS` default to
    /// these).
    pub const DEFAULT: Self = Self {
        max_connections: 10,
        acquire_timeout: Duration::from_secs(3),
    };
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Connects to `url` (`postgres://…` or `sqlite://…`).
///
/// SQLite gets WAL journaling and a busy timeout so concurrent writers queue
/// instead of failing with "database is locked"; statement logging is off
/// (sqlx logs every statement at INFO otherwise).
pub async fn connect(url: &str, pool: &PoolSettings) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(pool.max_connections)
        .min_connections(0)
        .connect_timeout(pool.acquire_timeout)
        .acquire_timeout(pool.acquire_timeout)
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    }
    // A server database is connected on first use: a service that starts
    // before PostgreSQL does (a fresh cluster, a restart of the database)
    // stays up and not ready (its health check follows the database) instead
    // of exiting into a crash-loop back-off that outlasts the outage.
    let lazy = !url.starts_with("sqlite:");
    opts.connect_lazy(lazy);
    let db = Database::connect(opts).await?;
    if lazy {
        tracing::info!(backend = ?db.get_database_backend(), "database pool ready (connects on first use)");
    } else {
        tracing::info!(backend = ?db.get_database_backend(), "database connected");
    }
    Ok(db)
}

/// A pool for `url` with sea-orm's defaults: what tests open beside a
/// running service.
pub async fn connect_plain(url: &str) -> Result<DatabaseConnection, DbErr> {
    Database::connect(url).await
}

/// The URL with any password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host/... → scheme://user:***@host/...
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((creds, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match creds.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/otus"),
            "postgres://app:***@db:5432/otus"
        );
        assert_eq!(
            redact_url("postgres://app@db/otus"),
            "postgres://app@db/otus"
        );
        assert_eq!(redact_url(DEFAULT), DEFAULT);
    }
    const DEFAULT: &str = super::DEFAULT_DATABASE_URL;
}
