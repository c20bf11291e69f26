//! Database schema migrations for every otus-rs table (sea-orm-migration).
//!
//! Migrations run as their own step (`otus migrate`, a Kubernetes Job in the
//! chart) and are also applied at start-up by the local all-in-one mode. The
//! same migrations target PostgreSQL and the embedded SQLite default; where
//! the two differ, the migration branches on the backend and says why.

pub use sea_orm_migration::prelude::*;

/// The trigram index that makes product name search fast on PostgreSQL. Also
/// used by the bulk loader, which drops it for a large load into an empty
/// table and builds it once at the end (much faster than row by row).
pub const PRODUCTS_TRGM_INDEX: &str = "CREATE INDEX IF NOT EXISTS products_name_trgm_idx \
     ON products USING gin (name_search gin_trgm_ops)";

/// The unique constraints on `users`, by the names PostgreSQL gives them
/// (the users service tells a taken username from any other unique
/// violation by these names; SQLite names the column instead).
pub mod users_unique {
    /// `users.username`'s own UNIQUE (`create_users`), named by PostgreSQL's
    /// rule for an unnamed column constraint: `<table>_<column>_key`.
    pub const USERNAME: &str = "users_username_key";
    /// The unique index on `users.username_key`.
    pub use crate::m20261125_000005_username_key::INDEX as USERNAME_KEY;
    /// The unique index on `users.username_skeleton`.
    pub use crate::m20261205_000008_username_skeleton::INDEX as USERNAME_SKELETON;
}

/// Runs a migration written as raw SQL per backend (triggers and functions,
/// which sea-query does not express): `postgres` on PostgreSQL, `sqlite`
/// on the embedded default.
async fn raw_sql(
    manager: &SchemaManager<'_>,
    postgres: &[&str],
    sqlite: &[&str],
) -> Result<(), DbErr> {
    let statements = match manager.get_database_backend() {
        sea_orm_migration::sea_orm::DatabaseBackend::Postgres => postgres,
        _ => sqlite,
    };
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

mod m20261124_000001_create_users;
mod m20261124_000002_create_auth;
mod m20261124_000003_create_products;
mod m20261125_000004_session_expiry_ms;
mod m20261125_000005_username_key;
mod m20261125_000006_catalog_version;
mod m20261205_000007_product_changes;
mod m20261205_000008_username_skeleton;

/// Applies every migration in order; `seaql_migrations` records what ran.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_users::Migration),
            Box::new(m20261124_000002_create_auth::Migration),
            Box::new(m20261124_000003_create_products::Migration),
            Box::new(m20261125_000004_session_expiry_ms::Migration),
            Box::new(m20261125_000005_username_key::Migration),
            Box::new(m20261125_000006_catalog_version::Migration),
            Box::new(m20261205_000007_product_changes::Migration),
            Box::new(m20261205_000008_username_skeleton::Migration),
        ]
    }
}
