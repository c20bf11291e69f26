//! A backend restarting (SIGTERM, then a new process on the same address)
//! under concurrent requests through the edge costs no 500: every answer is
//! 200 or a JSON 503, and answers are 200 again once the new process is up.
//! Real `otus` processes, as in a rolling update.

#![expect(clippy::expect_used, reason = "a failed expectation is a failed test")]

#[path = "support/processes.rs"]
#[allow(
    dead_code,
    reason = "shared with other test binaries, which use all of it"
)]
mod processes;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use processes::{OTUS, Proc, start};
use serde_json::Value;
use tokio::sync::Mutex;

fn catalog(db: &str, addr: &str) -> (Proc, Value) {
    start(
        "catalog",
        &[
            ("DATABASE_URL", db.to_owned()),
            ("GRPC_ADDR", addr.to_owned()),
            ("ADMIN_ADDR", "127.0.0.1:0".to_owned()),
            ("CACHE_ENABLED", "0".to_owned()),
        ],
    )
}

/// SIGTERM, then wait (bounded) for the process to drain and exit.
fn stop_gracefully(proc: &mut Proc) {
    let pid = proc.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = proc.0.try_wait().expect("wait") {
            assert!(status.success(), "catalog exited with {status} on SIGTERM");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "catalog did not exit within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_backend_under_load_gives_503s_never_500s() {
    let dir = std::env::temp_dir().join(format!("otus-restarts-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = format!("sqlite://{}?mode=rwc", dir.join("otus.sqlite").display());
    let seeded = Command::new(OTUS)
        .args(["seed-products", "--count", "200", "--mode", "replace"])
        .env("DATABASE_URL", &db)
        .stdout(Stdio::null())
        .status()
        .expect("seed-products");
    assert!(seeded.success());

    let (first, fields) = catalog(&db, "127.0.0.1:0");
    let addr = fields["grpc"].as_str().expect("catalog addr").to_owned();
    let (_edge, edge) = start(
        "edge",
        &[
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("ADMIN_ADDR", "127.0.0.1:0".into()),
            ("USERS_GRPC_URL", "http://127.0.0.1:9".into()),
            ("AUTH_GRPC_URL", "http://127.0.0.1:9".into()),
            ("CATALOG_GRPC_URL", format!("http://{addr}")),
        ],
    );
    let base = format!("http://{}", edge["http"].as_str().expect("edge addr"));

    let stop = Arc::new(AtomicBool::new(false));
    // (status, reason) -> count, and the time of every 200.
    let seen: Arc<Mutex<BTreeMap<(u16, String), usize>>> = Arc::default();
    let ok_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let (stop, seen, ok_at, base) = (stop.clone(), seen.clone(), ok_at.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let path = if i % 2 == 0 {
                    format!("/products/{}", 1 + i % 200)
                } else {
                    "/products?q=a&limit=5".to_owned()
                };
                let Ok(resp) = client.get(format!("{base}{path}")).send().await else {
                    continue;
                };
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let reason = body["reason"].as_str().unwrap_or("").to_owned();
                if status == 200 {
                    ok_at.lock().await.push(Instant::now());
                }
                *seen.lock().await.entry((status, reason)).or_default() += 1;
            }
        }));
    }

    let mut current = first;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop_gracefully(&mut current);
        // The same address again; the port was just released.
        let deadline = Instant::now() + Duration::from_secs(30);
        let restarted = loop {
            let attempt = std::panic::catch_unwind(|| catalog(&db, &addr));
            match attempt {
                Ok(proc) => break proc,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(_) => panic!("a new catalog could not listen on {addr} within 30 s"),
            }
        };
        current = restarted.0;
        let up = Instant::now();
        // Served again: a 200 after the new process listens (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok_at.lock().await.iter().any(|t| *t > up) {
            assert!(
                Instant::now() < deadline,
                "no 200 within 30 s after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let seen = seen.lock().await.clone();
    println!("answers during two catalog restarts: {seen:?}");
    for ((status, reason), n) in &seen {
        assert!(
            *status == 200 || (*status == 503 && reason == "BACKEND_UNAVAILABLE"),
            "{n} answers {status} {reason}: {seen:?}"
        );
    }
    drop(current);
    let _ = std::fs::remove_dir_all(&dir);
}
