//! The bulk loader: generated products into the `products` table.

use std::fmt::Write as _;

use sea_orm::{
    ConnectionTrait as _, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait as _,
    PaginatorTrait as _, TransactionTrait as _, sqlx::postgres::PgPoolCopyExt as _,
};

use super::{Generator, Shape};
use crate::{entity, search::fold};

/// What to do with products already in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Load only into an empty table; otherwise do nothing (idempotent: the
    /// Kubernetes Job can run on every install).
    IfEmpty,
    /// Delete everything first (ids restart at 1: same seed, same ids).
    Replace,
    /// Add to what is there.
    Append,
}

/// A loading failure.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("COPY: {0}")]
    Copy(#[from] sea_orm::sqlx::Error),
}

/// What a load did.
#[derive(Debug)]
pub struct Report {
    /// Rows written (0 when `IfEmpty` found data).
    pub inserted: u64,
    /// Rows in the table before.
    pub existing_before: u64,
}

/// Escapes a value for COPY's text format.
fn copy_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Loads `count` products generated from `seed`, `batch` rows at a time,
/// calling `progress(done, count)` after each batch.
pub async fn load(
    db: &DatabaseConnection,
    count: u64,
    seed: u64,
    shape: Shape,
    mode: Mode,
    batch: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, SeedError> {
    let backend = db.get_database_backend();
    let existing_before = entity::Entity::find().count(db).await?;
    if mode == Mode::IfEmpty && existing_before > 0 {
        return Ok(Report {
            inserted: 0,
            existing_before,
        });
    }
    if mode == Mode::Replace {
        match backend {
            DatabaseBackend::Postgres => {
                db.execute_unprepared("TRUNCATE products RESTART IDENTITY")
                    .await?;
            }
            _ => {
                db.execute_unprepared("DELETE FROM products").await?;
                // Present only for AUTOINCREMENT tables; harmless otherwise.
                let _ = db
                    .execute_unprepared("DELETE FROM sqlite_sequence WHERE name = 'products'")
                    .await;
            }
        }
    }
    let empty = mode == Mode::Replace || existing_before == 0;
    let batch = batch.max(1);
    let mut generator = Generator::new(seed, shape);
    let mut done = 0u64;
    match backend {
        DatabaseBackend::Postgres => {
            // Building the trigram index once at the end is several times
            // faster than updating it row by row; only into an empty table, so
            // searches of existing data never lose their index.
            if empty {
                db.execute_unprepared("DROP INDEX IF EXISTS products_name_trgm_idx")
                    .await?;
            }
            let pool = db.get_postgres_connection_pool();
            let mut copy = pool
                .copy_in_raw(
                    "COPY products (name, name_search, description, category, price_cents) FROM STDIN",
                )
                .await?;
            let mut buf = String::with_capacity(batch * 200);
            while done < count {
                buf.clear();
                let n = batch.min(usize::try_from(count - done).unwrap_or(batch));
                for _ in 0..n {
                    let p = generator.product();
                    copy_escape(&p.name, &mut buf);
                    buf.push('\t');
                    copy_escape(&fold(&p.name), &mut buf);
                    buf.push('\t');
                    copy_escape(&p.description, &mut buf);
                    buf.push('\t');
                    copy_escape(&p.category, &mut buf);
                    let _ = writeln!(buf, "\t{}", p.price_cents);
                }
                copy.send(buf.as_bytes()).await?;
                done += n as u64;
                progress(done, count);
            }
            copy.finish().await?;
            if empty {
                db.execute_unprepared(otus_migration::PRODUCTS_TRGM_INDEX)
                    .await?;
            }
            db.execute_unprepared("ANALYZE products").await?;
        }
        _ => {
            // 5 parameters a row; SQLite allows 32766 per statement.
            const ROWS_PER_INSERT: usize = 1000;
            while done < count {
                let n = batch.min(usize::try_from(count - done).unwrap_or(batch));
                let txn = db.begin().await?;
                let mut left = n;
                while left > 0 {
                    let k = left.min(ROWS_PER_INSERT);
                    let mut sql = String::from(
                        "INSERT INTO products (name, name_search, description, category, price_cents) VALUES ",
                    );
                    let mut values = Vec::with_capacity(k * 5);
                    for i in 0..k {
                        let p = generator.product();
                        sql.push_str(if i == 0 {
                            "(?, ?, ?, ?, ?)"
                        } else {
                            ", (?, ?, ?, ?, ?)"
                        });
                        let search = fold(&p.name);
                        values.push(p.name.into());
                        values.push(search.into());
                        values.push(p.description.into());
                        values.push(p.category.into());
                        values.push(p.price_cents.into());
                    }
                    txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                        backend, sql, values,
                    ))
                    .await?;
                    left -= k;
                }
                txn.commit().await?;
                done += n as u64;
                progress(done, count);
            }
        }
    }
    Ok(Report {
        inserted: done,
        existing_before,
    })
}
