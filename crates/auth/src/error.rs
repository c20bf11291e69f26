//! The auth service's errors and their one mapping to gRPC status.

use std::time::Duration;

use otus_grpc::{DbFault, ErrorDomain};
use sea_orm::DbErr;
use tonic::{Code, Status};

use crate::store::StoreError;

/// `google.rpc.ErrorInfo.domain` of every error this service returns.
pub const DOMAIN: ErrorDomain = ErrorDomain("auth.otus");

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
    /// The session store (Redis, or the `sessions` table) or the login
    /// counters failed. Out of reach → UNAVAILABLE, `AUTH_STORE_UNAVAILABLE`;
    /// a database fault of another kind → an opaque INTERNAL.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The credentials table failed. Out of reach → UNAVAILABLE,
    /// `DATABASE_UNAVAILABLE`; anything else → an opaque INTERNAL.
    #[error("database: {0}")]
    Db(#[source] DbErr),
    /// A bug (e.g. hashing failed). → INTERNAL, cause logged only.
    #[error("internal: {0}")]
    Internal(String),
    /// An error from the users service, passed on unchanged (it carries its
    /// own ErrorInfo, e.g. USERNAME_TAKEN).
    #[error("users service: {0}")]
    Users(Status),
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidPassword(msg) => {
                DOMAIN.invalid_argument("INVALID_PASSWORD", msg.clone(), [("password", msg)])
            }
            AuthError::InvalidCredentials => DOMAIN.status(
                Code::Unauthenticated,
                "INVALID_CREDENTIALS",
                "invalid username or password",
            ),
            AuthError::InvalidSession => DOMAIN.status(
                Code::Unauthenticated,
                "INVALID_SESSION",
                "missing, invalid or expired credentials; log in again",
            ),
            AuthError::NotOwner => DOMAIN.status(
                Code::PermissionDenied,
                "NOT_OWNER",
                "you may only act on your own account",
            ),
            AuthError::TooManyAttempts { retry_after } => DOMAIN.retry_later(
                Code::ResourceExhausted,
                "TOO_MANY_ATTEMPTS",
                format!(
                    "too many login attempts; try again in {} s",
                    retry_after.as_secs()
                ),
                retry_after,
            ),
            AuthError::Busy => DOMAIN.retry_later(
                Code::Unavailable,
                "AUTH_BUSY",
                "the service is at its capacity for password checks; try again in a second",
                Duration::from_secs(1),
            ),
            AuthError::Store(StoreError::Db(cause)) if DbFault::of(&cause) == DbFault::Other => {
                DOMAIN.internal(&cause)
            }
            AuthError::Store(cause) => {
                DOMAIN.unavailable("AUTH_STORE_UNAVAILABLE", "session store", &cause)
            }
            AuthError::Db(cause) => DOMAIN.database("auth database", &cause),
            AuthError::Internal(cause) => DOMAIN.internal(&cause),
            AuthError::Users(s) => s,
        }
    }
}
