//! gRPC call metrics as a tower layer, for servers and clients alike:
//! `grpc_server_handling_seconds` / `grpc_client_handling_seconds` histograms
//! labelled `grpc_service`, `grpc_method`, `grpc_code` (the `_count` series is
//! the call counter).
//!
//! All our RPCs are unary. tonic sends an error as a trailers-only response
//! (`grpc-status` in the headers), a success with `grpc-status: 0` in the
//! trailers; so a response without `grpc-status` in its headers is OK, and
//! the duration up to the response headers is the call's duration.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use prometheus::HistogramVec;
use tower::{Layer, Service};
use tracing::Instrument as _;

/// Which side of a call the layer wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A server: continues the caller's trace from the request metadata.
    Server,
    /// A client: opens a span and sends its context in the metadata.
    Client,
}

/// Canonical code names, indexed by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn code_name(headers: &http::HeaderMap) -> &'static str {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .and_then(|n| CODES.get(n).copied())
        .unwrap_or("OK")
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

/// The layer: wraps a server's or a client's HTTP/2 service.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    histogram: HistogramVec,
    side: Side,
}

impl GrpcMetricsLayer {
    /// A layer observing into `histogram` (labels: service, method, code).
    pub fn new(histogram: HistogramVec, side: Side) -> Self {
        Self { histogram, side }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            histogram: self.histogram.clone(),
            side: self.side,
        }
    }
}

/// The metered service.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    histogram: HistogramVec,
    side: Side,
}

impl<S, ReqB, ResB> Service<http::Request<ReqB>> for GrpcMetrics<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqB>) -> Self::Future {
        let (service, method) = split(req.uri().path());
        let name = format!("{service}/{method}");
        // `tracing` takes a span's name and fields as literals: one macro
        // for the attributes both sides share (OpenTelemetry's RPC ones).
        macro_rules! call_span {
            ($(target: $target:expr,)? $name:literal, $kind:literal $(, $field:ident = $value:expr)*) => {
                tracing::info_span!(
                    $(target: $target,)?
                    $name,
                    otel.name = %name,
                    otel.kind = $kind,
                    rpc.system = "grpc",
                    rpc.service = %service,
                    rpc.method = %method,
                    $($field = $value,)*
                )
            };
        }
        let span = match self.side {
            Side::Server => {
                let span = call_span!("grpc.server", "server", trace_id = tracing::field::Empty);
                crate::trace::extract(&span, req.headers());
                span
            }
            Side::Client => {
                let span = call_span!(target: crate::TRACE_ONLY, "grpc.client", "client");
                crate::trace::inject(&span, req.headers_mut());
                span
            }
        };
        // The clone that was polled ready must serve this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let histogram = self.histogram.clone();
        let started = Instant::now();
        Box::pin(
            async move {
                let result = inner.call(req).await;
                let code = match &result {
                    Ok(resp) => code_name(resp.headers()),
                    // The call never got an answer (connection refused, reset).
                    Err(_) => "UNAVAILABLE",
                };
                // Unknown paths would let any caller mint label values.
                let method = if code == "UNIMPLEMENTED" {
                    "unknown".to_owned()
                } else {
                    method
                };
                histogram
                    .with_label_values(&[service.as_str(), method.as_str(), code])
                    .observe(started.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_codes() {
        assert_eq!(
            split("/otus.users.v1.UsersService/GetUser"),
            ("otus.users.v1.UsersService".into(), "GetUser".into())
        );
        let mut h = http::HeaderMap::new();
        assert_eq!(code_name(&h), "OK");
        h.insert("grpc-status", "16".parse().unwrap());
        assert_eq!(code_name(&h), "UNAUTHENTICATED");
        h.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(code_name(&h), "OK");
    }
}
