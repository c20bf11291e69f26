//! The users service: owns user profiles (the `users` table) and serves them
//! over gRPC as `otus.users.v1.UsersService`.
//!
//! - [`service`]: the gRPC methods. Each validates its input, talks to the
//!   database through sea-orm, and returns a canonical status on failure.
//! - [`username`]: the uniqueness key that makes look-alike names the same
//!   name, and its back-fill.
//! - [`validate`]: the field rules (username, e-mail, phone…). Enforced here,
//!   by the owner of the data, not at the edge.
//! - [`error`]: [`UsersError`] and its single mapping to `tonic::Status`, with
//!   a `google.rpc.ErrorInfo` reason on every error.
//! - [`entity`]: the sea-orm entity for the table created by `otus-migration`.
//!
//! - [`serve`]: the wiring: [`serve::UsersDeps`] and [`serve::serve`] (the
//!   standard server of `otus-grpc` with this service added).

pub mod entity;
pub mod error;
pub mod serve;
pub mod service;
pub mod username;
pub mod validate;

pub use error::UsersError;
pub use serve::serve;
pub use service::UsersApi;

/// Fully-qualified gRPC service name, as used by health checks.
pub use otus_proto::users::v1::users_service_server::SERVICE_NAME;
