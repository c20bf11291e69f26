//! Liveness, readiness, and behaviour when a backend is down.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, on_both_backends};

#[tokio::test]
async fn health_answers_exactly_status_ok_with_and_without_trailing_slash() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    for path in ["/health/", "/health"] {
        let resp = app.get(path, None).await;
        assert_eq!(resp.status(), 200, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body, json!({"status": "OK"}), "{path}");
    }
}

#[tokio::test]
async fn ready_is_ok_when_the_users_service_and_database_answer() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    // Polled like a readiness probe: the edge's first check opens its gRPC
    // connections within a 1 s probe timeout, which a busy machine (the
    // whole suite hashing passwords in parallel) can miss once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let resp = loop {
        let resp = app.get("/ready", None).await;
        if resp.status() == 200 || Instant::now() >= deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resp.status(), 200, "not ready within 30 s");
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"status": "OK"})
    );
}

/// An edge on its own (no services in its process) with `cfg`, serving
/// until `shutdown`; its base URL.
async fn edge_alone(
    cfg: &otus_edge::EdgeConfig,
    shutdown: &otus_telemetry::CancellationToken,
) -> String {
    let metrics = otus_telemetry::Metrics::new();
    let router = otus_edge::router(cfg, &metrics, shutdown.clone()).expect("router");
    let (addr, serve) = otus_edge::serve(
        "127.0.0.1:0".parse().expect("addr"),
        router,
        otus_edge::ListenerLimits::DEFAULT,
        &metrics,
        shutdown.clone(),
    )
    .await
    .expect("serve");
    tokio::spawn(serve);
    format!("http://{addr}")
}

/// An edge whose backends are not running: liveness stays OK, readiness
/// says 503, and API calls fail fast with a 503 JSON error, not a hang or 500.
#[tokio::test]
async fn with_the_users_service_down_the_edge_answers_503_quickly() {
    // Port 1 (tcpmux) is privileged and unused: connections are refused. A
    // port freed by this test could be reused by a parallel test's server.
    let dead_addr: std::net::SocketAddr = "127.0.0.1:1".parse().expect("addr");

    let shutdown = otus_telemetry::CancellationToken::new();
    let cfg = otus_edge::EdgeConfig {
        users_url: format!("http://{dead_addr}"),
        auth_url: format!("http://{dead_addr}"),
        catalog_url: format!("http://{dead_addr}"),
        ..otus_edge::EdgeConfig::default()
    };
    let base = edge_alone(&cfg, &shutdown).await;
    let client = reqwest::Client::new();

    let live = client
        .get(format!("{base}/health/"))
        .send()
        .await
        .expect("health");
    assert_eq!(live.status(), 200);

    let ready = client
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<Value>().await.expect("json"),
        json!({"status": "UNAVAILABLE"})
    );

    let started = Instant::now();
    // Login needs the auth service (and through it, users): both down.
    let resp = client
        .post(format!("{base}/login"))
        .json(&json!({"username": "u", "password": "p"}))
        .send()
        .await
        .expect("login");
    let body = assert_error(resp, 503, "BACKEND_UNAVAILABLE").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "503 must come fast (connection refused), took {:?}",
        started.elapsed()
    );
    assert!(
        !body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&dead_addr.to_string())
    );
    shutdown.cancel();
}

on_both_backends!(with_auth_down_an_edge_keeps_serving_the_other_routes);

/// An edge whose auth service is down (users and catalog answer): it stays
/// alive and ready for Kubernetes (its readiness probe is the process-local
/// `/health`, so the ingress keeps routing to it), the public catalog still
/// answers, and only the routes that need auth get a 503 JSON error, not the
/// ingress's HTML 503 for everything.
async fn with_auth_down_an_edge_keeps_serving_the_other_routes(app: TestApp) {
    let (user, token) = app.user_with_token().await;
    let db = otus_db::connect_plain(&app.database_url)
        .await
        .expect("connect");
    otus_catalog::seed::load(
        &db,
        50,
        7,
        otus_catalog::seed::Shape::Catalog,
        otus_catalog::seed::Mode::Replace,
        50,
        |_, _| {},
    )
    .await
    .expect("seed");
    app.catalog_index_current().await;
    let shutdown = otus_telemetry::CancellationToken::new();
    let cfg = otus_edge::EdgeConfig {
        users_url: format!("http://{}", app.grpc),
        // Port 1 is privileged and unused: connections are refused.
        auth_url: "http://127.0.0.1:1".into(),
        catalog_url: format!("http://{}", app.catalog_grpc),
        ..otus_edge::EdgeConfig::default()
    };
    let base = edge_alone(&cfg, &shutdown).await;
    let client = reqwest::Client::new();

    // What the chart's readiness probe asks: the process serves.
    let probe = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("probe");
    assert_eq!(probe.status(), 200);

    // The public catalog answers without auth: a page, and one product.
    let search = client
        .get(format!("{base}/products?limit=5"))
        .send()
        .await
        .expect("search");
    assert_eq!(search.status(), 200, "public search with auth down");
    let page: Value = search.json().await.expect("json");
    assert_eq!(page["total"], 50, "{page}");
    let id = page["items"][0]["id"].as_i64().expect("an id");
    let one = client
        .get(format!("{base}/products/{id}"))
        .send()
        .await
        .expect("product");
    assert_eq!(one.status(), 200);

    // Routes that need auth (a login; a session to verify): 503 JSON, fast.
    let started = Instant::now();
    let login = client
        .post(format!("{base}/login"))
        .json(&json!({"username": user.username, "password": user.password}))
        .send()
        .await
        .expect("login");
    assert_error(login, 503, "BACKEND_UNAVAILABLE").await;
    let me = client
        .get(format!("{base}/user/{}", user.id))
        .bearer_auth(&token)
        .send()
        .await
        .expect("profile");
    assert_error(me, 503, "BACKEND_UNAVAILABLE").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "503s must come fast, took {:?}",
        started.elapsed()
    );
    shutdown.cancel();
}
