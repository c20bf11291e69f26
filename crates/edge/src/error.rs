//! The edge's one error type and its JSON shape (`../shared/CONTRACT.md`):
//! `{"code": <HTTP status>, "message": <text>, "reason": <UPPER_SNAKE>}`.
//!
//! Every failure path of the edge ends here: handler errors, gRPC statuses from
//! the services (mapped like grpc-gateway), body rejections, unknown routes.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt as _;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
    message: String,
    /// Seconds for a `Retry-After` header (429).
    retry_after: Option<u64>,
    /// What went wrong behind a server error, for the access log line only
    /// (never sent: it may name internals).
    cause: Option<String>,
}

/// On a response made from an [`ApiError`]: its reason, and the internal
/// cause of a server error, for the access log line (`observe::request`).
#[derive(Debug, Clone)]
pub struct Logged {
    /// The answer's machine reason.
    pub reason: String,
    /// What the backend said, for server errors.
    pub cause: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: u16,
    message: &'a str,
    reason: &'a str,
}

impl ApiError {
    /// An error with an explicit status, machine reason and human message.
    pub fn new(status: StatusCode, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
            retry_after: None,
            cause: None,
        }
    }

    /// 401 for a request without credentials.
    pub fn missing_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "MISSING_CREDENTIALS",
            "log in first: send Authorization: Bearer <token> or the session cookie",
        )
    }

    /// 400 with the given reason.
    pub fn bad_request(reason: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.status.as_u16(),
            message: &self.message,
            reason: &self.reason,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"otus\""),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp.extensions_mut().insert(Logged {
            reason: self.reason,
            cause: self.cause,
        });
        resp
    }
}

/// gRPC code → HTTP status, as `../shared/CONTRACT.md` lists it (grpc-gateway's
/// mapping for these codes; every other code is a 500).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Whether `s` says the backend went away under the call rather than
/// answering it: no `ErrorInfo` (our services put one on every error they
/// make), and a code the transport produces when a connection is refused,
/// closed or reset (a restart, a crash). A read can safely be sent again.
pub(crate) fn backend_went_away(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Internal | Code::Aborted
    ) && s.get_error_details().error_info().is_none()
}

/// Runs an idempotent read, and once more if the backend went away under
/// the first attempt ([`backend_went_away`]): the channel reconnects, so the
/// second attempt goes out on a new connection (in Kubernetes, possibly to
/// another pod), and a backend's restart costs the client nothing when
/// another instance answers. Writes are never retried (the first attempt may
/// have been applied).
pub(crate) async fn read_retried_once<R, F, Fut>(mut call: F) -> Result<R, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, tonic::Status>>,
{
    match call().await {
        Err(s) if backend_went_away(&s) => {
            tracing::debug!(grpc.code = ?s.code(), grpc.message = %s.message(), "backend went away under a read; retrying once");
            call().await
        }
        other => other,
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let mut status = http_status(s.code());
        // Our services attach google.rpc.ErrorInfo to every error they
        // produce; its message is written for clients. Without it the status
        // came from the transport (connection refused, deadline), whose text
        // names internals, so clients get a fixed message instead.
        let details = s.get_error_details();
        match details.error_info() {
            Some(info) => {
                let mut e = Self::new(status, info.reason.clone(), s.message());
                if status.is_server_error() {
                    e.cause = Some(format!("backend error: {:?}", s.code()));
                }
                e.retry_after = details
                    .retry_info()
                    .and_then(|r| r.retry_delay)
                    .map(|d| d.as_secs().max(1));
                e
            }
            None => {
                let (reason, message) = match s.code() {
                    Code::Unavailable => (
                        "BACKEND_UNAVAILABLE",
                        "a backend service is unavailable; try again later",
                    ),
                    Code::DeadlineExceeded => (
                        "DEADLINE_EXCEEDED",
                        "a backend service did not answer in time",
                    ),
                    // Without our ErrorInfo (our services put one on every
                    // error they make, INTERNAL included), these come from the
                    // transport: the backend closed or reset the connection
                    // under the call (a restart, a crash). The backend went
                    // away: 503.
                    Code::Cancelled | Code::Unknown | Code::Internal | Code::Aborted => {
                        status = StatusCode::SERVICE_UNAVAILABLE;
                        (
                            "BACKEND_UNAVAILABLE",
                            "a backend service is unavailable; try again later",
                        )
                    }
                    _ => ("INTERNAL", "internal error"),
                };
                let mut e = Self::new(status, reason, message);
                e.cause = Some(format!(
                    "backend call failed: {:?}: {}",
                    s.code(),
                    s.message()
                ));
                e
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_as_the_contract_says() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
        ];
        for (code, http) in cases {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn a_call_cut_by_a_restarting_backend_is_503() {
        for s in [
            tonic::Status::cancelled("connection closed"),
            tonic::Status::unknown("h2 protocol error: connection reset"),
            tonic::Status::internal("h2 protocol error: stream no longer needed"),
        ] {
            let e = ApiError::from(s);
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(e.reason(), "BACKEND_UNAVAILABLE");
        }
    }

    #[tokio::test]
    async fn a_read_is_retried_once_when_the_backend_went_away_and_only_then() {
        let attempts = std::cell::Cell::new(0);
        // Cut under the first attempt, answered by the second.
        let r = read_retried_once(|| {
            attempts.set(attempts.get() + 1);
            let n = attempts.get();
            async move {
                if n == 1 {
                    Err(tonic::Status::cancelled("connection closed"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(2));
        // Gone twice: the second failure is the answer (no third attempt).
        attempts.set(0);
        let r: Result<(), _> = read_retried_once(|| {
            attempts.set(attempts.get() + 1);
            async { Err(tonic::Status::unavailable("connection refused")) }
        })
        .await;
        assert_eq!(r.map_err(|s| s.code()), Err(Code::Unavailable));
        assert_eq!(attempts.get(), 2);
        // A backend's own answer (with ErrorInfo), even UNAVAILABLE, is final.
        attempts.set(0);
        let r: Result<(), _> = read_retried_once(|| {
            attempts.set(attempts.get() + 1);
            let mut details = tonic_types::ErrorDetails::new();
            details.set_error_info(
                "DATABASE_UNAVAILABLE",
                "catalog.otus",
                std::collections::HashMap::new(),
            );
            async move {
                Err(tonic::Status::with_error_details(
                    Code::Unavailable,
                    "database down",
                    details,
                ))
            }
        })
        .await;
        assert_eq!(r.map_err(|s| s.code()), Err(Code::Unavailable));
        assert_eq!(attempts.get(), 1);
    }

    #[test]
    fn a_backends_own_internal_error_stays_500() {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_error_info("INTERNAL", "users.otus", std::collections::HashMap::new());
        let s = tonic::Status::with_error_details(Code::Internal, "internal error", details);
        let e = ApiError::from(s);
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.reason(), "INTERNAL");
    }

    #[test]
    fn transport_errors_do_not_leak_internals() {
        let e = ApiError::from(tonic::Status::unavailable(
            "tcp connect error: 10.0.0.7:50051 Connection refused",
        ));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.reason(), "BACKEND_UNAVAILABLE");
        assert!(!e.message.contains("10.0.0.7"), "{}", e.message);
    }
}
