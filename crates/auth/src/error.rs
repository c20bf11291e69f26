//! The auth service's errors and their one mapping to gRPC status. A
//! variant's `#[error]` text is the message clients get (for the ones that
//! reach clients).

use std::time::Duration;

use otus_db::is_unavailable;
use otus_grpc::ErrorDomain;
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
    #[error("missing, invalid or expired credentials; log in again")]
    InvalidSession,
    /// A valid session acting on another user's account. → PERMISSION_DENIED,
    /// `NOT_OWNER`.
    #[error("you may only act on your own account")]
    NotOwner,
    /// Too many login attempts. → RESOURCE_EXHAUSTED, `TOO_MANY_ATTEMPTS`,
    /// with a RetryInfo detail.
    #[error("too many login attempts; try again in {} s", retry_after.as_secs())]
    TooManyAttempts { retry_after: Duration },
    /// Every password-hashing slot stayed busy for the whole wait.
    /// → UNAVAILABLE, `AUTH_BUSY`, with a RetryInfo detail.
    #[error("the service is at its capacity for password checks; try again in a second")]
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
        let (code, reason) = match &e {
            AuthError::InvalidPassword(msg) => {
                return DOMAIN.invalid_argument(
                    "INVALID_PASSWORD",
                    msg,
                    [("password", msg.clone())],
                );
            }
            AuthError::InvalidCredentials => (Code::Unauthenticated, "INVALID_CREDENTIALS"),
            AuthError::InvalidSession => (Code::Unauthenticated, "INVALID_SESSION"),
            AuthError::NotOwner => (Code::PermissionDenied, "NOT_OWNER"),
            AuthError::TooManyAttempts { retry_after } => {
                let code = Code::ResourceExhausted;
                return DOMAIN.retry_later(code, "TOO_MANY_ATTEMPTS", e.to_string(), *retry_after);
            }
            AuthError::Busy => {
                let retry_after = Duration::from_secs(1);
                return DOMAIN.retry_later(
                    Code::Unavailable,
                    "AUTH_BUSY",
                    e.to_string(),
                    retry_after,
                );
            }
            AuthError::Store(cause) => {
                let out_of_reach = match cause {
                    StoreError::Db(db) => is_unavailable(db),
                    // Every Redis error is one of reaching it (refused,
                    // timed out, dropped), as it was always answered.
                    StoreError::Redis(_) => true,
                };
                let reason = "AUTH_STORE_UNAVAILABLE";
                return DOMAIN.store_failure(reason, "session store", out_of_reach, cause);
            }
            AuthError::Db(cause) => {
                return DOMAIN.database("auth database", is_unavailable(cause), cause);
            }
            AuthError::Internal(cause) => return DOMAIN.internal(cause),
            // The users service's own answer (with its ErrorInfo) goes on as
            // it is (a clone on the error path only).
            AuthError::Users(s) => return s.clone(),
        };
        DOMAIN.status(code, reason, e.to_string())
    }
}
