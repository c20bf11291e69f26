//! The users service's errors and their one mapping to gRPC status. A
//! variant's `#[error]` text is the message clients get.

use otus_db::{Unique, is_unavailable};
use otus_grpc::ErrorDomain;
use otus_migration::users_unique;
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
    #[error("you may only access your own profile")]
    NotOwner,
    /// A user asked to delete their profile here, where their sessions
    /// would survive it. → PERMISSION_DENIED, `DELETE_THROUGH_AUTH`.
    #[error(
        "an account is deleted with otus.auth.v1.AuthService/DeleteAccount (REST: DELETE \
         /user/{{id}}), which also ends its sessions"
    )]
    DeleteThroughAuth,
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

/// The unique constraints that make a username taken: the exact name, its
/// normalised key, its confusable skeleton. Any other unique violation is
/// not a taken username (a unique email added later must not answer
/// `USERNAME_TAKEN`): it goes to the kit as a fault.
pub const USERNAME_CONSTRAINTS: [Unique; 3] = [
    Unique {
        name: users_unique::USERNAME,
        table: "users",
        column: "username",
    },
    Unique {
        name: users_unique::USERNAME_KEY,
        table: "users",
        column: "username_key",
    },
    Unique {
        name: users_unique::USERNAME_SKELETON,
        table: "users",
        column: "username_skeleton",
    },
];

impl UsersError {
    /// Sorts a database error: a violation of one of the username's unique
    /// constraints ([`USERNAME_CONSTRAINTS`], matched by name) becomes
    /// `UsernameTaken`, the rest goes to the kit ([`ErrorDomain::database`]).
    pub fn from_db(e: DbErr) -> Self {
        if USERNAME_CONSTRAINTS.iter().any(|c| c.is_violated_by(&e)) {
            Self::UsernameTaken
        } else {
            Self::Db(e)
        }
    }
}

impl From<UsersError> for Status {
    fn from(e: UsersError) -> Self {
        let (code, reason) = match &e {
            UsersError::Invalid(violations) => return invalid(violations),
            UsersError::Db(cause) => {
                return DOMAIN.database("user database", is_unavailable(cause), cause);
            }
            UsersError::BadRequest { reason, .. } => (Code::InvalidArgument, *reason),
            UsersError::Unauthenticated(_) => (Code::Unauthenticated, "UNAUTHENTICATED"),
            UsersError::NotOwner => (Code::PermissionDenied, "NOT_OWNER"),
            UsersError::DeleteThroughAuth => (Code::PermissionDenied, "DELETE_THROUGH_AUTH"),
            UsersError::NotFound(_) | UsersError::UsernameNotFound => {
                (Code::NotFound, "USER_NOT_FOUND")
            }
            UsersError::UsernameTaken => (Code::AlreadyExists, "USERNAME_TAKEN"),
        };
        DOMAIN.status(code, reason, e.to_string())
    }
}

/// INVALID_ARGUMENT with the first violation's reason, every violation's
/// description as the message, and a `BadRequest` detail listing them all.
fn invalid(violations: &[Violation]) -> Status {
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
