//! `catalog_version`: one row whose `version` grows whenever `products`
//! changes (insert, update, delete, truncate), kept by triggers in the
//! database so that every writer counts, `otus seed-products` and a hand-made
//! `UPDATE` alike. Each catalog replica polls it (one primary-key read a
//! second) and rebuilds its in-memory search index when it moved
//! (`otus_catalog::live`).
//!
//! PostgreSQL counts once per statement (a bulk `COPY` of millions of rows is
//! one change); SQLite has row triggers only, so it counts once per row. A
//! change and its count commit together, so a replica that read version `v`
//! and then loaded the table has seen every change counted up to `v`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS catalog_version (
         id SMALLINT PRIMARY KEY CHECK (id = 1),
         version BIGINT NOT NULL)",
    "INSERT INTO catalog_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING",
    "CREATE OR REPLACE FUNCTION products_changed() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         UPDATE catalog_version SET version = version + 1 WHERE id = 1;
         RETURN NULL;
     END $$",
    "DROP TRIGGER IF EXISTS products_changed ON products",
    "CREATE TRIGGER products_changed
         AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON products
         FOR EACH STATEMENT EXECUTE FUNCTION products_changed()",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS products_changed ON products",
    "DROP FUNCTION IF EXISTS products_changed()",
    "DROP TABLE IF EXISTS catalog_version",
];

const SQLITE_UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS catalog_version (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO catalog_version (id, version) VALUES (1, 0)",
    "CREATE TRIGGER IF NOT EXISTS products_inserted AFTER INSERT ON products
     BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END",
    "CREATE TRIGGER IF NOT EXISTS products_updated AFTER UPDATE ON products
     BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END",
    "CREATE TRIGGER IF NOT EXISTS products_deleted AFTER DELETE ON products
     BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS products_inserted",
    "DROP TRIGGER IF EXISTS products_updated",
    "DROP TRIGGER IF EXISTS products_deleted",
    "DROP TABLE IF EXISTS catalog_version",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::raw_sql(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::raw_sql(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
