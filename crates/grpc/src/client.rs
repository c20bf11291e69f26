//! The client half of the system's gRPC: the channel every caller uses (the
//! edge to each backend, auth to users) and the decoding side of the error
//! contract that [`crate::ErrorDomain`] writes.
//!
//! - [`channel`]: a [`Channel`] spread over every address of the backend's
//!   name ([`balance`]), its calls counted, timed and traced
//!   (`grpc_client_handling_seconds`).
//! - [`CallError::of`]: what a failed call's status means: the service's
//!   own answer (every error a service makes carries a
//!   `google.rpc.ErrorInfo`, whose message is written for clients), or no
//!   answer at all (the backend went away, or the deadline passed), whose
//!   text names internals.
//! - [`read_retried_once`]: an idempotent read sent again once when the
//!   backend went away under it.

pub mod balance;

use std::time::Duration;

use otus_telemetry::{Metrics, grpc_metrics::GrpcMetrics};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// A gRPC client channel whose calls are counted, timed and traced, and
/// spread over the backend's addresses ([`balance`]); made by [`channel`].
pub type Channel = GrpcMetrics<balance::Balanced>;

/// A [`Channel`] to `url` (its name resolved again every
/// [`balance::RESOLVE_EVERY`]), metered on `metrics`. It connects on first
/// use, so a caller starts (and answers its own health checks) while the
/// backend is still down; calls then fail fast with UNAVAILABLE. Needs a
/// Tokio runtime.
pub fn channel(metrics: &Metrics, url: &str) -> anyhow::Result<Channel> {
    use tower::Layer as _;
    let balanced = balance::Balanced::new(url, balance::RESOLVE_EVERY, balance::dns())?;
    Ok(metrics.grpc_client_layer().layer(balanced))
}

/// What a failed call's status means, by the error contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The service answered with one of its errors: it carries an
    /// `ErrorInfo` with the machine `reason`; the status's message is
    /// written for clients; `retry_after` comes from a `RetryInfo`.
    Service {
        /// `ErrorInfo.reason`, e.g. `USERNAME_TAKEN`.
        reason: String,
        /// `RetryInfo.retry_delay`, if the service sent one.
        retry_after: Option<Duration>,
    },
    /// No answer: the backend went away under the call (connection refused,
    /// closed or reset: a restart, a crash). A read can safely be sent
    /// again.
    WentAway,
    /// No answer within the call's deadline.
    DeadlineExceeded,
    /// Any other status without an `ErrorInfo`: not one of our services'
    /// answers, and its text may name internals.
    Other,
}

impl CallError {
    /// Decodes `s`.
    pub fn of(s: &Status) -> Self {
        let details = s.get_error_details();
        if let Some(info) = details.error_info() {
            return Self::Service {
                reason: info.reason.clone(),
                retry_after: details.retry_info().and_then(|r| r.retry_delay),
            };
        }
        match s.code() {
            // Without our ErrorInfo (our services put one on every error
            // they make, INTERNAL included), these come from the transport.
            Code::Unavailable
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::Aborted => Self::WentAway,
            Code::DeadlineExceeded => Self::DeadlineExceeded,
            _ => Self::Other,
        }
    }
}

/// Runs an idempotent read, and once more if the backend went away under
/// the first attempt ([`CallError::WentAway`]): the channel reconnects, so
/// the second attempt goes out on a new connection (in Kubernetes, possibly
/// to another pod), and a backend's restart costs the client nothing when
/// another instance answers. Writes are never retried (the first attempt
/// may have been applied).
pub async fn read_retried_once<R, F, Fut>(mut call: F) -> Result<R, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, Status>>,
{
    match call().await {
        Err(s) if CallError::of(&s) == CallError::WentAway => {
            tracing::debug!(grpc.code = ?s.code(), grpc.message = %s.message(), "backend went away under a read; retrying once");
            call().await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorDomain;

    const DOMAIN: ErrorDomain = ErrorDomain("test.otus");

    #[test]
    fn what_a_service_writes_decodes_as_its_answer() {
        let s = DOMAIN.retry_later(
            Code::ResourceExhausted,
            "TOO_MANY_ATTEMPTS",
            "slow down",
            Duration::from_secs(7),
        );
        assert_eq!(
            CallError::of(&s),
            CallError::Service {
                reason: "TOO_MANY_ATTEMPTS".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        // A service's own INTERNAL or UNAVAILABLE is its answer too, not the
        // transport's.
        let internal = DOMAIN.internal(&"a bug");
        assert!(
            matches!(CallError::of(&internal), CallError::Service { reason, .. } if reason == "INTERNAL")
        );
        let down = DOMAIN.database("test database", true, &"refused");
        assert!(
            matches!(CallError::of(&down), CallError::Service { reason, .. } if reason == "DATABASE_UNAVAILABLE")
        );
    }

    #[test]
    fn a_call_cut_by_a_restarting_backend_went_away() {
        for s in [
            Status::unavailable("tcp connect error: 10.0.0.7:50051 Connection refused"),
            Status::cancelled("connection closed"),
            Status::unknown("h2 protocol error: connection reset"),
            Status::internal("h2 protocol error: stream no longer needed"),
        ] {
            assert_eq!(CallError::of(&s), CallError::WentAway, "{s:?}");
        }
        assert_eq!(
            CallError::of(&Status::deadline_exceeded("timeout")),
            CallError::DeadlineExceeded
        );
        assert_eq!(CallError::of(&Status::data_loss("odd")), CallError::Other);
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
                    Err(Status::cancelled("connection closed"))
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
            async { Err(Status::unavailable("connection refused")) }
        })
        .await;
        assert_eq!(r.map_err(|s| s.code()), Err(Code::Unavailable));
        assert_eq!(attempts.get(), 2);
        // A backend's own answer (with ErrorInfo), even UNAVAILABLE, is final.
        attempts.set(0);
        let r: Result<(), _> = read_retried_once(|| {
            attempts.set(attempts.get() + 1);
            async { Err(DOMAIN.database("catalog database", true, &"down")) }
        })
        .await;
        assert_eq!(r.map_err(|s| s.code()), Err(Code::Unavailable));
        assert_eq!(attempts.get(), 1);
    }
}
