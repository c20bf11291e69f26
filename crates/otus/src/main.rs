//! `otus`: one binary, one subcommand per process kind. See `otus --help`.

use clap::Parser as _;
use otus::config::{AllInOneArgs, Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    otus_telemetry::init_logging(cli.log_format);
    let result = match cli
        .command
        .unwrap_or_else(|| Command::AllInOne(AllInOneArgs::from_env()))
    {
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
    result
}
