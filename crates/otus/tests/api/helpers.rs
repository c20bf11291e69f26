//! `TestApp`: one running system on a fresh database, with typed helpers.

use std::{net::SocketAddr, sync::Once, time::Duration};

use otus::config::AllInOneArgs;
use otus_identity::{Identity, IdentityKey};
use otus_telemetry::CancellationToken;
use reqwest::{Client, Response};
use serde_json::{Value, json};
use uuid::Uuid;

pub use otus_test_db::Backend;
use otus_test_db::TestDb;

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

/// `d` in the whole milliseconds a `*_MS` setting holds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).expect("a test duration fits in u64 milliseconds")
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
        let db = TestDb::create(backend, "otus", |conn| async move {
            otus::migrate(&conn).await.expect("migrate the template");
        })
        .await;
        let database_url = db.url().to_owned();
        let redis_url = match backend {
            _ if opts.redis_url.is_some() => opts.redis_url.clone(),
            Backend::Postgres => std::env::var("TEST_REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            Backend::Sqlite => None,
        };
        let secret = Uuid::new_v4().simple().to_string();
        // The binary's settings with its defaults (the environment ignored),
        // then typed changes: a renamed setting fails to compile here.
        let mut args = AllInOneArgs::parse_ignoring_env::<_, &str>([]).expect("the defaults parse");
        let any_port = |addr: &mut SocketAddr| addr.set_port(0);
        args.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        args.admin_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        any_port(&mut args.users_grpc_addr);
        any_port(&mut args.auth_grpc_addr);
        any_port(&mut args.catalog_grpc_addr);
        args.db.database_url = database_url.clone();
        args.edge.body_limit_bytes = BODY_LIMIT;
        args.edge.body_read_timeout_ms = millis(BODY_READ_TIMEOUT);
        args.edge.http_header_read_timeout_ms = opts.header_read_timeout_ms;
        // The login tests give each client its own X-Real-IP: the test
        // client is the trusted proxy.
        args.edge.trusted_proxies = ["127.0.0.1", "::1"]
            .map(|p| otus_edge::parse_trusted_proxy(p).expect("a loopback address"))
            .to_vec();
        args.redis.redis_key_prefix = format!("otus-test-{}:", Uuid::new_v4().simple());
        args.redis.redis_url = redis_url.clone();
        args.cache.cache_enabled = opts.cache_enabled;
        args.cache.catalog_search_index = opts.search_index;
        args.auth.session_ttl_secs = opts.session_ttl_secs;
        args.auth.login_max_failures_per_username = MAX_FAILURES;
        args.auth.login_max_attempts_per_address = MAX_ATTEMPTS_PER_ADDRESS;
        // Tests race many registrations on a busy machine: wait long rather
        // than answer 503 (the bound itself has its own test).
        args.auth.argon2_max_wait_ms = 60_000;
        args.identity.identity_token_secret = Some(secret.clone());
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
        let db = otus_db::connect_plain(&self.database_url)
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
