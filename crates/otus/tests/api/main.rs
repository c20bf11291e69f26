//! Integration tests: the real system (edge + users over real gRPC, real
//! database) started in-process on port 0.
//!
//! Every storage-touching test runs twice: on the embedded SQLite default
//! (always) and on PostgreSQL when `TEST_DATABASE_URL` is set, each on its
//! own fresh database so tests run in parallel. `TEST_LOG=1` shows logs.

#![expect(clippy::expect_used, reason = "a failed expectation is a failed test")]

mod helpers;
mod hostile;
mod layering;

mod auth;
mod catalog;
mod docs;
mod error_bodies;
mod grpc;
mod health;
mod metrics;
mod openapi;
mod users;
