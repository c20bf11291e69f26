//! The auth service: owns credentials and sessions, and is the only issuer
//! of identity tokens (`otus-identity`).
//!
//! - [`service`]: `otus.auth.v1.AuthService`. Registration creates the profile
//!   through the users service and then the credential, compensating if the
//!   second step fails; login verifies argon2id hashes (a dummy hash for
//!   unknown users keeps timing equal) under per-username and per-address
//!   limits; authenticate turns a session token into a user id and a
//!   one-minute identity token.
//! - [`store`]: sessions (SQL table or Redis) and login counters (process
//!   memory or Redis).
//! - [`keys`]: every Redis key and login-counter name.
//! - [`password`]: argon2id hashing, token generation, the password policy.
//! - [`error`]: [`AuthError`] and its mapping to `tonic::Status`.
//! - [`entity`]: sea-orm entities for `credentials` and `sessions`.
//! - [`serve`]: the wiring: [`serve::AuthDeps`], [`serve::serve`] and the
//!   expired-session pruner.

pub mod entity;
pub mod error;
pub mod keys;
pub mod password;
pub mod serve;
pub mod service;
pub mod store;

pub use error::AuthError;
pub use serve::serve;
pub use service::{AuthApi, AuthSettings};
pub use store::{LoginLimiter, LoginLimits, SessionStore};

/// Fully-qualified gRPC service name, as used by health checks.
pub use otus_proto::auth::v1::auth_service_server::SERVICE_NAME;
