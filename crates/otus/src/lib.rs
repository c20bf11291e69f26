//! The `otus` binary's library: it parses configuration and composes the
//! services; each service crate owns its own wiring (`otus_users::serve`,
//! `otus_auth::serve`, `otus_catalog::serve`, `otus_edge::router`).
//!
//! - [`config`]: the command line and environment variables.
//! - `deps`: what the services are built from, for the settings
//!   ([`connect`], [`connect_metered`], Redis, the catalog's cache store).
//! - `process`: [`run_process`], what every long-running subcommand does:
//!   the shutdown signal, the process's metrics and admin port, its servers,
//!   then waiting for all of them.
//! - `all_in_one`: [`AllInOne`], every service in one process;
//!   [`run_all_in_one`].
//! - `run`: [`run_edge`], [`run_users`], [`run_auth`], [`run_catalog`].
//! - `jobs`: [`migrate`] and [`seed_products`].
//!
//! `main.rs` only parses arguments and calls one of them. Integration tests
//! start [`AllInOne`] on port 0 against a fresh database.

mod all_in_one;
pub mod config;
mod deps;
mod jobs;
mod process;
mod run;

pub use all_in_one::{AllInOne, run_all_in_one};
pub use deps::{connect, connect_metered};
pub use jobs::{migrate, seed_products};
pub use process::run_process;
pub use run::{run_auth, run_catalog, run_edge, run_users};
