//! Command line and environment: every setting of every subcommand, each with
//! its environment variable. `otus <subcommand> --help` prints them all.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand};
use otus_migration::db::{DEFAULT_DATABASE_URL, PoolSettings};
use otus_telemetry::LogFormat;

/// otus-rs: the Otus "Software Architect" homework system.
#[derive(Debug, Parser)]
#[command(name = "otus", version, about, long_about = None)]
pub struct Cli {
    /// Log line format: `text` (local) or `json` (Kubernetes). Filter with RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// What to run; without one, `all-in-one`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process (edge + users, migrations applied first):
    /// the local mode. Uses an embedded SQLite file unless DATABASE_URL is set.
    AllInOne(AllInOneArgs),
    /// The REST edge only; talks to the services over gRPC.
    Edge(EdgeArgs),
    /// The users gRPC service only.
    Users(UsersArgs),
    /// Apply pending database migrations and exit (a Kubernetes Job).
    Migrate(DbArgs),
}

impl AllInOneArgs {
    /// The all-in-one settings from the environment and defaults alone (what
    /// `otus` with no subcommand runs). Exits with clap's message if an
    /// environment variable holds an invalid value.
    pub fn from_env() -> Self {
        use clap::FromArgMatches as _;
        let matches = <Self as Args>::augment_args(clap::Command::new("all-in-one"))
            .get_matches_from(["all-in-one"]);
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// Database settings.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// `postgres://user:pass@host/db` or `sqlite://path?mode=rwc`. Unset: the
    /// embedded SQLite file `otus.sqlite` in the working directory.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// Maximum pooled connections per process.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// Milliseconds a query waits for a connection before failing with 503.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub database_acquire_timeout_ms: u64,
}

impl DbArgs {
    /// Pool settings from these arguments.
    pub fn pool(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.database_max_connections,
            acquire_timeout: Duration::from_millis(self.database_acquire_timeout_ms),
        }
    }
}

/// How the edge treats requests (shared by `edge` and `all-in-one`).
#[derive(Debug, Clone, Args)]
pub struct EdgeTuning {
    /// Deadline of every gRPC call the edge makes, in milliseconds.
    #[arg(long, env = "GRPC_DEADLINE_MS", default_value_t = 5000)]
    pub grpc_deadline_ms: u64,
    /// Upper bound on a whole HTTP request, in milliseconds (504 beyond).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Largest accepted request body, in bytes (413 beyond).
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
}

impl EdgeTuning {
    /// The edge configuration for a users service at `users_url`.
    pub fn edge_config(&self, users_url: String) -> otus_edge::EdgeConfig {
        otus_edge::EdgeConfig {
            users_url,
            grpc_deadline: Duration::from_millis(self.grpc_deadline_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            body_limit: self.body_limit_bytes,
        }
    }
}

/// `otus all-in-one`.
#[derive(Debug, Clone, Args)]
pub struct AllInOneArgs {
    /// Public HTTP (REST) address.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8000")]
    pub http_addr: SocketAddr,
    /// Admin address serving /metrics (never routed by the ingress).
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:9000")]
    pub admin_addr: SocketAddr,
    /// Users gRPC address (loopback by default: for grpcurl / buf curl).
    #[arg(long, env = "USERS_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub users_grpc_addr: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub edge: EdgeTuning,
}

/// `otus edge`.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Public HTTP (REST) address.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8000")]
    pub http_addr: SocketAddr,
    /// Admin address serving /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:9000")]
    pub admin_addr: SocketAddr,
    /// Where the users service answers gRPC.
    #[arg(long, env = "USERS_GRPC_URL", default_value = "http://127.0.0.1:50051")]
    pub users_grpc_url: String,
    #[command(flatten)]
    pub tuning: EdgeTuning,
}

/// `otus users`.
#[derive(Debug, Clone, Args)]
pub struct UsersArgs {
    /// gRPC listen address.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,
    /// Admin address serving /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:9001")]
    pub admin_addr: SocketAddr,
    /// Apply pending migrations before serving (off in Kubernetes, where a
    /// Job runs `otus migrate` once per release).
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = false)]
    pub migrate_on_start: bool,
    #[command(flatten)]
    pub db: DbArgs,
}
