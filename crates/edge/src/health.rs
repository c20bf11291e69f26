//! `GET /health` (liveness) and `GET /ready` (readiness).

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::state::AppState;

/// How long readiness waits for a backend's health answer.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Liveness: the process answers. Exactly `{"status": "OK"}` (homework 1).
pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "OK"}))
}

/// Readiness: 200 when every backend's gRPC health check (users, auth) says SERVING and the
/// process is not shutting down; otherwise 503 `{"status": "UNAVAILABLE"}`.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let checks = state
        .backends
        .iter()
        .map(|(client, service)| backend_serving(client.clone(), service));
    let serving = !state.shutdown.is_cancelled()
        && futures::future::join_all(checks)
            .await
            .into_iter()
            .all(|ok| ok);
    if serving {
        (StatusCode::OK, Json(json!({"status": "OK"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "UNAVAILABLE"})),
        )
    }
}

async fn backend_serving(
    mut client: tonic_health::pb::health_client::HealthClient<otus_grpc::client::Channel>,
    service: &str,
) -> bool {
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    req.set_timeout(READY_PROBE_TIMEOUT);
    match tokio::time::timeout(READY_PROBE_TIMEOUT, client.check(req)).await {
        Ok(Ok(resp)) => resp.into_inner().status == ServingStatus::Serving as i32,
        Ok(Err(status)) => {
            tracing::debug!(%service, code = ?status.code(), "backend not ready");
            false
        }
        Err(_) => false,
    }
}
