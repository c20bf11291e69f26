//! `TestApp`: one running system on a fresh database, with typed helpers.

use std::{net::SocketAddr, sync::Once, time::Duration};

use otus::config::{AllInOneArgs, DbArgs, EdgeTuning};
use otus_telemetry::CancellationToken;
use reqwest::{Client, Response};
use serde_json::{Value, json};
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Request body limit the test apps run with (small, to test 413 cheaply).
pub const BODY_LIMIT: usize = 16 * 1024;

/// A fresh database that is removed when dropped.
enum TestDb {
    Sqlite(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    async fn create(backend: Backend) -> Option<(Self, String)> {
        match backend {
            Backend::Sqlite => {
                let path =
                    std::env::temp_dir().join(format!("otus-test-{}.sqlite", Uuid::new_v4()));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                Some((Self::Sqlite(path), url))
            }
            Backend::Postgres => {
                // The build script marks these tests ignored when the variable
                // was unset at build time; reaching here without it means they
                // were forced with --ignored.
                let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                    panic!(
                        "TEST_DATABASE_URL is not set; set it (e.g. \
                         postgres://postgres@127.0.0.1:5432/postgres) to run on PostgreSQL"
                    );
                };
                let name = format!("otus_test_{}", Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(&admin_url)
                    .await
                    .expect("TEST_DATABASE_URL must point at a reachable PostgreSQL");
                use sea_orm::ConnectionTrait as _;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                let url = with_database(&admin_url, &name);
                Some((Self::Postgres { admin_url, name }, url))
            }
        }
    }
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
        match self {
            Self::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Self::Postgres { admin_url, name } => {
                // Drop runs inside the test's runtime; use a thread with its
                // own runtime for the async cleanup.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        use sea_orm::ConnectionTrait as _;
                        if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
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

fn init_test_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            otus_telemetry::init_logging(otus_telemetry::LogFormat::Text);
        }
    });
}

/// A running system.
pub struct TestApp {
    /// `http://127.0.0.1:<port>` of the edge.
    pub base: String,
    /// `http://127.0.0.1:<port>` of the admin (/metrics) server.
    pub admin: String,
    /// The users service's gRPC address.
    pub grpc: SocketAddr,
    pub client: Client,
    shutdown: CancellationToken,
    // Dropped after the app has been told to stop.
    _db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Starts the system on a fresh database.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        init_test_logging();
        let (db, database_url) = TestDb::create(backend).await?;
        let args = AllInOneArgs {
            http_addr: "127.0.0.1:0".parse().expect("literal address"),
            admin_addr: "127.0.0.1:0".parse().expect("literal address"),
            users_grpc_addr: "127.0.0.1:0".parse().expect("literal address"),
            db: DbArgs {
                database_url,
                database_max_connections: 10,
                database_acquire_timeout_ms: 3000,
            },
            edge: EdgeTuning {
                grpc_deadline_ms: 5000,
                request_timeout_ms: 10_000,
                body_limit_bytes: BODY_LIMIT,
            },
        };
        let shutdown = CancellationToken::new();
        let app = otus::AllInOne::start(&args, shutdown.clone())
            .await
            .expect("the system starts");
        let (http, admin, grpc) = (app.http_addr, app.admin_addr, app.users_grpc_addr);
        tokio::spawn(app.run());
        Some(Self {
            base: format!("http://{http}"),
            admin: format!("http://{admin}"),
            grpc,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
            shutdown,
            _db: db,
        })
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .expect("DELETE")
    }

    /// Sends `body` verbatim as JSON (it may be malformed on purpose).
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send_raw(reqwest::Method::POST, path, body.to_string())
            .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.send_raw(reqwest::Method::PUT, path, body.to_string())
            .await
    }

    /// Creates a user with random valid fields (overridden by `extra`) and
    /// returns the created body.
    pub async fn create_user(&self, extra: Value) -> Value {
        let mut body = new_user();
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let resp = self.post_json("/user", &body).await;
        assert_eq!(
            resp.status(),
            201,
            "create user: {}",
            resp.text().await.unwrap_or_default()
        );
        resp.json().await.expect("created user JSON")
    }
}

/// Random valid registration data.
pub fn new_user() -> Value {
    let tag = &Uuid::new_v4().simple().to_string()[..12];
    json!({
        "username": format!("user_{tag}"),
        "firstName": "Ада",
        "lastName": "Lovelace",
        "email": format!("ada.{tag}@example.com"),
        "phone": "+7 (912) 345-67-89",
        "password": "correct horse battery staple",
    })
}

/// Asserts an error answer: status, JSON shape, `code` equal to the status,
/// the reason, and a non-empty message. Returns the body.
pub async fn assert_error(resp: Response, status: u16, reason: &str) -> Value {
    assert_eq!(resp.status(), status, "status");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body["code"], status, "code field in {body}");
    assert_eq!(body["reason"], reason, "reason in {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    body
}

/// Runs each named `async fn(TestApp)` on SQLite and, when configured, on
/// PostgreSQL: `name::sqlite` and `name::postgres` in the test list.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::{Backend, TestApp};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = TestApp::spawn(Backend::Sqlite).await.expect("SQLite is always available");
                super::$name(app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(otus_pg_tests),
                ignore = "TEST_DATABASE_URL is not set: runs on SQLite only"
            )]
            async fn postgres() {
                let app = TestApp::spawn(Backend::Postgres).await.expect("PostgreSQL configured");
                super::$name(app).await;
            }
        }
    )*};
}
pub(crate) use on_both_backends;

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
