//! The catalog service's errors and their one mapping to gRPC status.

use std::collections::HashMap;

use sea_orm::DbErr;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// `google.rpc.ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "catalog.otus";

/// Everything that can go wrong in a catalog RPC.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A bad search parameter. → INVALID_ARGUMENT with the reason.
    #[error("{message}")]
    BadRequest {
        reason: &'static str,
        message: String,
    },
    /// No such product. → NOT_FOUND, `PRODUCT_NOT_FOUND`.
    #[error("product {0} not found")]
    NotFound(i64),
    /// The database failed. → UNAVAILABLE, `DATABASE_UNAVAILABLE` (logged).
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// A fault of this service (a search task that panicked). → INTERNAL
    /// with an opaque message; the cause is logged.
    #[error("internal: {0}")]
    Internal(String),
}

fn status(code: Code, message: impl Into<String>, reason: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

impl From<CatalogError> for Status {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::BadRequest { reason, message } => {
                status(Code::InvalidArgument, message, reason)
            }
            CatalogError::NotFound(id) => status(
                Code::NotFound,
                format!("product {id} not found"),
                "PRODUCT_NOT_FOUND",
            ),
            CatalogError::Db(cause) => {
                tracing::warn!(error = %cause, "catalog database error");
                status(
                    Code::Unavailable,
                    "the catalog database is unavailable; try again later",
                    "DATABASE_UNAVAILABLE",
                )
            }
            CatalogError::Internal(cause) => {
                tracing::error!(error = %cause, "catalog internal error");
                status(Code::Internal, "internal error", "INTERNAL")
            }
        }
    }
}
