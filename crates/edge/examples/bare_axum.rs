//! The yardstick for the edge's own cost: a bare axum server answering
//! `GET /health/` with `{"status":"OK"}` as the edge does, with nothing
//! around it (no middleware, logging, metrics or tracing). Same axum, hyper
//! and tokio as the edge, so `loadtest/hop.sh` compares like with like.
//!
//! cargo run --release -p otus-edge --example bare_axum -- 127.0.0.1:18201

use axum::{Json, Router, routing::get};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18201".into());
    let app = Router::new().route(
        "/health/",
        get(|| async { Json(serde_json::json!({"status": "OK"})) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare axum on http://{addr}/health/");
    axum::serve(listener, app).await
}
