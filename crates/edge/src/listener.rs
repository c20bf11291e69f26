//! The public HTTP listener and request bodies, with every cost a client can
//! impose bounded: connections per process, time to send headers, time to
//! send a body, body size.
//!
//! - [`serve`]: HTTP/1.1 (what ingress-nginx speaks upstream) with a cap on
//!   open connections, where a newcomer at the cap closes the longest-idle
//!   connection (as nginx does) and waits in the kernel's backlog only while
//!   every connection is serving a request; and, per connection, timeouts
//!   on headers, keep-alive idleness and response writes that make no
//!   progress (`crate::conn`).
//! - [`check_head`]: a request target or headers over the limits get a
//!   JSON 414/431 (beyond hyper's own, larger limits hyper closes).
//! - [`read_body`]: a declared `Content-Length` over the limit is `413` at
//!   once, without reading (so `Expect: 100-continue` gets no `100`); a body
//!   that does not arrive within the body timeout is `408`; the body is then
//!   handed on in memory, at most the limit.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Request},
    http::{StatusCode, header},
    response::{IntoResponse as _, Response},
};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use otus_telemetry::CancellationToken;

use crate::error::ApiError;

/// Bounds of the public listener.
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    /// Time a client has to send a request's headers, from the connection's
    /// start or the request's first byte.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// How long a response write may make no progress (a client that does
    /// not read) before the connection is closed.
    pub write_timeout: Duration,
    /// Most open connections; at the cap the longest-idle one is closed for
    /// a newcomer, and while none is idle newcomers wait in the backlog.
    pub max_connections: usize,
}

impl ListenerLimits {
    /// The defaults, and why:
    /// - headers 10 s: ingress-nginx writes a request's headers at once on
    ///   a connection it opened for that request, so a client slower than
    ///   that is not a proxy (nginx's own `client_header_timeout` is 60 s
    ///   for clients on the internet, which the ingress faces, not the edge);
    /// - idle 75 s: above ingress-nginx's upstream keep-alive timeout (60 s),
    ///   so nginx never reuses a connection the edge is closing; with idle
    ///   connections closed first at the cap, they cost a slot only while
    ///   no one else needs it;
    /// - write 10 s without progress: the ingress reads responses as fast as
    ///   they come (it buffers them), so a stalled write is a client that
    ///   does not read;
    /// - 1024 connections: ingress-nginx keeps at most 320 idle upstream
    ///   connections per worker.
    pub const DEFAULT: Self = Self {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(75),
        write_timeout: Duration::from_secs(10),
        max_connections: 1024,
    };
}

/// Bounds on request bodies.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// Time a client has to send the whole body once the headers are in.
    pub read_timeout: Duration,
}

/// Longest request target (path and query) answered normally.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request headers answered normally.
pub const MAX_HEADERS: usize = 100;
/// Largest total size of the request headers answered normally.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// What the HTTP library itself accepts, above the limits just named, so that
/// requests between the two get this crate's JSON 414/431 rather than the
/// library's bodiless ones. Beyond these, hyper answers (bodiless) and closes.
const HYPER_MAX_HEADERS: usize = 256;
const HYPER_MAX_BUF: usize = 256 * 1024;

/// 414 or 431 as JSON when the request target or the headers are over the
/// limits, 400 when the request is ambiguous (see [`ambiguity`]); `None` when
/// it is fine.
pub fn check_head(req: &Request) -> Option<Response> {
    if let Some(resp) = ambiguity(req) {
        return Some(close(resp));
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(close(
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "URI_TOO_LONG",
                format!("the request target is longer than {MAX_URI_BYTES} bytes"),
            )
            .into_response(),
        ));
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(close(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "HEADERS_TOO_LARGE",
                format!("at most {MAX_HEADERS} request headers of {MAX_HEADER_BYTES} bytes in all"),
            )
            .into_response(),
        ));
    }
    None
}

/// A request that two parties could read differently is refused, 400, not
/// decided by taking the first of two headers:
/// - HTTP/1.1 without `Host`, or any request with two (RFC 9112 §3.2: a
///   server must answer 400): a proxy and the edge could route it apart;
/// - two `Authorization` headers, or two session cookies: which caller is
///   it?
pub fn ambiguity(req: &Request) -> Option<Response> {
    let headers = req.headers();
    let hosts = headers.get_all(header::HOST).iter().count();
    let needs_host = req.version() == axum::http::Version::HTTP_11;
    if hosts > 1 || (needs_host && hosts == 0) {
        return Some(
            ApiError::bad_request(
                "INVALID_HOST",
                format!("an HTTP/1.1 request needs exactly one Host header, got {hosts}"),
            )
            .into_response(),
        );
    }
    let authorizations = headers.get_all(header::AUTHORIZATION).iter().count();
    let cookies = crate::credentials::session_cookies(headers).count();
    if authorizations > 1 || cookies > 1 {
        return Some(
            ApiError::bad_request(
                "AMBIGUOUS_CREDENTIALS",
                format!(
                    "one set of credentials per request: got {authorizations} Authorization \
                     headers and {cookies} session cookies"
                ),
            )
            .into_response(),
        );
    }
    None
}

/// Reads the body under [`BodyLimits`] before any handler sees the request:
/// the request with its body in memory, or the error answer (413, 408, 400).
pub async fn read_body(limits: BodyLimits, req: Request) -> Result<Request, Response> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!(
                "request body is larger than the limit of {} bytes",
                limits.max_bytes
            ),
        )
        .into_response()
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(close(too_large()));
    }
    // Nothing to read (a GET, or an empty body): no buffer, no timer.
    if axum::body::HttpBody::is_end_stream(req.body()) {
        return Ok(req);
    }
    let (parts, mut body) = req.into_parts();
    let mut buf: Vec<u8> = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ReadError::Aborted)?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limits.max_bytes {
                    return Err(ReadError::TooLarge);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(())) => Ok(Request::from_parts(parts, Body::from(Bytes::from(buf)))),
        Ok(Err(ReadError::TooLarge)) => Err(close(too_large())),
        Ok(Err(ReadError::Aborted)) => Err(close(
            ApiError::bad_request("INVALID_BODY", "the request body could not be read")
                .into_response(),
        )),
        Err(_) => Err(close(
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "BODY_TIMEOUT",
                format!(
                    "the request body did not arrive within {} ms",
                    limits.read_timeout.as_millis()
                ),
            )
            .into_response(),
        )),
    }
}

enum ReadError {
    TooLarge,
    Aborted,
}

/// The connection cannot be reused after a body was left unread.
fn close(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// Binds the public listener; returns its address and the serving future,
/// which ends after `shutdown` fires and in-flight requests finish (idle
/// connections are closed at once).
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    limits: ListenerLimits,
    metrics: &otus_telemetry::Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    SocketAddr,
    impl Future<Output = std::io::Result<()>> + use<>,
)> {
    let conn_metrics = crate::conn::ConnMetrics::new(metrics.registry())
        .context("registering the connection metrics")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP port {addr}"))?;
    let local = listener.local_addr()?;
    let max = limits.max_connections.clamp(
        1,
        tokio::sync::Semaphore::MAX_PERMITS.min(u32::MAX as usize),
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let registry = Arc::new(crate::conn::Registry::default());
    let timeouts = crate::conn::Timeouts {
        header: limits.header_read_timeout,
        idle: limits.idle_timeout,
        write: limits.write_timeout,
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // Header and idle timeouts are the socket's (`conn::Guarded`), which
    // tells them apart; hyper's own would run from the end of the previous
    // response and so bound both with one number.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF)
        .keep_alive(true);
    let fut = async move {
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(conn) => conn,
                    Err(e) => {
                        // E.g. out of file descriptors: back off, keep serving.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            // At the cap, a newcomer (accepted, so it is known to be there)
            // takes the slot of the connection idle the longest; while every
            // connection is serving a request it waits, and the listener
            // accepts no one else meanwhile (the rest wait in the backlog).
            let permit = loop {
                if let Ok(p) = permits.clone().try_acquire_owned() {
                    break Some(p);
                }
                registry.evict_longest_idle();
                tokio::select! {
                    p = permits.clone().acquire_owned() => break p.ok(),
                    () = registry.became_idle() => {}
                    // A new connection becomes closable after a grace period.
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = shutdown.cancelled() => break None,
                }
            };
            let Some(permit) = permit else { break };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let registered = registry.register();
            let conn_metrics = conn_metrics.clone();
            conn_metrics.opened();
            let state = Arc::clone(&registered.conn);
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    let guard = state.request_started();
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let call = tower::ServiceExt::oneshot(router.clone(), req.map(Body::new));
                    async move {
                        let resp = call.await?;
                        Ok::<_, std::convert::Infallible>(
                            resp.map(|b| Body::new(crate::conn::TrackedBody::new(b, guard))),
                        )
                    }
                });
            let io = crate::conn::Guarded::new(stream, Arc::clone(&registered.conn), timeouts);
            let conn = http.serve_connection(TokioIo::new(io), service);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let state = Arc::clone(&registered.conn);
                tokio::pin!(conn);
                let result = loop {
                    tokio::select! {
                        // The connection first: data that has arrived is
                        // read (and the connection is no longer idle) before
                        // a close request looks at it.
                        biased;
                        r = conn.as_mut() => break r,
                        () = shutdown.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            break conn.await;
                        }
                        () = state.close_requested() => {
                            if state.closable() {
                                tracing::debug!(%peer, "closed an idle connection for a new client");
                                conn_metrics.ended(Some(crate::conn::Closed::Evicted));
                                return;
                            }
                            // A request came in meanwhile: serve on.
                            state.keep();
                        }
                    }
                };
                conn_metrics.ended(state.closed_by());
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
            });
        }
        drop(listener);
        // Every connection holds a permit until it ends: all back, all done.
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await;
        Ok(())
    };
    Ok((local, fut))
}
