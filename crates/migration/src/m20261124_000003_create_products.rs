//! The `products` table, owned by the catalog service, and its search indexes.
//!
//! `name_search` holds the name lowercased by the service (Unicode rules, so
//! Cyrillic too, the same on every backend and database locale). On
//! PostgreSQL a trigram GIN index on it (`pg_trgm`, a trusted extension since
//! PostgreSQL 13) serves `name_search LIKE '%word%'` at a million rows. SQLite
//! has no such index: the embedded default scans, which is correct and fast
//! enough for the data sizes it is meant for.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Products::Id))
                    .col(string_len(Products::Name, 256))
                    .col(string_len(Products::NameSearch, 256))
                    .col(text(Products::Description))
                    .col(string_len(Products::Category, 64))
                    // Kopecks: exact, and compares the same on every backend.
                    .col(big_integer(Products::PriceCents))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("products_category_idx", Products::Category),
            ("products_price_idx", Products::PriceCents),
        ] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(name)
                        .table(Products::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                .await?;
            db.execute_unprepared(crate::PRODUCTS_TRGM_INDEX).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Products::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Name,
    NameSearch,
    Description,
    Category,
    PriceCents,
}
