//! Anonymous registrations and logins cannot cost the auth service its
//! memory: 50 concurrent registrations and 50 concurrent logins, twice, keep
//! the auth process's peak resident memory (VmHWM, read from /proc) under the
//! budget its hashing bound implies, and every answer is a JSON 2xx/4xx or a
//! 503 with `Retry-After`.
//!
//! The real `otus` binary runs as separate processes (users, auth, edge on a
//! temporary SQLite file), as in Kubernetes, so the memory measured is the
//! auth process's alone.

#![expect(clippy::expect_used, reason = "a failed expectation is a failed test")]

#[path = "support/processes.rs"]
mod processes;

use std::process::{Command, Stdio};

use processes::{OTUS, proc_status_bytes, start};
use serde_json::{Value, json};

/// The bound under test, and what the chart derives the auth memory limit from.
const MAX_CONCURRENT: u64 = 2;
const MIB: u64 = 1024 * 1024;
/// Memory of one argon2id computation (m = 19 MiB).
const WORK_MEMORY: u64 = 19 * MIB;
/// The process without any hashing in flight (debug build, all crates).
const BASE_ALLOWANCE: u64 = 64 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_and_logins_stay_within_the_memory_budget() {
    let dir = std::env::temp_dir().join(format!("otus-hashing-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = format!("sqlite://{}?mode=rwc", dir.join("otus.sqlite").display());
    let secret = uuid::Uuid::new_v4().simple().to_string().repeat(2);
    let status = Command::new(OTUS)
        .arg("migrate")
        .env("DATABASE_URL", &db)
        .stdout(Stdio::null())
        .status()
        .expect("otus migrate");
    assert!(status.success(), "otus migrate failed");

    let common = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("DATABASE_URL", db.clone()),
            ("IDENTITY_TOKEN_SECRET", secret.clone()),
            ("ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let (_users, users) = start("users", &common(&[("GRPC_ADDR", "127.0.0.1:0".into())]));
    let users_url = format!("http://{}", users["grpc"].as_str().expect("users addr"));
    let (auth_proc, auth) = start(
        "auth",
        &common(&[
            ("GRPC_ADDR", "127.0.0.1:0".into()),
            ("USERS_GRPC_URL", users_url.clone()),
            ("ARGON2_MAX_CONCURRENT", MAX_CONCURRENT.to_string()),
            ("ARGON2_MAX_WAIT_MS", "1000".into()),
            ("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "100000".into()),
        ]),
    );
    let auth_url = format!("http://{}", auth["grpc"].as_str().expect("auth addr"));
    let (_edge, edge) = start(
        "edge",
        &[
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("ADMIN_ADDR", "127.0.0.1:0".into()),
            ("USERS_GRPC_URL", users_url),
            ("AUTH_GRPC_URL", auth_url),
            ("CATALOG_GRPC_URL", "http://127.0.0.1:9".into()),
            ("REQUEST_TIMEOUT_MS", "60000".into()),
        ],
    );
    let base = format!("http://{}", edge["http"].as_str().expect("edge addr"));
    let auth_pid = auth_proc.0.id();
    let client = reqwest::Client::new();

    let started_rss = proc_status_bytes(auth_pid, "VmRSS:");
    let budget = BASE_ALLOWANCE + MAX_CONCURRENT * WORK_MEMORY;
    let mut answers: std::collections::BTreeMap<u16, usize> = Default::default();
    for round in 0..2 {
        let mut calls = Vec::new();
        for i in 0..50 {
            let (c, b) = (client.clone(), base.clone());
            calls.push(tokio::spawn(async move {
                let body = json!({
                    "username": format!("user{round}x{i}"),
                    "email": format!("u{round}x{i}@example.com"),
                    "password": "a long enough password",
                });
                c.post(format!("{b}/register")).json(&body).send().await
            }));
            let (c, b) = (client.clone(), base.clone());
            calls.push(tokio::spawn(async move {
                let body =
                    json!({"username": format!("nobody{round}x{i}"), "password": "wrong password"});
                c.post(format!("{b}/login")).json(&body).send().await
            }));
        }
        for call in calls {
            let resp = call.await.expect("task").expect("the edge answers");
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").cloned();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body: Value = resp.json().await.expect("every answer is JSON");
            assert!(ct.starts_with("application/json"), "{status} {ct}");
            assert!(
                matches!(status, 201 | 401 | 503),
                "unexpected {status}: {body}"
            );
            if status == 503 {
                assert_eq!(body["reason"], "AUTH_BUSY", "{body}");
                assert!(retry_after.is_some(), "503 without Retry-After: {body}");
            }
            *answers.entry(status).or_default() += 1;
        }
    }
    let peak = proc_status_bytes(auth_pid, "VmHWM:");
    let now = proc_status_bytes(auth_pid, "VmRSS:");
    println!(
        "auth process: {} MiB at start, peak {} MiB, {} MiB after the bursts (budget {} MiB); answers {answers:?}",
        started_rss / MIB,
        peak / MIB,
        now / MIB,
        budget / MIB
    );
    assert!(
        answers.get(&201).copied().unwrap_or(0) > 0,
        "some registrations succeed: {answers:?}"
    );
    assert!(
        peak <= budget,
        "auth peak RSS {} MiB over the budget {} MiB ({} x 19 MiB hashing + {} MiB)",
        peak / MIB,
        budget / MIB,
        MAX_CONCURRENT,
        BASE_ALLOWANCE / MIB
    );
    let _ = std::fs::remove_dir_all(&dir);
}
