//! The system's gRPC, both ends: what every service and every caller shares.
//!
//! - [`error`]: the error kit. An [`ErrorDomain`] builds every error
//!   `Status` a service returns, each with a `google.rpc.ErrorInfo` (the
//!   machine reason the edge passes to clients) and, for invalid input, a
//!   `google.rpc.BadRequest` listing the fields; a store's failure is
//!   UNAVAILABLE when out of reach and an opaque INTERNAL (cause logged)
//!   otherwise. (Which database errors are which is `otus_db`'s to say.)
//! - [`client`]: the other end of the contract: the metered, balanced
//!   [`client::Channel`], [`client::CallError`] decoding a failed call
//!   (the service's answer, or none), and [`client::read_retried_once`].
//! - [`server`]: the standard server: [`server::service_router`] (health
//!   following the service's [`server::Readiness`] probe, reflection,
//!   metrics, keep-alive), then [`BoundServer::bind`] and
//!   [`BoundServer::run`], on a [`Host`] (address, the process's metrics and
//!   shutdown token).
//! - [`listener`]: binding a gRPC port; a deadline for a new connection's
//!   first bytes.
//!
//! Service crates keep their own error enum (one variant per cause, as the
//! model codebases do) and their own `serve` (what they are built from);
//! the shape of an error and of a server is decided here once.

pub mod client;
pub mod error;
pub mod listener;
pub mod server;

pub use error::ErrorDomain;

/// Deadline of a call from one process of the system to another (the edge
/// to every service, auth to users) unless `GRPC_DEADLINE_MS` says otherwise.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
pub use server::{BoundServer, Host, Readiness, service_router};
