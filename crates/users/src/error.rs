//! The users service's errors and their one mapping to gRPC status.

use sea_orm::{DbErr, SqlErr};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::validate::Violation;

/// `google.rpc.ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "users.otus";

/// Everything that can go wrong in a users RPC.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// A field broke a rule. → INVALID_ARGUMENT, reason of the first violation,
    /// plus a `BadRequest` detail listing all of them.
    #[error("invalid user")]
    Invalid(Vec<Violation>),
    /// Malformed request outside the profile fields (bad id, bad mask).
    /// → INVALID_ARGUMENT with the given reason.
    #[error("{message}")]
    BadRequest {
        reason: &'static str,
        message: String,
    },
    /// No valid identity token. → UNAUTHENTICATED, `UNAUTHENTICATED`.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid identity acting on someone else's profile, or a caller that
    /// may not use this method. → PERMISSION_DENIED, `NOT_OWNER`.
    #[error("permission denied")]
    NotOwner,
    /// No user with that id. → NOT_FOUND, `USER_NOT_FOUND`.
    #[error("user {0} not found")]
    NotFound(i64),
    /// No user with that username (login lookup). → NOT_FOUND, `USER_NOT_FOUND`.
    #[error("no user with that username")]
    UsernameNotFound,
    /// The username belongs to another user. → ALREADY_EXISTS, `USERNAME_TAKEN`.
    #[error("username is already taken")]
    UsernameTaken,
    /// The database cannot be reached (down, pool exhausted, timeout).
    /// → UNAVAILABLE, `DATABASE_UNAVAILABLE`; clients may retry.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// Anything else: a bug or an unexpected database answer. Logged with its
    /// cause; the client sees only an opaque INTERNAL.
    #[error("internal error")]
    Internal(#[source] DbErr),
}

impl UsersError {
    /// Sorts a database error: unique violations (the only constraint a
    /// client can trip) become `UsernameTaken`, connectivity problems
    /// `Unavailable`, the rest `Internal`.
    pub fn from_db(e: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(_)) = e.sql_err() {
            return Self::UsernameTaken;
        }
        if otus_db::is_unavailable(&e) {
            Self::Unavailable(e)
        } else {
            Self::Internal(e)
        }
    }
}

fn status(code: Code, message: impl Into<String>, reason: &str, details: ErrorDetails) -> Status {
    let mut details = details;
    details.set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

impl From<UsersError> for Status {
    fn from(e: UsersError) -> Self {
        match e {
            UsersError::Invalid(violations) => {
                let reason = violations.first().map_or("INVALID_ARGUMENT", |v| v.reason);
                let message = violations
                    .iter()
                    .map(|v| v.description.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut details = ErrorDetails::new();
                for v in &violations {
                    details.add_bad_request_violation(v.field, v.description.clone());
                }
                status(Code::InvalidArgument, message, reason, details)
            }
            UsersError::BadRequest { reason, message } => {
                status(Code::InvalidArgument, message, reason, ErrorDetails::new())
            }
            UsersError::Unauthenticated(msg) => status(
                Code::Unauthenticated,
                msg,
                "UNAUTHENTICATED",
                ErrorDetails::new(),
            ),
            UsersError::NotOwner => status(
                Code::PermissionDenied,
                "you may only access your own profile",
                "NOT_OWNER",
                ErrorDetails::new(),
            ),
            UsersError::NotFound(id) => status(
                Code::NotFound,
                format!("user {id} not found"),
                "USER_NOT_FOUND",
                ErrorDetails::new(),
            ),
            UsersError::UsernameNotFound => status(
                Code::NotFound,
                "no user with that username",
                "USER_NOT_FOUND",
                ErrorDetails::new(),
            ),
            UsersError::UsernameTaken => status(
                Code::AlreadyExists,
                "username is already taken",
                "USERNAME_TAKEN",
                ErrorDetails::new(),
            ),
            UsersError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                status(
                    Code::Unavailable,
                    "the user database is unavailable; try again later",
                    "DATABASE_UNAVAILABLE",
                    ErrorDetails::new(),
                )
            }
            UsersError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error in users service");
                status(
                    Code::Internal,
                    "internal error",
                    "INTERNAL",
                    ErrorDetails::new(),
                )
            }
        }
    }
}
