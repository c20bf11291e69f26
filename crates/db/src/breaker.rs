//! A circuit breaker in front of the database.
//!
//! With PostgreSQL down, every query would wait the pool's whole acquire
//! timeout (sqlx retries a refused connection until then): each request parks
//! for seconds before its 503 and a burst of them piles up in memory. [`Db`]
//! wraps the pool and a prober. The prober checks the database on a
//! connection of its own (outside the pool, so a busy pool never looks like a
//! dead database) once a second, and at once whenever a query fails with a
//! connection error. While its last check failed the breaker is open: every
//! query fails at once with an UNAVAILABLE-class error (see
//! [`is_unavailable`]), and queries already waiting are cut short. The
//! prober then checks every 100 ms and closes the breaker on its first
//! success, so service resumes within about 100 ms of the database's return.
//!
//! Only PostgreSQL gets a prober: the embedded SQLite file cannot become
//! unreachable, so its breaker never opens.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, ExecResult, QueryResult,
    RuntimeErr, Statement,
    sqlx::{
        Connection as _,
        postgres::{PgConnectOptions, PgConnection},
    },
};
use tokio::sync::{Notify, watch};

use crate::is_unavailable;

/// When the prober checks the database.
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// Between checks while the database answers.
    pub interval_up: Duration,
    /// Between checks while it does not (how soon service resumes).
    pub interval_down: Duration,
    /// A check that takes longer than this failed (a database that stopped
    /// answering without closing its connections).
    pub timeout: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            interval_up: Duration::from_secs(1),
            interval_down: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Checks triggered by failing queries come at most this often, so a burst
/// of failures costs the database one check, not one per failure.
const MIN_PROBE_GAP: Duration = Duration::from_millis(20);

/// The connection pool behind a circuit breaker. Cheap to clone; every clone
/// shares the pool and the breaker. Use it wherever a
/// [`DatabaseConnection`] would go (it implements [`ConnectionTrait`]).
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    up: watch::Receiver<bool>,
    suspect: Arc<Notify>,
    /// Keeps the channel of a breaker without a prober open (it stays
    /// closed, i.e. up, forever).
    _fixed: Option<Arc<watch::Sender<bool>>>,
}

impl Db {
    /// Puts `conn` (opened from `url`) behind a breaker; for PostgreSQL, starts
    /// the prober (a task that ends when the last clone is dropped). Must be
    /// called inside a Tokio runtime.
    pub fn new(conn: DatabaseConnection, url: &str, probe: &ProbeSettings) -> Self {
        let options = match conn.get_database_backend() {
            DatabaseBackend::Postgres => match url.parse::<PgConnectOptions>() {
                Ok(o) => Some(o),
                Err(e) => {
                    // The pool opened from the same URL, so this is not
                    // expected; without a prober queries just wait their
                    // acquire timeout as they would without a breaker.
                    tracing::warn!(error = %e, "database URL not understood by the prober; circuit breaker off");
                    None
                }
            },
            _ => None,
        };
        let Some(options) = options else {
            return Self::always_up(conn);
        };
        let (tx, up) = watch::channel(true);
        let suspect = Arc::new(Notify::new());
        tokio::spawn(probe_loop(tx, suspect.clone(), options, probe.clone()));
        Self {
            conn,
            up,
            suspect,
            _fixed: None,
        }
    }

    /// `conn` behind a breaker that never opens (SQLite, tests, tools).
    pub fn always_up(conn: DatabaseConnection) -> Self {
        let (tx, up) = watch::channel(true);
        Self {
            conn,
            up,
            suspect: Arc::new(Notify::new()),
            _fixed: Some(Arc::new(tx)),
        }
    }

    /// Whether the last check found the database answering.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// The breaker's state as it changes (`true`: closed, the database
    /// answers), for health status and metrics to follow it at once.
    pub fn watch_up(&self) -> watch::Receiver<bool> {
        self.up.clone()
    }

    /// The pool itself, for work that must not be cut short by the breaker
    /// (migrations, bulk loads).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// A readiness probe for a service that owns `table`: `Ok` when the
    /// table answers, i.e. the database is up *and* migrated (a bare ping
    /// would report ready before the migrations Job ran, and requests would
    /// then fail on a missing table); otherwise why not. Each call of the
    /// returned function runs one `SELECT 1 FROM table LIMIT 1`.
    pub fn table_probe(
        &self,
        table: &'static str,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
    + Send
    + Sync
    + 'static {
        let db = self.clone();
        move || {
            let db = db.clone();
            Box::pin(async move {
                let probe = Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT 1 FROM {table} LIMIT 1"),
                );
                db.query_one_raw(probe)
                    .await
                    .map(drop)
                    .map_err(|e| format!("table {table}: {e}"))
            })
        }
    }

    /// Runs `work` unless the breaker is open; cuts it short if the breaker
    /// opens meanwhile; reports connection errors to the prober.
    async fn guard<T>(&self, work: impl Future<Output = Result<T, DbErr>>) -> Result<T, DbErr> {
        if !self.is_up() {
            return Err(open_error());
        }
        let mut up = self.up.clone();
        let result = tokio::select! {
            biased;
            result = work => result,
            () = until_down(&mut up) => return Err(open_error()),
        };
        if let Err(e) = &result
            && is_unavailable(e)
        {
            self.suspect.notify_one();
        }
        result
    }
}

/// The error every query gets while the breaker is open.
fn open_error() -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(
        "the database is unreachable (circuit breaker open: its last health check failed)"
            .to_owned(),
    ))
}

/// Resolves when the breaker opens; never, if it cannot (no prober).
async fn until_down(up: &mut watch::Receiver<bool>) {
    if up.wait_for(|up| !*up).await.is_err() {
        // The prober is gone (only when every clone is being dropped).
        std::future::pending::<()>().await;
    }
}

/// One check: (re)connect if needed, then a round trip.
async fn check(
    conn: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        if conn.is_none() {
            *conn = Some(PgConnection::connect_with(options).await?);
        }
        match conn.as_mut() {
            Some(c) => c.ping().await,
            None => Ok(()),
        }
    };
    let outcome = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} ms", timeout.as_millis()),
    };
    // A connection in an unknown state is not reused.
    *conn = None;
    Err(outcome)
}

async fn probe_loop(
    tx: watch::Sender<bool>,
    suspect: Arc<Notify>,
    options: PgConnectOptions,
    settings: ProbeSettings,
) {
    let mut conn = None;
    loop {
        let started = Instant::now();
        let outcome = check(&mut conn, &options, settings.timeout).await;
        let was_up = *tx.borrow();
        match outcome {
            Ok(()) if !was_up => {
                tracing::info!("database reachable again: circuit breaker closed, queries resume");
                tx.send_replace(true);
            }
            Err(error) if was_up => {
                tracing::warn!(
                    %error,
                    "database unreachable: circuit breaker open, queries answer UNAVAILABLE at once until a check succeeds"
                );
                tx.send_replace(false);
            }
            _ => {}
        }
        let wait = if *tx.borrow() {
            settings.interval_up
        } else {
            settings.interval_down
        };
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(wait) => {}
            () = suspect.notified() => {
                tokio::time::sleep_until((started + MIN_PROBE_GAP).into()).await;
            }
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.guard(self.conn.execute_raw(stmt)).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.guard(self.conn.execute_unprepared(sql)).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.guard(self.conn.query_one_raw(stmt)).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.guard(self.conn.query_all_raw(stmt)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite() -> DatabaseConnection {
        crate::connect_plain("sqlite::memory:")
            .await
            .expect("in-memory SQLite")
    }

    /// Ready only once the service's table exists: an empty database (the
    /// migrations not run yet) is up but not ready.
    #[tokio::test]
    async fn the_table_probe_waits_for_the_table() {
        // One connection: each connection to `:memory:` is its own database.
        let mut options = sea_orm::ConnectOptions::new("sqlite::memory:");
        options.max_connections(1);
        let db = Db::always_up(sea_orm::Database::connect(options).await.expect("sqlite"));
        let probe = db.table_probe("things");
        let not_yet = probe().await.expect_err("no table yet");
        assert!(not_yet.contains("things"), "{not_yet}");
        db.execute_unprepared("CREATE TABLE things (id INTEGER)")
            .await
            .expect("table");
        assert_eq!(probe().await, Ok(()));
    }

    #[tokio::test]
    async fn sqlite_never_opens() {
        let db = Db::new(sqlite().await, "sqlite::memory:", &ProbeSettings::default());
        assert!(db.is_up());
        db.execute_unprepared("SELECT 1")
            .await
            .expect("queries pass");
    }

    /// A PostgreSQL that refuses connections: the first check opens the
    /// breaker, and then queries fail with the breaker's own error instead
    /// of waiting for the pool (whose acquire timeout here is a minute).
    #[tokio::test]
    async fn a_refusing_postgres_opens_the_breaker_and_queries_fail_fast() {
        // Port 1 on loopback: nothing listens there (refused at once).
        let url = "postgres://nobody@127.0.0.1:1/none";
        let mut opts = sea_orm::ConnectOptions::new(url);
        opts.connect_lazy(true)
            .acquire_timeout(Duration::from_secs(60));
        let conn = sea_orm::Database::connect(opts)
            .await
            .expect("a lazy pool opens without a server");
        let db = Db::new(conn, url, &ProbeSettings::default());
        let deadline = Instant::now() + Duration::from_secs(30);
        while db.is_up() {
            assert!(Instant::now() < deadline, "the breaker never opened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let err = db
            .execute_unprepared("SELECT 1")
            .await
            .expect_err("no database");
        assert!(err.to_string().contains("circuit breaker open"), "{err}");
        assert!(is_unavailable(&err));
    }
}
