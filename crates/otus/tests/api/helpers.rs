//! `TestApp`: one running system on a fresh database, with typed helpers.

use std::{net::SocketAddr, sync::Once, time::Duration};

use otus::config::AllInOneArgs;
use otus_identity::{Identity, IdentityKey};
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
/// Failed logins per username the test apps allow per window.
pub const MAX_FAILURES: u32 = 5;
/// Login attempts per client address the test apps allow per window.
pub const MAX_ATTEMPTS_PER_ADDRESS: u32 = 40;

/// Tunable parts of a test app.
#[derive(Clone, Debug)]
pub struct Options {
    pub session_ttl_secs: u64,
    pub cache_enabled: bool,
    /// Redis for this app regardless of backend (e.g. a private
    /// redis-server a test kills); `None`: `TEST_REDIS_URL` on PostgreSQL.
    pub redis_url: Option<String>,
    /// The edge's header-read (and keep-alive idle) timeout. Long by default:
    /// a short one would close the client's pooled connections under it.
    pub header_read_timeout_ms: u64,
    /// Searches from the catalog's in-memory index (else the database).
    pub search_index: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            session_ttl_secs: 3600,
            cache_enabled: true,
            redis_url: None,
            header_read_timeout_ms: 30_000,
            search_index: true,
        }
    }
}

/// Time the test apps give a client to send a body (short, to test 408).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_millis(1000);

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
                let template = migrated_template(&admin_url).await;
                let admin = sea_orm::Database::connect(&admin_url)
                    .await
                    .expect("TEST_DATABASE_URL must point at a reachable PostgreSQL");
                use sea_orm::ConnectionTrait as _;
                admin
                    .execute_unprepared(&format!(
                        "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
                    ))
                    .await
                    .expect("create test database");
                let url = with_database(&admin_url, &name);
                Some((Self::Postgres { admin_url, name }, url))
            }
        }
    }
}

/// A migrated PostgreSQL database that every test database is cloned from
/// (`CREATE DATABASE … TEMPLATE`, a file copy), so a test does not run the
/// migrations itself (crates.io's `TestDatabase` does the same). Named by a
/// hash of the migrations' sources, so a changed migration gets a template
/// of its own; made once per schema under an advisory lock (test binaries
/// run in parallel), and built under a temporary name, so a run cut short
/// never leaves a half-migrated template behind.
async fn migrated_template(admin_url: &str) -> String {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            use sea_orm::ConnectionTrait as _;
            let name = format!("otus_tmpl_{:016x}", migrations_hash());
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
                let conn = sea_orm::Database::connect(with_database(admin_url, &building))
                    .await
                    .expect("connect to the template");
                otus::migrate(&conn).await.expect("migrate the template");
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
        .clone()
}

/// A hash of every migration's source: what the template's schema is made of.
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
    /// The auth service's gRPC address.
    pub auth_grpc: SocketAddr,
    /// The catalog service's gRPC address.
    pub catalog_grpc: SocketAddr,
    /// The identity key the services trust (tests use it to play the auth
    /// service when calling the users service directly).
    pub key: IdentityKey,
    /// The database the app runs on, for tests that inspect stored rows.
    pub database_url: String,
    /// Whether sessions live in Redis.
    pub redis: bool,
    /// Whether the catalog searches an in-memory index.
    pub search_index: bool,
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
        Self::spawn_with(backend, Options::default()).await
    }

    /// Starts the system on a fresh database with `opts`. On PostgreSQL,
    /// sessions and login counters go to Redis when `TEST_REDIS_URL` is set
    /// (under a key prefix of their own).
    pub async fn spawn_with(backend: Backend, opts: Options) -> Option<Self> {
        init_test_logging();
        let (db, database_url) = TestDb::create(backend).await?;
        let redis_url = match backend {
            _ if opts.redis_url.is_some() => opts.redis_url.clone(),
            Backend::Postgres => std::env::var("TEST_REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            Backend::Sqlite => None,
        };
        let secret = Uuid::new_v4().simple().to_string();
        // Settings as the binary makes them: parsed, with the defaults for
        // everything a test does not need to change.
        let mut argv = vec![
            "--http-addr=127.0.0.1:0".to_owned(),
            "--admin-addr=127.0.0.1:0".to_owned(),
            "--users-grpc-addr=127.0.0.1:0".to_owned(),
            "--auth-grpc-addr=127.0.0.1:0".to_owned(),
            "--catalog-grpc-addr=127.0.0.1:0".to_owned(),
            format!("--database-url={database_url}"),
            format!("--body-limit-bytes={BODY_LIMIT}"),
            format!("--body-read-timeout-ms={}", BODY_READ_TIMEOUT.as_millis()),
            format!(
                "--http-header-read-timeout-ms={}",
                opts.header_read_timeout_ms
            ),
            // The login tests give each client its own X-Real-IP: the test
            // client is the trusted proxy.
            "--trusted-proxies=127.0.0.1,::1".to_owned(),
            format!("--redis-key-prefix=otus-test-{}:", Uuid::new_v4().simple()),
            format!("--cache-enabled={}", opts.cache_enabled),
            format!("--catalog-search-index={}", opts.search_index),
            format!("--session-ttl-secs={}", opts.session_ttl_secs),
            format!("--login-max-failures-per-username={MAX_FAILURES}"),
            format!("--login-max-attempts-per-address={MAX_ATTEMPTS_PER_ADDRESS}"),
            // Tests race many registrations on a busy machine: wait long
            // rather than answer 503 (the bound itself has its own test).
            "--argon2-max-wait-ms=60000".to_owned(),
            format!("--identity-token-secret={secret}"),
        ];
        if let Some(url) = &redis_url {
            argv.push(format!("--redis-url={url}"));
        }
        let args = AllInOneArgs::parse_ignoring_env(argv).expect("test settings parse");
        let shutdown = CancellationToken::new();
        let app = otus::AllInOne::start(&args, shutdown.clone())
            .await
            .expect("the system starts");
        let (http, admin, grpc, auth_grpc, catalog_grpc) = (
            app.http_addr,
            app.admin_addr,
            app.users_grpc_addr,
            app.auth_grpc_addr,
            app.catalog_grpc_addr,
        );
        tokio::spawn(app.run());
        Some(Self {
            base: format!("http://{http}"),
            admin: format!("http://{admin}"),
            grpc,
            auth_grpc,
            catalog_grpc,
            key: IdentityKey::new(secret.as_bytes()).expect("32-char secret"),
            database_url,
            redis: redis_url.is_some(),
            search_index: opts.search_index,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
            shutdown,
            _db: db,
        })
    }

    /// Sends `body` verbatim as JSON (it may be malformed on purpose), with
    /// `token` as a bearer token when given.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        req.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(reqwest::Method::POST, path, token, Some(body.to_string()))
            .await
    }

    pub async fn put_json(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(reqwest::Method::PUT, path, token, Some(body.to_string()))
            .await
    }

    /// Registers a user with random valid fields (overridden by `extra`).
    pub async fn register(&self, extra: Value) -> TestUser {
        let mut body = new_user();
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let resp = self.post_json("/user", None, &body).await;
        assert_eq!(
            resp.status(),
            201,
            "register: {}",
            resp.text().await.unwrap_or_default()
        );
        let created: Value = resp.json().await.expect("created user JSON");
        TestUser {
            id: created["id"].as_i64().expect("id"),
            username: body["username"].as_str().expect("username").to_owned(),
            password: body["password"].as_str().expect("password").to_owned(),
            profile: created,
        }
    }

    /// Logs `user` in; returns the bearer token.
    pub async fn login(&self, user: &TestUser) -> String {
        let resp = self
            .post_json(
                "/login",
                None,
                &json!({"username": user.username, "password": user.password}),
            )
            .await;
        assert_eq!(
            resp.status(),
            200,
            "login: {}",
            resp.text().await.unwrap_or_default()
        );
        let body: Value = resp.json().await.expect("login JSON");
        assert_eq!(body["userId"], user.id);
        body["token"].as_str().expect("token").to_owned()
    }

    /// Registers and logs in a fresh user.
    pub async fn user_with_token(&self) -> (TestUser, String) {
        let user = self.register(json!({})).await;
        let token = self.login(&user).await;
        (user, token)
    }

    /// The admin port's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits until the catalog's search index reflects every change made to
    /// the products table so far: its `catalog_index_version` metric reaches
    /// the database's `catalog_version` (what a user of another replica waits
    /// for, within the documented freshness bound).
    pub async fn catalog_index_current(&self) {
        if !self.search_index {
            return;
        }
        // Generous: a busy CI machine; the documented bound is far lower.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // The first build: until it, the catalog is NOT_SERVING and /ready
        // 503 (the version check alone passes at once on an empty catalog,
        // whose version is 0 before the index exists).
        while self.get("/ready", None).await.status() != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "/ready (the search index's first build) not 200 within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let db = sea_orm::Database::connect(&self.database_url)
            .await
            .expect("connect");
        let want = otus_catalog::live::read_version(&db)
            .await
            .expect("read catalog_version");
        loop {
            let text = self.metrics().await;
            let seen = text
                .lines()
                .find_map(|l| l.strip_prefix("catalog_index_version "))
                .and_then(|v| v.trim().parse::<i64>().ok());
            if seen.is_some_and(|v| v >= want) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the search index did not reach catalog_version {want} in 60 s (at {seen:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An identity token as the auth service would mint it.
    pub fn mint(&self, identity: &Identity) -> String {
        self.key.mint(identity)
    }
}

/// A registered user and their password.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub password: String,
    /// The body `POST /user` answered with.
    pub profile: Value,
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
/// PostgreSQL (+ Redis when `TEST_REDIS_URL` is set): `name::sqlite` and
/// `name::postgres` in the test list. `options = <expr>;` first starts the
/// apps with those [`Options`].
macro_rules! on_both_backends {
    (options = $opts:expr; $($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::{Backend, TestApp};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = TestApp::spawn_with(Backend::Sqlite, $opts).await.expect("SQLite is always available");
                super::$name(app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(otus_pg_tests),
                ignore = "TEST_DATABASE_URL is not set: runs on SQLite only"
            )]
            async fn postgres() {
                let app = TestApp::spawn_with(Backend::Postgres, $opts).await.expect("PostgreSQL configured");
                super::$name(app).await;
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {
        $crate::helpers::on_both_backends!(options = $crate::helpers::Options::default(); $($name),*);
    };
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
