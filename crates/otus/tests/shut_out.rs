//! No anonymous client can shut other users out, tried through the real
//! `otus` binary (a process, as deployed) and, for sessions, real Redis
//! servers with a small `maxmemory`.
//!
//! - Cache traffic cannot evict sessions: a Redis that evicts is refused for
//!   sessions at start, and with the layout the chart ships (a cache Redis
//!   that evicts, a session Redis that never does) a flood of distinct
//!   anonymous searches that forces the cache to evict logs nobody out.

#![expect(clippy::expect_used, reason = "a failed expectation is a failed test")]

#[path = "support/processes.rs"]
#[allow(
    dead_code,
    reason = "shared with other test binaries, which use all of it"
)]
mod processes;

use std::{
    io::Read as _,
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use processes::{OTUS, Proc, start};
use serde_json::{Value, json};

/// A private `redis-server` on a free port, stopped on drop.
struct RedisServer {
    _proc: Proc,
    port: u16,
}

impl RedisServer {
    /// `None` (the caller skips, saying why) when there is no
    /// `redis-server` on this machine.
    fn start(maxmemory: &str, policy: &str) -> Option<Self> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory", maxmemory, "--maxmemory-policy", policy])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self {
            _proc: Proc(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One `redis-cli` command's output, trimmed.
    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A counter from `INFO stats`.
    fn stat(&self, name: &str) -> u64 {
        let info = self.cli(&["INFO", "stats"]).expect("redis-cli INFO stats");
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in INFO stats"))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn have_redis_server() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED: no redis-server on this machine (apt-get install redis-server)");
    }
    found
}

/// A migrated SQLite file with `count` seeded products.
fn seeded_sqlite(count: u32) -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new("otus-shut-out");
    let db = format!("sqlite://{}?mode=rwc", dir.0.join("otus.sqlite").display());
    let status = Command::new(OTUS)
        .args(["seed-products", "--count", &count.to_string()])
        .env("DATABASE_URL", &db)
        .stdout(Stdio::null())
        .status()
        .expect("otus seed-products");
    assert!(status.success(), "otus seed-products failed");
    (dir, db)
}

mod tempdir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(prefix: &str) -> Self {
            let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Self(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Environment of an all-in-one on `db` with every port picked by the system.
fn all_in_one_env(db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.to_owned()),
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("ADMIN_ADDR", "127.0.0.1:0".into()),
        ("USERS_GRPC_ADDR", "127.0.0.1:0".into()),
        ("AUTH_GRPC_ADDR", "127.0.0.1:0".into()),
        ("CATALOG_GRPC_ADDR", "127.0.0.1:0".into()),
        ("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "100000".into()),
        (
            "REDIS_KEY_PREFIX",
            format!("otus-shut-out-{}:", uuid::Uuid::new_v4()),
        ),
    ]
}

#[test]
fn a_redis_that_evicts_is_refused_for_sessions() {
    if !have_redis_server() {
        return;
    }
    let cache = RedisServer::start("16mb", "allkeys-lfu").expect("redis-server");
    let (_dir, db) = seeded_sqlite(10);
    let mut env = all_in_one_env(&db);
    env.push(("REDIS_URL", cache.url()));
    let mut cmd = Command::new(OTUS);
    cmd.arg("all-in-one")
        .env_remove("SESSION_REDIS_URL")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start otus");
    let mut proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = proc.0.try_wait().expect("wait for otus") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "otus all-in-one kept running with sessions in a Redis that evicts (allkeys-lfu)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    if let Some(mut p) = proc.0.stdout.take() {
        let _ = p.read_to_string(&mut out);
    }
    if let Some(mut p) = proc.0.stderr.take() {
        let _ = p.read_to_string(&mut out);
    }
    assert!(!status.success(), "otus exited 0; output:\n{out}");
    assert!(
        out.contains("refusing to keep sessions in Redis")
            && out.contains("allkeys-lfu")
            && out.contains("SESSION_REDIS_URL"),
        "the refusal does not say why and what to set; output:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_searches_that_fill_the_cache_log_nobody_out() {
    if !have_redis_server() {
        return;
    }
    // The chart's layout, scaled down: the search cache in a Redis that
    // evicts (16 MB, LFU), sessions and login counters in one that never does.
    let cache = RedisServer::start("16mb", "allkeys-lfu").expect("redis-server");
    let sessions = RedisServer::start("16mb", "noeviction").expect("redis-server");
    let (_dir, db) = seeded_sqlite(20_000);
    let mut env = all_in_one_env(&db);
    env.push(("REDIS_URL", cache.url()));
    env.push(("SESSION_REDIS_URL", sessions.url()));
    env.push(("CACHE_ENABLED", "1".into()));
    let (_otus, fields) = start("all-in-one", &env);
    let base = format!("http://{}", fields["http"].as_str().expect("http addr"));
    let client = reqwest::Client::new();

    // 60 users log in.
    let mut tokens = Vec::new();
    for i in 0..60 {
        let username = format!("idle-{i}-{}", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery";
        let body = json!({"username": username, "email": format!("u{i}@example.com"), "password": password});
        let resp = client
            .post(format!("{base}/register"))
            .json(&body)
            .send()
            .await
            .expect("register");
        assert_eq!(resp.status(), 201, "register {i}");
        let resp = client
            .post(format!("{base}/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 200, "login {i}");
        let token = resp.json::<Value>().await.expect("login body")["token"]
            .as_str()
            .expect("token")
            .to_owned();
        tokens.push(token);
    }

    // Anonymous, distinct searches of 100 results each (~57 KB a cached
    // answer): far more than the cache's 16 MB.
    let page = client
        .get(format!("{base}/products?q=синий&limit=100"))
        .send()
        .await
        .expect("search");
    assert_eq!(page.status(), 200);
    let total = page.json::<Value>().await.expect("search body")["total"]
        .as_u64()
        .expect("total");
    assert!(
        total >= 100,
        "the seed must give a full page for the flood (total {total})"
    );
    let searches = futures::stream::iter(0..1_500u32).map(|i| {
        let client = client.clone();
        let url = format!(
            "{base}/products?q=синий&limit=100&maxPrice={}",
            1_000_000 + i
        );
        async move {
            let resp = client.get(url).send().await.expect("search");
            resp.status().as_u16()
        }
    });
    let statuses: Vec<u16> = searches.buffer_unordered(16).collect().await;
    assert!(
        statuses.iter().all(|&s| s == 200),
        "a search failed: {statuses:?}"
    );
    let evicted = cache.stat("evicted_keys");
    assert!(
        evicted > 0,
        "the flood did not fill the cache (no key evicted): the test proves nothing"
    );

    // Every session still works.
    let mut logged_out = 0;
    for token in &tokens {
        let resp = client
            .get(format!("{base}/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("/me");
        if resp.status() != 200 {
            logged_out += 1;
        }
    }
    assert_eq!(
        logged_out, 0,
        "{logged_out} of 60 sessions stopped working after the cache evicted {evicted} keys"
    );
    assert_eq!(sessions.stat("evicted_keys"), 0);
}
