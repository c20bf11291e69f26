//! What every gRPC service of otus-rs shares.
//!
//! - [`error`]: the error kit. An [`ErrorDomain`] builds every error
//!   `Status` a service returns, each with a `google.rpc.ErrorInfo` (the
//!   machine reason the edge passes to clients) and, for invalid input, a
//!   `google.rpc.BadRequest` listing the fields; [`DbFault::of`] sorts a
//!   database error into the one answer each kind deserves (a unique
//!   violation, the database out of reach, or a bug that is logged and
//!   answered with an opaque INTERNAL).
//! - [`server`]: the standard server: [`server::service_router`] (health
//!   following the service's [`server::Readiness`], reflection, metrics,
//!   keep-alive), then [`BoundServer::bind`] and [`BoundServer::run`], on a
//!   [`Host`] (address, the process's metrics and shutdown token).
//! - [`listener`]: binding a gRPC port; a deadline for a new connection's
//!   first bytes.
//!
//! Service crates keep their own error enum (one variant per cause, as the
//! model codebases do) and their own `serve` (what they are built from);
//! the shape of an error and of a server is decided here once.

pub mod error;
pub mod listener;
pub mod server;

pub use error::{DbFault, ErrorDomain};

/// Deadline of a call from one process of the system to another (the edge
/// to every service, auth to users) unless `GRPC_DEADLINE_MS` says otherwise.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
pub use server::{BoundServer, Host, Readiness, service_router};
