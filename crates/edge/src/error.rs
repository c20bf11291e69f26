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
use otus_grpc::client::CallError;
use serde::Serialize;
use tonic::Code;

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

impl From<tonic::Status> for ApiError {
    /// A service's own answer (`CallError::Service`) keeps its reason and
    /// message (written for clients); a call that got no answer gets a
    /// fixed message instead of the transport's text, which names
    /// internals.
    fn from(s: tonic::Status) -> Self {
        let (mut e, cause) = match CallError::of(&s) {
            CallError::Service {
                reason,
                retry_after,
            } => {
                let status = http_status(s.code());
                let mut e = Self::new(status, reason, s.message());
                e.retry_after = retry_after.map(|d| d.as_secs().max(1));
                let cause = status
                    .is_server_error()
                    .then(|| format!("backend error: {:?}", s.code()));
                (e, cause)
            }
            no_answer => {
                let (status, reason, message) = match no_answer {
                    // The backend closed or reset the connection under the
                    // call, or refused it (a restart, a crash): 503.
                    CallError::WentAway => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "BACKEND_UNAVAILABLE",
                        "a backend service is unavailable; try again later",
                    ),
                    CallError::DeadlineExceeded => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "DEADLINE_EXCEEDED",
                        "a backend service did not answer in time",
                    ),
                    _ => (http_status(s.code()), "INTERNAL", "internal error"),
                };
                let cause = format!("backend call failed: {:?}: {}", s.code(), s.message());
                (Self::new(status, reason, message), Some(cause))
            }
        };
        e.cause = cause;
        e
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

    #[test]
    fn a_backends_own_internal_error_stays_500() {
        let s = otus_grpc::ErrorDomain("users.otus").internal(&"a bug");
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
