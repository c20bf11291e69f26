//! The auth service's errors and their one mapping to gRPC status.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::store::StoreError;

/// `google.rpc.ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "auth.otus";

impl From<crate::password::HashError> for AuthError {
    fn from(e: crate::password::HashError) -> Self {
        match e {
            crate::password::HashError::Busy => Self::Busy,
            crate::password::HashError::Failed(cause) => Self::Internal(cause),
        }
    }
}

/// Everything that can go wrong in an auth RPC.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The password breaks the policy. → INVALID_ARGUMENT, `INVALID_PASSWORD`.
    #[error("{0}")]
    InvalidPassword(String),
    /// Unknown user or wrong password (deliberately indistinguishable).
    /// → UNAUTHENTICATED, `INVALID_CREDENTIALS`.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Missing, unknown, expired or revoked session. → UNAUTHENTICATED,
    /// `INVALID_SESSION`.
    #[error("invalid session")]
    InvalidSession,
    /// A valid session acting on another user's account. → PERMISSION_DENIED,
    /// `NOT_OWNER`.
    #[error("not the owner")]
    NotOwner,
    /// Too many login attempts. → RESOURCE_EXHAUSTED, `TOO_MANY_ATTEMPTS`,
    /// with a RetryInfo detail.
    #[error("too many login attempts")]
    TooManyAttempts { retry_after: Duration },
    /// Every password-hashing slot stayed busy for the whole wait.
    /// → UNAVAILABLE, `AUTH_BUSY`, with a RetryInfo detail.
    #[error("password hashing at capacity")]
    Busy,
    /// The session store or database failed. → UNAVAILABLE,
    /// `AUTH_STORE_UNAVAILABLE`.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A bug (e.g. hashing failed). → INTERNAL, cause logged only.
    #[error("internal: {0}")]
    Internal(String),
    /// An error from the users service, passed on unchanged (it carries its
    /// own ErrorInfo, e.g. USERNAME_TAKEN).
    #[error("users service: {0}")]
    Users(Status),
}

fn status(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    mut details: ErrorDetails,
) -> Status {
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidPassword(msg) => {
                let mut d = ErrorDetails::new();
                d.add_bad_request_violation("password", msg.clone());
                status(Code::InvalidArgument, msg, "INVALID_PASSWORD", d)
            }
            AuthError::InvalidCredentials => status(
                Code::Unauthenticated,
                "invalid username or password",
                "INVALID_CREDENTIALS",
                ErrorDetails::new(),
            ),
            AuthError::InvalidSession => status(
                Code::Unauthenticated,
                "missing, invalid or expired credentials; log in again",
                "INVALID_SESSION",
                ErrorDetails::new(),
            ),
            AuthError::NotOwner => status(
                Code::PermissionDenied,
                "you may only act on your own account",
                "NOT_OWNER",
                ErrorDetails::new(),
            ),
            AuthError::TooManyAttempts { retry_after } => status(
                Code::ResourceExhausted,
                format!(
                    "too many login attempts; try again in {} s",
                    retry_after.as_secs()
                ),
                "TOO_MANY_ATTEMPTS",
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            AuthError::Busy => status(
                Code::Unavailable,
                "the service is at its capacity for password checks; try again in a second",
                "AUTH_BUSY",
                ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
            ),
            AuthError::Store(cause) => {
                tracing::warn!(error = %cause, "auth store unavailable");
                status(
                    Code::Unavailable,
                    "the session store is unavailable; try again later",
                    "AUTH_STORE_UNAVAILABLE",
                    ErrorDetails::new(),
                )
            }
            AuthError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error in auth service");
                status(
                    Code::Internal,
                    "internal error",
                    "INTERNAL",
                    ErrorDetails::new(),
                )
            }
            AuthError::Users(s) => s,
        }
    }
}
