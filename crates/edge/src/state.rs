//! What every handler reaches: the settings ([`EdgeConfig`]) and the shared
//! state ([`AppState`]): one gRPC client per backend, and how a handler's
//! gRPC request is made (deadline, request id, the caller's identity).

use std::{sync::Arc, time::Duration};

use axum::http::HeaderMap;
use otus_grpc::client::{self, Channel};
use otus_proto::{
    auth::v1::auth_service_client::AuthServiceClient,
    catalog::v1::catalog_service_client::CatalogServiceClient,
    users::v1::users_service_client::UsersServiceClient,
};
use otus_telemetry::{CancellationToken, Metrics};
use tonic_health::pb::health_client::HealthClient;

use crate::observe;

/// Edge settings (see the `otus` binary for the environment variables).
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// gRPC address of the users service, e.g. `http://users:50051`.
    pub users_url: String,
    /// gRPC address of the auth service, e.g. `http://auth:50052`.
    pub auth_url: String,
    /// gRPC address of the catalog service, e.g. `http://catalog:50053`.
    pub catalog_url: String,
    /// Mark the session cookie `Secure`.
    pub cookie_secure: bool,
    /// Proxies whose `X-Real-IP` gives the client address (the ingress
    /// controller); from any other peer the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Deadline sent with every gRPC call (`grpc-timeout`).
    pub grpc_deadline: Duration,
    /// Upper bound on a whole HTTP request; answers 504 beyond it.
    pub request_timeout: Duration,
    /// Largest accepted request body in bytes; larger gets 413.
    pub body_limit: usize,
    /// Time a client has to send a request body; beyond it 408.
    pub body_read_timeout: Duration,
}

impl Default for EdgeConfig {
    /// The documented defaults (`../shared/CONTRACT.md`'s configuration),
    /// with every backend on loopback at its own default port: what
    /// `otus edge` runs with when nothing is set, and what tests change a
    /// field of.
    fn default() -> Self {
        let local = |port: u16| format!("http://127.0.0.1:{port}");
        Self {
            users_url: local(otus_proto::users::GRPC_PORT),
            auth_url: local(otus_proto::auth::GRPC_PORT),
            catalog_url: local(otus_proto::catalog::GRPC_PORT),
            cookie_secure: false,
            trusted_proxies: Vec::new(),
            grpc_deadline: otus_grpc::DEFAULT_DEADLINE,
            request_timeout: Duration::from_secs(10),
            body_limit: 64 * 1024,
            body_read_timeout: Duration::from_secs(5),
        }
    }
}

/// What every handler can reach. Cheap to clone: axum clones the state for
/// every request (even `/health/`), and cloning six gRPC clients (channel
/// handles with their queues) per request cost the edge more than half of
/// its `/health/` throughput; behind an `Arc` it is one counter increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`AppState`].
pub struct Shared {
    pub(crate) users: UsersServiceClient<Channel>,
    pub(crate) auth: AuthServiceClient<Channel>,
    pub(crate) catalog: CatalogServiceClient<Channel>,
    /// Health clients of every backend, with the service name to ask for.
    pub(crate) backends: Vec<(HealthClient<Channel>, &'static str)>,
    pub(crate) grpc_deadline: Duration,
    pub(crate) cookie_secure: bool,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    pub(crate) shutdown: CancellationToken,
}

impl AppState {
    /// Clients for every backend (connected lazily).
    pub fn new(
        cfg: &EdgeConfig,
        metrics: &Metrics,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let users = client::channel(metrics, &cfg.users_url)?;
        let auth = client::channel(metrics, &cfg.auth_url)?;
        let catalog = client::channel(metrics, &cfg.catalog_url)?;
        Ok(Self(Arc::new(Shared {
            users: UsersServiceClient::new(users.clone()),
            auth: AuthServiceClient::new(auth.clone()),
            catalog: CatalogServiceClient::new(catalog.clone()),
            backends: vec![
                (
                    HealthClient::new(users),
                    otus_proto::users::v1::users_service_server::SERVICE_NAME,
                ),
                (
                    HealthClient::new(auth),
                    otus_proto::auth::v1::auth_service_server::SERVICE_NAME,
                ),
                (
                    HealthClient::new(catalog),
                    otus_proto::catalog::v1::catalog_service_server::SERVICE_NAME,
                ),
            ],
            grpc_deadline: cfg.grpc_deadline,
            cookie_secure: cfg.cookie_secure,
            trusted_proxies: cfg.trusted_proxies.clone(),
            shutdown,
        })))
    }

    /// A gRPC request carrying the deadline and the HTTP request's id.
    pub(crate) fn rpc<T>(&self, headers: &HeaderMap, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.grpc_deadline);
        if let Some(id) = headers.get(observe::REQUEST_ID)
            && let Ok(v) = id.to_str().unwrap_or_default().parse()
        {
            req.metadata_mut().insert(observe::REQUEST_ID, v);
        }
        req
    }

    /// [`Self::rpc`] on behalf of a verified caller.
    pub(crate) fn rpc_as<T>(
        &self,
        headers: &HeaderMap,
        identity_token: &str,
        msg: T,
    ) -> tonic::Request<T> {
        let mut req = self.rpc(headers, msg);
        otus_identity::attach(&mut req, identity_token);
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grpc_calls_carry_the_deadline_and_the_request_id() {
        // Nothing listens on port 1: the calls are never sent anyway.
        let dead = "http://127.0.0.1:1".to_owned();
        let cfg = EdgeConfig {
            users_url: dead.clone(),
            auth_url: dead.clone(),
            catalog_url: dead,
            grpc_deadline: Duration::from_millis(1500),
            ..EdgeConfig::default()
        };
        let state = AppState::new(&cfg, &Metrics::new(), CancellationToken::new()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(observe::REQUEST_ID, "req-42".parse().unwrap());
        let req = state.rpc(&headers, ());
        let timeout = req
            .metadata()
            .get("grpc-timeout")
            .expect("grpc-timeout is set");
        // gRPC wire format: an integer and a unit; tonic sends microseconds.
        assert_eq!(timeout.to_str().unwrap(), "1500000u");
        assert_eq!(req.metadata().get(observe::REQUEST_ID).unwrap(), "req-42");
    }
}
