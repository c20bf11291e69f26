//! Command line and environment: every setting of every subcommand, each with
//! its environment variable. `otus <subcommand> --help` prints them all.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand};
use otus_catalog::search::SearchMode;
use otus_db::{DEFAULT_DATABASE_URL, PoolSettings};
use otus_telemetry::LogFormat;

/// The auth service's defaults, which its variables' defaults are.
const AUTH: otus_auth::AuthSettings = otus_auth::AuthSettings::DEFAULT;
/// The search cache's defaults.
const CACHE: otus_catalog::CacheSettings = otus_catalog::CacheSettings::DEFAULT;

/// The edge's defaults (backends on loopback at their default ports).
fn edge() -> otus_edge::EdgeConfig {
    otus_edge::EdgeConfig::default()
}

/// The ports each process listens on unless told otherwise; the gRPC ones
/// are the services' own (`otus_proto::<service>::GRPC_PORT`), which every
/// caller's default URL uses too.
mod ports {
    use otus_proto::{auth, catalog, users};
    pub const HTTP: u16 = otus_edge::HTTP_PORT;
    pub const USERS: u16 = users::GRPC_PORT;
    pub const AUTH: u16 = auth::GRPC_PORT;
    pub const CATALOG: u16 = catalog::GRPC_PORT;
    /// `/metrics` of the edge (and of all-in-one), users, auth, catalog.
    pub const ADMIN_EDGE: u16 = 9000;
    pub const ADMIN_USERS: u16 = 9001;
    pub const ADMIN_AUTH: u16 = 9002;
    pub const ADMIN_CATALOG: u16 = 9003;
}

/// `port` on every interface (what a pod listens on).
fn any(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

/// `port` on loopback only (all-in-one's gRPC ports: for grpcurl, not the
/// network).
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A default duration as the whole milliseconds a `*_MS` variable holds.
const fn millis(d: Duration) -> u64 {
    // Every default is far below u64::MAX milliseconds.
    d.as_millis() as u64
}

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
    /// Everything in one process (edge + users + auth + catalog, migrations
    /// applied first): the local mode. Uses an embedded SQLite file unless
    /// DATABASE_URL is set.
    AllInOne(AllInOneArgs),
    /// The REST edge only; talks to the services over gRPC.
    Edge(EdgeArgs),
    /// The users gRPC service only.
    Users(UsersArgs),
    /// The auth gRPC service only.
    Auth(AuthArgs),
    /// The catalog gRPC service only.
    Catalog(CatalogArgs),
    /// Fill the catalog with generated products (migrates first).
    SeedProducts(SeedArgs),
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

    /// The all-in-one settings from `args` (as they would follow `otus
    /// all-in-one` on the command line) and the defaults, with the
    /// environment ignored: how tests build settings, the way the binary
    /// does, without picking up a developer's `DATABASE_URL` or `REDIS_URL`.
    pub fn parse_ignoring_env<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches as _;
        let command = <Self as Args>::augment_args(clap::Command::new("all-in-one"))
            .mut_args(|a| a.env(None));
        let argv = std::iter::once(std::ffi::OsString::from("all-in-one"))
            .chain(args.into_iter().map(Into::into));
        Self::from_arg_matches(&command.try_get_matches_from(argv)?)
    }
}

/// Database settings.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// `postgres://user:pass@host/db` or `sqlite://path?mode=rwc`. Unset: the
    /// embedded SQLite file `otus.sqlite` in the working directory.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// Maximum pooled connections per process (PostgreSQL: plus one for the circuit breaker's health check).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = PoolSettings::DEFAULT.max_connections)]
    pub database_max_connections: u32,
    /// Milliseconds a query waits for a connection before failing with 503.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = millis(PoolSettings::DEFAULT.acquire_timeout))]
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

/// The secret shared by the auth service (which signs identity tokens) and
/// the services that verify them.
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// At least 32 bytes; keep it in a Kubernetes Secret. Optional only for
    /// `all-in-one`, which makes a random one per start.
    #[arg(long, env = "IDENTITY_TOKEN_SECRET", hide_env_values = true)]
    pub identity_token_secret: Option<String>,
}

impl IdentityArgs {
    /// The key, or an error saying how to configure it.
    pub fn key(&self) -> anyhow::Result<otus_identity::IdentityKey> {
        let secret = self.identity_token_secret.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "IDENTITY_TOKEN_SECRET is not set: give auth and users the same secret of at least {} bytes (e.g. `openssl rand -hex 32`)",
                otus_identity::MIN_SECRET_LEN
            )
        })?;
        Ok(otus_identity::IdentityKey::new(secret.as_bytes())?)
    }

    /// The key, or a random one when unset (one process: all-in-one).
    pub fn key_or_random(&self) -> anyhow::Result<otus_identity::IdentityKey> {
        if self.identity_token_secret.is_some() {
            return self.key();
        }
        Ok(otus_identity::IdentityKey::random()?)
    }
}

/// Redis (shared by `auth`, `catalog` and `all-in-one`).
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// `redis://host:6379/0`: sessions, login counters and the search cache
    /// in Redis (shared by replicas). Unset: sessions in the database,
    /// counters and cache in process memory. Sessions refuse a Redis that
    /// evicts (see `SESSION_REDIS_URL`).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this process writes.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = otus_db::redis::DEFAULT_KEY_PREFIX)]
    pub redis_key_prefix: String,
}

/// Where sessions and login counters live (shared by `auth` and
/// `all-in-one`).
#[derive(Debug, Clone, Args)]
pub struct SessionRedisArgs {
    /// `redis://host:6379/0` for sessions and login counters only, when the
    /// search cache's Redis (`REDIS_URL`) evicts or is bounded. It must never
    /// evict (`maxmemory-policy noeviction`, or no `maxmemory`): the process
    /// refuses to start otherwise, so that cache traffic can never log users
    /// out. Unset: `REDIS_URL`.
    #[arg(long, env = "SESSION_REDIS_URL", hide_env_values = true)]
    pub session_redis_url: Option<String>,
}

/// Search cache settings (shared by `catalog` and `all-in-one`).
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Cache search answers: 1/true/on or 0/false/off.
    #[arg(long, env = "CACHE_ENABLED", default_value_t = CACHE.enabled, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub cache_enabled: bool,
    /// How long a cached answer is served, in seconds (the consistency window).
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = CACHE.ttl.as_secs())]
    pub cache_ttl_secs: u64,
    /// Most answers the in-process cache holds, within 64 MiB in all (Redis:
    /// see its maxmemory).
    #[arg(long, env = "CACHE_MAX_ENTRIES", default_value_t = CACHE.max_entries)]
    pub cache_max_entries: u64,
    /// Benchmarks only: search with the unindexed `name ILIKE '%word%'` of the
    /// original solution (PostgreSQL), to measure the index against it.
    #[arg(long, env = "CATALOG_SEARCH_BASELINE",
          default_value_t = SearchMode::default() == SearchMode::UnindexedBaseline,
          action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub catalog_search_baseline: bool,
    /// Answer searches from the in-memory tantivy index (stemming, typos,
    /// prefix, relevance, facets), kept in step with the products table
    /// (false: the database's trigram index answers every search with the old
    /// substring rules; a benchmark baseline).
    #[arg(long, env = "CATALOG_SEARCH_INDEX", default_value_t = SearchMode::default().in_memory_index(),
          action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub catalog_search_index: bool,
}

impl CacheArgs {
    /// The search cache's settings (a TTL of at least a second).
    pub fn settings(&self) -> otus_catalog::CacheSettings {
        otus_catalog::CacheSettings {
            enabled: self.cache_enabled,
            ttl: Duration::from_secs(self.cache_ttl_secs.max(1)),
            max_entries: self.cache_max_entries,
        }
    }
}

/// The auth service's policy: session lifetime, login limits, the bound on
/// password hashing (shared by `auth` and `all-in-one`).
#[derive(Debug, Clone, Args)]
pub struct AuthPolicyArgs {
    /// Session lifetime in seconds.
    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = AUTH.session_ttl.as_secs())]
    pub session_ttl_secs: u64,
    /// Failed logins per username per window before 429.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_USERNAME", default_value_t = AUTH.limits.max_failures_per_username)]
    pub login_max_failures_per_username: u32,
    /// Login attempts per client address per window before 429.
    #[arg(long, env = "LOGIN_MAX_ATTEMPTS_PER_ADDRESS", default_value_t = AUTH.limits.max_attempts_per_address)]
    pub login_max_attempts_per_address: u32,
    /// The login counting window, in seconds.
    #[arg(long, env = "LOGIN_WINDOW_SECS", default_value_t = AUTH.limits.window.as_secs())]
    pub login_window_secs: u64,
    /// Most argon2id password hashes computed at once; each holds 19 MiB, so
    /// this bounds the memory that registrations and logins can take.
    #[arg(long, env = "ARGON2_MAX_CONCURRENT", default_value_t = AUTH.hash_max_concurrent)]
    pub argon2_max_concurrent: usize,
    /// Milliseconds a registration or login waits for a free hashing slot
    /// before 503 `AUTH_BUSY` with `Retry-After`.
    #[arg(long, env = "ARGON2_MAX_WAIT_MS", default_value_t = millis(AUTH.hash_max_wait))]
    pub argon2_max_wait_ms: u64,
}

impl AuthPolicyArgs {
    /// The auth service settings.
    pub fn settings(&self, users_deadline: Duration) -> otus_auth::AuthSettings {
        otus_auth::AuthSettings {
            session_ttl: Duration::from_secs(self.session_ttl_secs.max(1)),
            limits: otus_auth::LoginLimits {
                max_failures_per_username: self.login_max_failures_per_username,
                max_attempts_per_address: self.login_max_attempts_per_address,
                window: Duration::from_secs(self.login_window_secs.max(1)),
            },
            users_deadline,
            hash_max_concurrent: self.argon2_max_concurrent.max(1),
            hash_max_wait: Duration::from_millis(self.argon2_max_wait_ms),
        }
    }
}

/// How the edge treats HTTP requests: deadlines, body and connection bounds,
/// cookie and proxy trust (shared by `edge` and `all-in-one`).
#[derive(Debug, Clone, Args)]
pub struct EdgeHttpArgs {
    /// Deadline of every outgoing gRPC call, in milliseconds.
    #[arg(long, env = "GRPC_DEADLINE_MS", default_value_t = millis(edge().grpc_deadline))]
    pub grpc_deadline_ms: u64,
    /// Upper bound on a whole HTTP request, in milliseconds (504 beyond).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = millis(edge().request_timeout))]
    pub request_timeout_ms: u64,
    /// Largest accepted request body, in bytes (413 beyond, at once when
    /// Content-Length declares it).
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = edge().body_limit)]
    pub body_limit_bytes: usize,
    /// Milliseconds a client has to send a request body (408 beyond).
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = millis(edge().body_read_timeout))]
    pub body_read_timeout_ms: u64,
    /// Milliseconds a client has to send a request's headers, from the
    /// connection's start or the request's first byte (ingress-nginx sends
    /// them at once).
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_MS",
          default_value_t = millis(otus_edge::ListenerLimits::DEFAULT.header_read_timeout))]
    pub http_header_read_timeout_ms: u64,
    /// Milliseconds a keep-alive connection may stay idle between requests.
    /// Above ingress-nginx's upstream keep-alive timeout (60 s), so nginx
    /// never reuses a connection the edge is closing.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_MS",
          default_value_t = millis(otus_edge::ListenerLimits::DEFAULT.idle_timeout))]
    pub http_idle_timeout_ms: u64,
    /// Milliseconds a response write may make no progress (a client that
    /// does not read) before the connection is closed.
    #[arg(long, env = "HTTP_WRITE_TIMEOUT_MS",
          default_value_t = millis(otus_edge::ListenerLimits::DEFAULT.write_timeout))]
    pub http_write_timeout_ms: u64,
    /// Most open HTTP connections per process. At the cap a new client closes
    /// the longest-idle connection; while every one is serving a request,
    /// new ones wait in the accept backlog.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS",
          default_value_t = otus_edge::ListenerLimits::DEFAULT.max_connections)]
    pub http_max_connections: usize,
    /// Mark the session cookie `Secure` (serve over HTTPS).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = edge().cookie_secure)]
    pub cookie_secure: bool,
    /// Comma-separated addresses or networks (`10.244.0.0/16`) of the proxies
    /// in front of the edge (the ingress controller): from them, and only
    /// them, `X-Real-IP` gives the client address (for the per-address login
    /// limit and the logs). Empty: the TCP peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = otus_edge::parse_trusted_proxy)]
    pub trusted_proxies: Vec<otus_edge::IpNet>,
}

impl EdgeHttpArgs {
    /// The edge configuration for the given backends.
    pub fn edge_config(
        &self,
        users_url: String,
        auth_url: String,
        catalog_url: String,
    ) -> anyhow::Result<otus_edge::EdgeConfig> {
        // Renamed: an old setting must not silently stop meaning anything.
        if std::env::var_os("TRUST_PROXY_HEADERS").is_some() {
            anyhow::bail!(
                "TRUST_PROXY_HEADERS is gone: X-Real-IP is now trusted only from the proxies \
                 named in TRUSTED_PROXIES (e.g. TRUSTED_PROXIES=10.244.0.0/16, the ingress \
                 controller's pod network); unset TRUST_PROXY_HEADERS"
            );
        }
        Ok(otus_edge::EdgeConfig {
            users_url,
            auth_url,
            catalog_url,
            cookie_secure: self.cookie_secure,
            trusted_proxies: self.trusted_proxies.clone(),
            grpc_deadline: Duration::from_millis(self.grpc_deadline_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            body_limit: self.body_limit_bytes,
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
        })
    }

    /// The public listener's bounds.
    pub fn listener_limits(&self) -> otus_edge::ListenerLimits {
        otus_edge::ListenerLimits {
            header_read_timeout: Duration::from_millis(self.http_header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms.max(1)),
            write_timeout: Duration::from_millis(self.http_write_timeout_ms.max(1)),
            max_connections: self.http_max_connections,
        }
    }
}

/// `otus all-in-one`.
#[derive(Debug, Clone, Args)]
pub struct AllInOneArgs {
    /// Public HTTP (REST) address.
    #[arg(long, env = "HTTP_ADDR", default_value_t = any(ports::HTTP))]
    pub http_addr: SocketAddr,
    /// Admin address serving /metrics (never routed by the ingress).
    #[arg(long, env = "ADMIN_ADDR", default_value_t = any(ports::ADMIN_EDGE))]
    pub admin_addr: SocketAddr,
    /// Users gRPC address (loopback by default: for grpcurl / buf curl).
    #[arg(long, env = "USERS_GRPC_ADDR", default_value_t = loopback(ports::USERS))]
    pub users_grpc_addr: SocketAddr,
    /// Auth gRPC address (loopback by default).
    #[arg(long, env = "AUTH_GRPC_ADDR", default_value_t = loopback(ports::AUTH))]
    pub auth_grpc_addr: SocketAddr,
    /// Catalog gRPC address (loopback by default).
    #[arg(long, env = "CATALOG_GRPC_ADDR", default_value_t = loopback(ports::CATALOG))]
    pub catalog_grpc_addr: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub edge: EdgeHttpArgs,
    #[command(flatten)]
    pub auth: AuthPolicyArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub session_redis: SessionRedisArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// `otus edge`.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Public HTTP (REST) address.
    #[arg(long, env = "HTTP_ADDR", default_value_t = any(ports::HTTP))]
    pub http_addr: SocketAddr,
    /// Admin address serving /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value_t = any(ports::ADMIN_EDGE))]
    pub admin_addr: SocketAddr,
    /// Where the users service answers gRPC. A host name is resolved every 5 s and calls go
    /// round robin over its addresses (with a headless Service: every ready pod).
    #[arg(long, env = "USERS_GRPC_URL", default_value_t = edge().users_url)]
    pub users_grpc_url: String,
    /// Where the auth service answers gRPC. A host name is resolved every 5 s and calls go
    /// round robin over its addresses (with a headless Service: every ready pod).
    #[arg(long, env = "AUTH_GRPC_URL", default_value_t = edge().auth_url)]
    pub auth_grpc_url: String,
    /// Where the catalog service answers gRPC.
    #[arg(long, env = "CATALOG_GRPC_URL", default_value_t = edge().catalog_url)]
    pub catalog_grpc_url: String,
    #[command(flatten)]
    pub http: EdgeHttpArgs,
}

/// `otus users`.
#[derive(Debug, Clone, Args)]
pub struct UsersArgs {
    /// gRPC listen address.
    #[arg(long, env = "GRPC_ADDR", default_value_t = any(ports::USERS))]
    pub grpc_addr: SocketAddr,
    /// Admin address serving /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value_t = any(ports::ADMIN_USERS))]
    pub admin_addr: SocketAddr,
    /// Apply pending migrations before serving (off in Kubernetes, where a
    /// Job runs `otus migrate` once per release).
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = false)]
    pub migrate_on_start: bool,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// `otus auth`.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// gRPC listen address.
    #[arg(long, env = "GRPC_ADDR", default_value_t = any(ports::AUTH))]
    pub grpc_addr: SocketAddr,
    /// Admin address serving /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value_t = any(ports::ADMIN_AUTH))]
    pub admin_addr: SocketAddr,
    /// Where the users service answers gRPC. A host name is resolved every 5 s and calls go
    /// round robin over its addresses (with a headless Service: every ready pod).
    #[arg(long, env = "USERS_GRPC_URL", default_value_t = edge().users_url)]
    pub users_grpc_url: String,
    /// Deadline of every outgoing gRPC call, in milliseconds.
    #[arg(long, env = "GRPC_DEADLINE_MS", default_value_t = millis(AUTH.users_deadline))]
    pub grpc_deadline_ms: u64,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub auth: AuthPolicyArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub session_redis: SessionRedisArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// `otus catalog`.
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// gRPC listen address.
    #[arg(long, env = "GRPC_ADDR", default_value_t = any(ports::CATALOG))]
    pub grpc_addr: SocketAddr,
    /// Admin address serving /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value_t = any(ports::ADMIN_CATALOG))]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// What `seed-products` does with products already there.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SeedMode {
    /// Load only into an empty catalog (safe to run on every deploy).
    IfEmpty,
    /// Delete all products first; ids restart at 1.
    Replace,
    /// Add to the existing products.
    Append,
}

/// What `seed-products` generates.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SeedShape {
    /// Plausible catalog entries (few distinct words, some in several
    /// percent of the names).
    Catalog,
    /// Three random words of a 454-word vocabulary (each in ~0.7% of names).
    Words,
}

/// `otus seed-products`.
#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// How many products.
    #[arg(long, env = "SEED_COUNT", default_value_t = 10_000)]
    pub count: u64,
    /// Random seed: the same seed gives the same products.
    #[arg(long, env = "SEED_SEED", default_value_t = 1)]
    pub seed: u64,
    /// What to do with products already there: `if-empty`, `replace` or
    /// `append`.
    #[arg(long, env = "SEED_MODE", value_enum, default_value_t = SeedMode::IfEmpty)]
    pub mode: SeedMode,
    /// What products look like: `catalog` (plausible entries, «Синий рюкзак
    /// Байкал Про-123») or `words` (three random words of a fixed vocabulary
    /// of 454, as in the original solution's load test).
    #[arg(long, env = "SEED_SHAPE", value_enum, default_value_t = SeedShape::Catalog)]
    pub shape: SeedShape,
    /// Rows per batch (one COPY chunk or one SQLite transaction).
    #[arg(long, env = "SEED_BATCH_SIZE", default_value_t = 20_000)]
    pub batch_size: usize,
    #[command(flatten)]
    pub db: DbArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With nothing set, every process runs on the defaults its crates own:
    /// the flags only map onto them.
    #[test]
    fn the_defaults_are_the_crates_own() {
        let args = AllInOneArgs::parse_ignoring_env::<_, &str>([]).expect("defaults parse");
        assert_eq!(args.cache.settings(), otus_catalog::CacheSettings::DEFAULT);
        assert_eq!(
            SearchMode::from_settings(
                args.cache.catalog_search_index,
                args.cache.catalog_search_baseline
            ),
            SearchMode::default()
        );
        let want = otus_edge::EdgeConfig::default();
        let got = args
            .edge
            .edge_config(
                want.users_url.clone(),
                want.auth_url.clone(),
                want.catalog_url.clone(),
            )
            .expect("edge config");
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        let auth = args.auth.settings(AUTH.users_deadline);
        assert_eq!(format!("{auth:?}"), format!("{AUTH:?}"));
        assert_eq!(
            args.redis.redis_key_prefix,
            otus_db::redis::DEFAULT_KEY_PREFIX
        );
        assert_eq!(
            args.users_grpc_addr.port(),
            otus_proto::users::GRPC_PORT,
            "all-in-one's users port"
        );

        // A separate edge's default backends are the services' own ports.
        let cli = Cli::try_parse_from(["otus", "edge"]).expect("edge parses");
        let Some(Command::Edge(edge)) = cli.command else {
            panic!("not the edge: {cli:?}")
        };
        assert_eq!(
            [
                edge.users_grpc_url,
                edge.auth_grpc_url,
                edge.catalog_grpc_url
            ],
            [want.users_url, want.auth_url, want.catalog_url]
        );
    }
}
