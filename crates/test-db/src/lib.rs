//! Test support: a fresh database per test, removed when dropped.
//!
//! On the embedded SQLite default, a new file in the temporary directory. On
//! PostgreSQL (`TEST_DATABASE_URL`, an admin connection such as
//! `postgres://postgres@127.0.0.1:5432/postgres`), a new database cloned
//! from a migrated template (`CREATE DATABASE … TEMPLATE`, a file copy), so
//! a test does not run the migrations itself; crates.io's test database
//! crate does the same. The template is named by a hash of the migrations'
//! sources, so a changed migration gets a template of its own; it is made
//! once per schema under an advisory lock (test binaries run in parallel)
//! and built under a temporary name, so a run cut short never leaves a
//! half-migrated template behind.
//!
//! The caller brings the migrations (`migrate`): this crate knows databases,
//! not the system's schema jobs.

#![expect(
    clippy::expect_used,
    reason = "test support: a test database that cannot be made fails the test at once"
)]

use std::{future::Future, path::PathBuf};

use sea_orm::{ConnectionTrait as _, DatabaseConnection};
use uuid::Uuid;

/// The variable naming the PostgreSQL the tests may create databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// The variable naming the Redis the tests may write keys to.
pub const TEST_REDIS_URL: &str = "TEST_REDIS_URL";

/// Opens `url` with sea-orm's pool defaults ([`otus_db::connect_plain`]).
/// Panics, naming `what` it was for, when the database cannot be reached.
pub async fn connect(url: &str, what: &str) -> DatabaseConnection {
    otus_db::connect_plain(url)
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot connect: {e}"))
}

/// A connection to `TEST_REDIS_URL` whose keys all start with a prefix of
/// their own, `otus-<label>-<uuid>:`, so tests running side by side (and
/// other users of that Redis) never see each other's keys.
///
/// Panics when the variable is unset or Redis cannot be reached: callers
/// skip their Redis tests when it is unset.
pub async fn redis(label: &str) -> otus_db::Redis {
    let url =
        std::env::var(TEST_REDIS_URL).unwrap_or_else(|_| panic!("{TEST_REDIS_URL} is not set"));
    let prefix = format!("otus-{label}-{}:", Uuid::new_v4().simple());
    otus_db::Redis::connect(&url, prefix)
        .await
        .unwrap_or_else(|e| panic!("{TEST_REDIS_URL} ({url}): cannot connect: {e:#}"))
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A new SQLite file.
    Sqlite,
    /// A new database on `TEST_DATABASE_URL`'s PostgreSQL.
    Postgres,
}

/// A fresh database, dropped (file or database) with this value.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    place: Place,
}

#[derive(Debug)]
enum Place {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh database on `backend`. On PostgreSQL it is a clone of the
    /// template that `migrate` made (once per process and schema), so it
    /// comes migrated; on SQLite it is empty (the system migrates an SQLite
    /// database itself at start, in a few milliseconds).
    ///
    /// Panics with what to do when `TEST_DATABASE_URL` is unset or its
    /// PostgreSQL cannot be reached (callers skip the PostgreSQL variants
    /// when the variable is unset).
    ///
    /// `schema` names what `migrate` makes (`"otus"` for the system's
    /// migrations): the template is `<schema>_tmpl_<hash of the migration
    /// sources>`, so another schema never reuses it.
    pub async fn create<M, Fut>(backend: Backend, schema: &str, migrate: M) -> Self
    where
        M: FnOnce(DatabaseConnection) -> Fut,
        Fut: Future<Output = ()>,
    {
        match backend {
            Backend::Sqlite => {
                let path =
                    std::env::temp_dir().join(format!("otus-test-{}.sqlite", Uuid::new_v4()));
                Self {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    place: Place::Sqlite(path),
                }
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) else {
                    panic!(
                        "{TEST_DATABASE_URL} is not set; set it (e.g. \
                         postgres://postgres@127.0.0.1:5432/postgres) to run on PostgreSQL"
                    );
                };
                let name = format!("otus_test_{}", Uuid::new_v4().simple());
                let template = migrated_template(&admin_url, schema, migrate).await;
                let admin = connect(
                    &admin_url,
                    "TEST_DATABASE_URL must point at a reachable PostgreSQL",
                )
                .await;
                admin
                    .execute_unprepared(&format!(
                        "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
                    ))
                    .await
                    .expect("create test database");
                Self {
                    url: with_database(&admin_url, &name),
                    place: Place::Postgres { admin_url, name },
                }
            }
        }
    }

    /// The URL the system under test connects to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The migrated template's name, made on first use in this process (one
/// schema per process: a test binary tests one system).
async fn migrated_template<M, Fut>(admin_url: &str, schema: &str, migrate: M) -> String
where
    M: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()>,
{
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let wanted = format!("{schema}_tmpl_{:016x}", migrations_hash());
    let made = TEMPLATE
        .get_or_init(|| async {
            let name = wanted.clone();
            let mut options = sea_orm::ConnectOptions::new(admin_url);
            // Advisory locks belong to a session: one connection.
            options.max_connections(1).sqlx_logging(false);
            let admin = sea_orm::Database::connect(options)
                .await
                .expect("TEST_DATABASE_URL must point at a reachable PostgreSQL");
            // Any fixed key; the same in every test binary.
            const LOCK: i64 = 0x6f74_7573_746d_706c;
            admin
                .execute_unprepared(&format!("SELECT pg_advisory_lock({LOCK})"))
                .await
                .expect("template lock");
            let exists = admin
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
                ))
                .await
                .expect("look for the template")
                .is_some();
            if !exists {
                let building = format!("{name}_building");
                for sql in [
                    format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
                    format!("CREATE DATABASE \"{building}\""),
                ] {
                    admin.execute_unprepared(&sql).await.expect(&sql);
                }
                let conn = connect(&with_database(admin_url, &building), "the template").await;
                migrate(conn.clone()).await;
                conn.close().await.expect("close the template");
                let rename = format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"");
                admin.execute_unprepared(&rename).await.expect(&rename);
            }
            admin
                .execute_unprepared(&format!("SELECT pg_advisory_unlock({LOCK})"))
                .await
                .expect("template unlock");
            name
        })
        .await
        .clone();
    assert_eq!(made, wanted, "one schema per test process");
    made
}

/// A hash of every migration's source: what the template's schema is made
/// of (the workspace's `crates/migration/src`).
fn migrations_hash() -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migration/src");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("migration sources")
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        std::fs::read(&f)
            .expect("migration source")
            .hash(&mut hasher);
    }
    hasher.finish()
}

/// `postgres://u@h:5432/postgres?x=y` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{name}{query}")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.place {
            Place::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Place::Postgres { admin_url, name } => {
                // Drop runs inside the test's runtime; use a thread with its
                // own runtime for the async cleanup.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        if let Ok(admin) = otus_db::connect_plain(&admin_url).await {
                            let _ = admin
                                .execute_unprepared(&format!(
                                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                                ))
                                .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t3"),
            "postgres://h:5432/t3"
        );
    }

    /// An SQLite test database is a file that is gone after the drop.
    #[tokio::test]
    async fn an_sqlite_database_is_removed_with_its_value() {
        let db = TestDb::create(Backend::Sqlite, "otus_selftest", |_| async {}).await;
        let conn = connect(db.url(), "the test database").await;
        conn.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .expect("write");
        conn.close().await.expect("close");
        let Place::Sqlite(path) = &db.place else {
            panic!("not a file")
        };
        let path = path.clone();
        assert!(path.exists(), "{}", path.display());
        drop(db);
        assert!(!path.exists(), "{} left behind", path.display());
    }

    /// A PostgreSQL test database comes migrated (from the template) and is
    /// dropped with its value.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_database_is_a_migrated_clone_and_is_dropped() {
        let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) else {
            eprintln!("skipped: {TEST_DATABASE_URL} is not set (no PostgreSQL to clone on)");
            return;
        };
        // A schema of its own: never the system's template.
        let db = TestDb::create(Backend::Postgres, "otus_selftest", |conn| async move {
            conn.execute_unprepared("CREATE TABLE IF NOT EXISTS made_by_migrate (x INTEGER)")
                .await
                .expect("migrate");
        })
        .await;
        let conn = connect(db.url(), "the test database").await;
        conn.execute_unprepared("SELECT x FROM made_by_migrate")
            .await
            .expect("the clone holds what the template's migration made");
        conn.close().await.expect("close");
        let Place::Postgres { name, .. } = &db.place else {
            panic!("not a database")
        };
        let name = name.clone();
        drop(db);
        let admin = connect(&admin_url, "TEST_DATABASE_URL").await;
        let left = admin
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
            ))
            .await
            .expect("look");
        assert!(left.is_none(), "{name} left behind");
    }
}
