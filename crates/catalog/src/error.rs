//! The catalog service's errors and their one mapping to gRPC status. A
//! variant's `#[error]` text is the message clients get.

use otus_db::is_unavailable;
use otus_grpc::ErrorDomain;
use sea_orm::DbErr;
use tonic::{Code, Status};

/// `google.rpc.ErrorInfo.domain` of every error this service returns.
pub const DOMAIN: ErrorDomain = ErrorDomain("catalog.otus");

/// The retry delay a search gets while the index builds (a build of a
/// million products takes a few seconds).
pub const INDEX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// The database failed: out of reach → UNAVAILABLE,
    /// `DATABASE_UNAVAILABLE` (retryable); anything else → an opaque
    /// INTERNAL. The cause is logged either way.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The in-memory search index is still being built (start-up).
    /// → UNAVAILABLE, `SEARCH_INDEX_NOT_READY`, with a retry delay.
    #[error("the search index is being built; try again in a few seconds")]
    IndexNotReady,
    /// A fault of this service (a search task that panicked). → INTERNAL
    /// with an opaque message; the cause is logged.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<CatalogError> for Status {
    fn from(e: CatalogError) -> Self {
        let (code, reason) = match &e {
            CatalogError::BadRequest { reason, .. } => (Code::InvalidArgument, *reason),
            CatalogError::NotFound(_) => (Code::NotFound, "PRODUCT_NOT_FOUND"),
            CatalogError::Db(cause) => {
                return DOMAIN.database("catalog database", is_unavailable(cause), cause);
            }
            CatalogError::Internal(cause) => return DOMAIN.internal(cause),
            CatalogError::IndexNotReady => {
                return DOMAIN.retry_later(
                    Code::Unavailable,
                    "SEARCH_INDEX_NOT_READY",
                    e.to_string(),
                    INDEX_RETRY_AFTER,
                );
            }
        };
        DOMAIN.status(code, reason, e.to_string())
    }
}
