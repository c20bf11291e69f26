//! No anonymous client can shut other users out, tried through the real
//! `otus` binary (a process, as deployed) and, for sessions, real Redis
//! servers with a small `maxmemory`.
//!
//! - Cache traffic cannot evict sessions: a Redis that evicts is refused for
//!   sessions at start, and with the layout the chart ships (a cache Redis
//!   that evicts, a session Redis that never does) a flood of distinct
//!   anonymous searches that forces the cache to evict logs nobody out.
//! - Clients that never read their answers lose their connections after the
//!   write timeout, so they cannot hold every connection slot.
//! - Idle connections (silent, or keep-alive between requests) give their
//!   slot to a newcomer at the connection cap, so a few hundred of them
//!   cannot lock everyone out; a request in progress is never cut for that.

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

/// A running `otus all-in-one` (stopped on drop) and where it answers.
struct System {
    _proc: Proc,
    /// The public HTTP address (`host:port`).
    addr: String,
    /// `http://` + `addr`.
    base: String,
    /// The admin port's `/metrics` URL.
    metrics: String,
}

/// Starts `otus all-in-one` on `db` with `extra` settings over
/// [`all_in_one_env`]'s.
fn all_in_one(db: &str, extra: &[(&'static str, String)]) -> System {
    let mut env = all_in_one_env(db);
    env.extend(extra.iter().cloned());
    let (proc, fields) = start("all-in-one", &env);
    let addr = fields["http"].as_str().expect("http addr").to_owned();
    let admin = fields["admin"].as_str().expect("admin addr");
    System {
        _proc: proc,
        base: format!("http://{addr}"),
        metrics: format!("http://{admin}/metrics"),
        addr,
    }
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
    let otus = all_in_one(
        &db,
        &[
            ("REDIS_URL", cache.url()),
            ("SESSION_REDIS_URL", sessions.url()),
            ("CACHE_ENABLED", "1".into()),
        ],
    );
    let base = &otus.base;
    let client = reqwest::Client::new();
    wait_for_search(base).await;

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

/// Sends `raw` on a new connection whose receive buffer is small (so that
/// unread answers stall the server's writes at once), and never reads.
async fn connect_and_never_read(addr: &str, raw: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut conn = socket
        .connect(addr.parse().expect("addr"))
        .await
        .expect("connect");
    // The server reads requests only as it answers them: once its writes
    // stall, so do ours. Stop writing then; the connection stays open.
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.write_all(raw)).await;
    conn
}

/// Waits (bounded) until the catalog answers searches (its index is built).
async fn wait_for_search(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_within(base, "/products?q=синий", Duration::from_secs(5)).await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "searches not answered within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `path` on a fresh connection; the status, or `None` if no answer
/// came within `wait`.
async fn status_within(base: &str, path: &str, wait: Duration) -> Option<u16> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    match tokio::time::timeout(wait, client.get(format!("{base}{path}")).send()).await {
        Ok(Ok(resp)) => Some(resp.status().as_u16()),
        Ok(Err(e)) => {
            eprintln!("GET {path}: {e:?}");
            None
        }
        Err(_) => None,
    }
}

/// Requests each non-reading client sends at once.
const PIPELINED: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_lose_their_connections_to_the_write_timeout() {
    let (_dir, db) = seeded_sqlite(20_000);
    let otus = all_in_one(
        &db,
        &[
            ("HTTP_MAX_CONNECTIONS", "4".into()),
            ("HTTP_WRITE_TIMEOUT_MS", "1000".into()),
            // Long enough that only the write timeout can free the slots in time.
            ("HTTP_HEADER_READ_TIMEOUT_MS", "60000".into()),
            ("HTTP_IDLE_TIMEOUT_MS", "60000".into()),
            ("REQUEST_TIMEOUT_MS", "60000".into()),
        ],
    );
    let (addr, base) = (&otus.addr, &otus.base);
    wait_for_search(base).await;

    // Four clients each ask for 1 000 pages of ~25 KB, pipelined (25 MB: far
    // more than the socket buffers hold), and read none.
    let one = "GET /products?q=%D1%81%D0%B8%D0%BD%D0%B8%D0%B9&limit=100 HTTP/1.1\r\nHost: arch.homework\r\n\r\n";
    let raw = one.repeat(PIPELINED);
    let mut hogs = Vec::new();
    for _ in 0..4 {
        hogs.push(connect_and_never_read(addr, raw.as_bytes()).await);
    }
    // Everyone else is served again once the write timeout has closed them.
    let started = Instant::now();
    let status = status_within(base, "/health/", Duration::from_secs(20)).await;
    assert_eq!(
        status,
        Some(200),
        "4 clients that never read kept /health/ from answering for 20 s (write timeout 1 s)"
    );
    eprintln!(
        "served after {:?} with 4 non-reading clients at the cap",
        started.elapsed()
    );
    // It was the write timeout that ended them (the listener counts why it
    // closes connections).
    let admin = &otus.metrics;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let closed = closed_for(admin, "write_timeout").await;
        if closed >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{closed} of 4 non-reading clients closed for the write timeout within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(hogs);
}

/// `http_connections_closed_total{reason}` from the metrics page.
async fn closed_for(metrics_url: &str, reason: &str) -> u64 {
    let page = reqwest::get(metrics_url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let series = format!("http_connections_closed_total{{reason=\"{reason}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} on the metrics page"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_at_the_cap_make_room_for_new_clients() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_dir, db) = seeded_sqlite(10);
    let otus = all_in_one(
        &db,
        &[
            ("HTTP_MAX_CONNECTIONS", "16".into()),
            // Long timeouts: only closing idle connections first can admit anyone.
            ("HTTP_HEADER_READ_TIMEOUT_MS", "60000".into()),
            ("HTTP_IDLE_TIMEOUT_MS", "60000".into()),
        ],
    );
    let (addr, base) = (&otus.addr, &otus.base);

    // 16 keep-alive connections idle after a request (every slot), then 24
    // that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..16 {
        let mut conn = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        conn.write_all(b"GET /health/ HTTP/1.1\r\nHost: arch.homework\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        idle.push(conn);
    }
    assert_eq!(
        status_within(base, "/health/", Duration::from_secs(5)).await,
        Some(200),
        "a newcomer was not served while keep-alive connections held every slot"
    );
    for _ in 0..24 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // 20 newcomers in turn, each served at once.
    for i in 0..20 {
        let status = status_within(base, "/health/", Duration::from_secs(5)).await;
        assert_eq!(
            status,
            Some(200),
            "newcomer {i} was not served within 5 s while idle connections held every slot"
        );
    }
    let admin = &otus.metrics;
    // Served because idle connections were closed for them (not by a timeout).
    let evicted = closed_for(admin, "evicted").await;
    assert!(evicted > 0, "no connection was closed for a newcomer");
    for timeout in ["header_timeout", "idle_timeout"] {
        assert_eq!(closed_for(admin, timeout).await, 0, "{timeout}");
    }
    drop(idle);
}

/// The header and idle timeouts are two numbers: a keep-alive connection
/// idle between requests closes after the idle timeout, a silent new one
/// after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_header_timeouts_close_their_own_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_dir, db) = seeded_sqlite(10);
    let otus = all_in_one(
        &db,
        &[
            ("HTTP_HEADER_READ_TIMEOUT_MS", "400".into()),
            ("HTTP_IDLE_TIMEOUT_MS", "1500".into()),
        ],
    );
    let (addr, admin) = (&otus.addr, &otus.metrics);

    // Idle after a request: open past the header timeout, closed by the idle one.
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(b"GET /health/ HTTP/1.1\r\nHost: arch.homework\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_since = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("closed within 10 s");
    let idle_for = idle_since.elapsed();
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    assert!(
        idle_for >= Duration::from_millis(1200),
        "an idle keep-alive connection was closed after {idle_for:?}, before the idle timeout (1.5 s)"
    );
    // Silent from the start: the header timeout.
    let mut silent = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("closed within 10 s");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(closed_for(admin, "idle_timeout").await, 1);
    assert_eq!(closed_for(admin, "header_timeout").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_progress_is_not_cut_to_make_room() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_dir, db) = seeded_sqlite(10);
    let otus = all_in_one(
        &db,
        &[
            ("HTTP_MAX_CONNECTIONS", "1".into()),
            ("BODY_READ_TIMEOUT_MS", "10000".into()),
        ],
    );
    let (addr, base) = (&otus.addr, &otus.base);

    // A registration whose body is half sent holds the only slot.
    let body = json!({"username": format!("slow-{}", uuid::Uuid::new_v4().simple()),
                      "email": "slow@example.com", "password": "correct horse battery"})
    .to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /register HTTP/1.1\r\nHost: arch.homework\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("write head");
    slow.write_all(first).await.expect("write half a body");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A newcomer waits (nothing idle to close) instead of cutting it...
    let newcomer = tokio::spawn({
        let base = base.clone();
        async move { status_within(&base, "/health/", Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !newcomer.is_finished(),
        "the newcomer was served while the only slot was busy"
    );
    // ...and the slow client's registration completes.
    slow.write_all(rest).await.expect("write the rest");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n{") {
        assert!(
            Instant::now() < deadline,
            "no answer to the slow registration"
        );
        let n = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(
            n > 0,
            "the slow registration's connection was closed: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    drop(slow);
    assert_eq!(newcomer.await.expect("newcomer"), Some(200));
}

/// Failed logins from one client, each with another `X-Real-IP`; the
/// statuses in order.
async fn failed_logins_rotating_x_real_ip(base: &str, n: u32) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..n {
        let resp = client
            .post(format!("{base}/login"))
            .header("x-real-ip", format!("198.51.100.{}", i % 250 + 1))
            .json(&json!({"username": format!("nobody-{i}"), "password": "wrong password"}))
            .send()
            .await
            .expect("login");
        statuses.push(resp.status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_real_ip_counts_only_from_a_trusted_proxy() {
    let (_dir, db) = seeded_sqlite(10);
    let run = async |trusted: &str| {
        let otus = all_in_one(
            &db,
            &[
                ("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "10".into()),
                ("TRUSTED_PROXIES", trusted.to_owned()),
            ],
        );
        failed_logins_rotating_x_real_ip(&otus.base, 14).await
    };
    // The peer (127.0.0.1) is not a trusted proxy: the header is ignored and
    // the 11th attempt from this one client is refused.
    let untrusted = run("192.0.2.1/32").await;
    assert_eq!(&untrusted[..10], &[401; 10], "{untrusted:?}");
    assert!(
        untrusted[10..].iter().all(|&s| s == 429),
        "a client dodged the per-address limit by rotating X-Real-IP: {untrusted:?}"
    );
    // From a trusted proxy the header is the client: 14 clients, no limit hit.
    let trusted = run("127.0.0.1,::1").await;
    assert_eq!(trusted, vec![401; 14], "{trusted:?}");
}

#[test]
fn the_old_trust_everyone_setting_is_refused_at_start() {
    let (_dir, db) = seeded_sqlite(10);
    let mut cmd = Command::new(OTUS);
    cmd.arg("all-in-one")
        .env("TRUST_PROXY_HEADERS", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in all_in_one_env(&db) {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run otus");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "otus started with TRUST_PROXY_HEADERS: {text}"
    );
    assert!(
        text.contains("TRUSTED_PROXIES"),
        "the refusal does not name the new setting: {text}"
    );
}
