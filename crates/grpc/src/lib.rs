//! What every gRPC service of otus-rs shares.
//!
//! - [`error`]: the error kit. An [`ErrorDomain`] builds every error
//!   `Status` a service returns, each with a `google.rpc.ErrorInfo` (the
//!   machine reason the edge passes to clients) and, for invalid input, a
//!   `google.rpc.BadRequest` listing the fields; [`DbFault::of`] sorts a
//!   database error into the one answer each kind deserves (a unique
//!   violation, the database out of reach, or a bug that is logged and
//!   answered with an opaque INTERNAL).
//!
//! Service crates keep their own error enum (one variant per cause, as the
//! model codebases do) and build their `Status` through this kit, so the
//! shape of an error is decided here once.

pub mod error;

pub use error::{DbFault, ErrorDomain};
