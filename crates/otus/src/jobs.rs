//! The one-shot jobs: `otus migrate` (every table's schema) and `otus
//! seed-products` (generated products, with progress on stderr).

use anyhow::Context as _;
use otus_migration::{Migrator, MigratorTrait as _};
use sea_orm::DatabaseConnection;

use crate::{
    config::{SeedArgs, SeedMode, SeedShape},
    deps::connect,
};

/// Applies pending migrations and reports what it did.
pub async fn migrate(conn: &DatabaseConnection) -> anyhow::Result<usize> {
    let pending = Migrator::get_pending_migrations(conn)
        .await
        .context("reading the migration table")?;
    for m in &pending {
        tracing::info!(migration = m.name(), "applying migration");
    }
    Migrator::up(conn, None)
        .await
        .context("applying migrations")?;
    // Data the schema cannot compute itself (keys computed in Rust).
    let keyed = otus_users::username::backfill_keys(conn)
        .await
        .context("back-filling username keys")?;
    if keyed > 0 {
        tracing::info!(rows = keyed, "username keys back-filled");
    }
    tracing::info!(applied = pending.len(), "database schema is up to date");
    Ok(pending.len())
}

/// `otus seed-products`: migrates, then loads generated products with a
/// progress line on stderr.
pub async fn seed_products(args: SeedArgs) -> anyhow::Result<()> {
    use otus_catalog::seed::{self, Mode};
    use std::io::Write as _;
    let conn = connect(&args.db).await?;
    migrate(&conn).await?;
    let mode = match args.mode {
        SeedMode::IfEmpty => Mode::IfEmpty,
        SeedMode::Replace => Mode::Replace,
        SeedMode::Append => Mode::Append,
    };
    let started = std::time::Instant::now();
    let mut last_pct = u64::MAX;
    let report = seed::load(
        &conn,
        args.count,
        args.seed,
        match args.shape {
            SeedShape::Catalog => seed::Shape::Catalog,
            SeedShape::Words => seed::Shape::Words,
        },
        mode,
        args.batch_size,
        |done, total| {
            let pct = done * 100 / total.max(1);
            if pct / 10 != last_pct / 10 || done == total {
                last_pct = pct;
                let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprintln!("seed-products: {done}/{total} ({pct}%), {rate:.0} rows/s");
                let _ = std::io::stderr().flush();
            }
        },
    )
    .await
    .context("loading products")?;
    if report.inserted == 0 && report.existing_before > 0 {
        println!(
            "seed-products: the catalog already has {} products; nothing loaded (--mode if-empty)",
            report.existing_before
        );
    } else {
        println!(
            "seed-products: loaded {} products (seed {}) in {:.1} s",
            report.inserted,
            args.seed,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
