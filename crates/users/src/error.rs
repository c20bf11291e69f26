//! The users service's errors and their one mapping to gRPC status.

use otus_grpc::{DbFault, ErrorDomain};
use sea_orm::DbErr;
use tonic::{Code, Status};

use crate::validate::Violation;

/// `google.rpc.ErrorInfo.domain` of every error this service returns.
pub const DOMAIN: ErrorDomain = ErrorDomain("users.otus");

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
    /// Any other database failure: out of reach → UNAVAILABLE,
    /// `DATABASE_UNAVAILABLE` (clients may retry); anything else (a bug, an
    /// unexpected answer) → an opaque INTERNAL, cause logged.
    #[error("database: {0}")]
    Db(#[source] DbErr),
}

impl UsersError {
    /// Sorts a database error: a unique violation (the only constraint a
    /// client can trip: the username's key) becomes `UsernameTaken`, the
    /// rest goes to the kit ([`ErrorDomain::database`]).
    pub fn from_db(e: DbErr) -> Self {
        match DbFault::of(&e) {
            DbFault::UniqueViolation => Self::UsernameTaken,
            DbFault::Unavailable | DbFault::Other => Self::Db(e),
        }
    }
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
                DOMAIN.invalid_argument(
                    reason,
                    message,
                    violations.iter().map(|v| (v.field, v.description.clone())),
                )
            }
            UsersError::BadRequest { reason, message } => {
                DOMAIN.status(Code::InvalidArgument, reason, message)
            }
            UsersError::Unauthenticated(msg) => {
                DOMAIN.status(Code::Unauthenticated, "UNAUTHENTICATED", msg)
            }
            UsersError::NotOwner => DOMAIN.status(
                Code::PermissionDenied,
                "NOT_OWNER",
                "you may only access your own profile",
            ),
            UsersError::NotFound(id) => DOMAIN.status(
                Code::NotFound,
                "USER_NOT_FOUND",
                format!("user {id} not found"),
            ),
            UsersError::UsernameNotFound => DOMAIN.status(
                Code::NotFound,
                "USER_NOT_FOUND",
                "no user with that username",
            ),
            UsersError::UsernameTaken => DOMAIN.status(
                Code::AlreadyExists,
                "USERNAME_TAKEN",
                "username is already taken",
            ),
            UsersError::Db(cause) => DOMAIN.database("user database", &cause),
        }
    }
}
