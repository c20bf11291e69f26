//! `otus`: one binary, one subcommand per process kind. See `otus --help`.

use clap::Parser as _;
use otus::config::{AllInOneArgs, Cli, Command};

/// jemalloc instead of the C library's malloc: measured side by side at 1M
/// products (docs/performance.md, "jemalloc"), it answered 22-34% more
/// searches in the closed loop, cost up to 9% less CPU per search at a fixed
/// rate and held 80-130 MiB less resident memory; the auth process's peak
/// under concurrent hashing stays within its budget (tests/bounded_hashing.rs).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::AllInOne(AllInOneArgs::from_env()));
    // OTEL_SERVICE_NAME overrides this default.
    let service = match &command {
        Command::AllInOne(_) => "otus",
        Command::Edge(_) => "otus-edge",
        Command::Users(_) => "otus-users",
        Command::Auth(_) => "otus-auth",
        Command::Catalog(_) => "otus-catalog",
        Command::Migrate(_) => "otus-migrate",
        Command::SeedProducts(_) => "otus-seed-products",
    };
    let tracing = otus_telemetry::init(cli.log_format, service, None);
    let result = match command {
        Command::AllInOne(args) => otus::run_all_in_one(args).await,
        Command::Edge(args) => otus::run_edge(args).await,
        Command::Users(args) => otus::run_users(args).await,
        Command::Auth(args) => otus::run_auth(args).await,
        Command::Catalog(args) => otus::run_catalog(args).await,
        Command::SeedProducts(args) => otus::seed_products(args).await,
        Command::Migrate(args) => {
            let conn = otus::connect(&args).await?;
            otus::migrate(&conn).await.map(|n| {
                println!("migrations applied: {n}; schema is up to date");
            })
        }
    };
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "exiting with an error");
    }
    // Send the last spans before the process ends.
    tokio::task::block_in_place(|| tracing.shutdown());
    result
}
