//! `product_changes`: which products each `catalog_version` changed, so a
//! catalog replica applies a change to its search index as document updates
//! and deletes instead of loading the whole table again
//! (`otus_catalog::live`).
//!
//! The triggers replace those of migration 6. Each change still moves
//! `catalog_version` by one, and the same trigger writes one row per product
//! it touched, `(version, product_id)`, in the same transaction. The version
//! row's lock orders writers, so versions commit in order and without gaps:
//! a replica at version `v` that reads `version > v` sees every change after
//! it. A statement that touches no row does not count.
//!
//! PostgreSQL counts once per statement (transition tables list its rows);
//! a statement of more than 10 000 rows, and every `TRUNCATE`, is written as
//! one row with a NULL `product_id`, "reload everything", so a bulk `COPY`
//! of millions adds one row, not millions. SQLite has row triggers only: one
//! version and one row per product. Replicas delete rows no replica needs
//! any more (a replica further behind loads the whole table anyway).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS product_changes (
         version BIGINT NOT NULL,
         product_id BIGINT)",
    "CREATE INDEX IF NOT EXISTS product_changes_version_idx ON product_changes (version)",
    // One function per kind of statement: each reads the transition tables
    // its trigger declares.
    "CREATE OR REPLACE FUNCTION products_rows_changed() RETURNS trigger LANGUAGE plpgsql AS $$
     DECLARE
         v BIGINT;
         n BIGINT;
     BEGIN
         IF TG_OP = 'TRUNCATE' THEN
             UPDATE catalog_version SET version = version + 1 WHERE id = 1 RETURNING version INTO v;
             INSERT INTO product_changes (version, product_id) VALUES (v, NULL);
             RETURN NULL;
         END IF;
         IF TG_OP = 'DELETE' THEN
             SELECT count(*) INTO n FROM old_rows;
         ELSE
             SELECT count(*) INTO n FROM new_rows;
         END IF;
         IF n = 0 THEN
             RETURN NULL;
         END IF;
         UPDATE catalog_version SET version = version + 1 WHERE id = 1 RETURNING version INTO v;
         IF n > 10000 THEN
             INSERT INTO product_changes (version, product_id) VALUES (v, NULL);
         ELSIF TG_OP = 'INSERT' THEN
             INSERT INTO product_changes (version, product_id) SELECT v, id FROM new_rows;
         ELSIF TG_OP = 'DELETE' THEN
             INSERT INTO product_changes (version, product_id) SELECT v, id FROM old_rows;
         ELSE
             INSERT INTO product_changes (version, product_id)
                 SELECT v, id FROM new_rows UNION SELECT v, id FROM old_rows;
         END IF;
         RETURN NULL;
     END $$",
    "DROP TRIGGER IF EXISTS products_changed ON products",
    "DROP TRIGGER IF EXISTS products_inserted ON products",
    "DROP TRIGGER IF EXISTS products_updated ON products",
    "DROP TRIGGER IF EXISTS products_deleted ON products",
    "DROP TRIGGER IF EXISTS products_truncated ON products",
    "CREATE TRIGGER products_inserted AFTER INSERT ON products
         REFERENCING NEW TABLE AS new_rows
         FOR EACH STATEMENT EXECUTE FUNCTION products_rows_changed()",
    "CREATE TRIGGER products_updated AFTER UPDATE ON products
         REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
         FOR EACH STATEMENT EXECUTE FUNCTION products_rows_changed()",
    "CREATE TRIGGER products_deleted AFTER DELETE ON products
         REFERENCING OLD TABLE AS old_rows
         FOR EACH STATEMENT EXECUTE FUNCTION products_rows_changed()",
    "CREATE TRIGGER products_truncated AFTER TRUNCATE ON products
         FOR EACH STATEMENT EXECUTE FUNCTION products_rows_changed()",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS products_inserted ON products",
    "DROP TRIGGER IF EXISTS products_updated ON products",
    "DROP TRIGGER IF EXISTS products_deleted ON products",
    "DROP TRIGGER IF EXISTS products_truncated ON products",
    "DROP FUNCTION IF EXISTS products_rows_changed()",
    "DROP TABLE IF EXISTS product_changes",
    "CREATE TRIGGER products_changed
         AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON products
         FOR EACH STATEMENT EXECUTE FUNCTION products_changed()",
];

const SQLITE_UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS product_changes (
         version INTEGER NOT NULL,
         product_id INTEGER)",
    "CREATE INDEX IF NOT EXISTS product_changes_version_idx ON product_changes (version)",
    "DROP TRIGGER IF EXISTS products_inserted",
    "DROP TRIGGER IF EXISTS products_updated",
    "DROP TRIGGER IF EXISTS products_deleted",
    "CREATE TRIGGER products_inserted AFTER INSERT ON products BEGIN
         UPDATE catalog_version SET version = version + 1 WHERE id = 1;
         INSERT INTO product_changes (version, product_id)
             SELECT version, NEW.id FROM catalog_version WHERE id = 1;
     END",
    "CREATE TRIGGER products_updated AFTER UPDATE ON products BEGIN
         UPDATE catalog_version SET version = version + 1 WHERE id = 1;
         INSERT INTO product_changes (version, product_id)
             SELECT version, NEW.id FROM catalog_version WHERE id = 1;
         INSERT INTO product_changes (version, product_id)
             SELECT version, OLD.id FROM catalog_version WHERE id = 1 AND OLD.id <> NEW.id;
     END",
    "CREATE TRIGGER products_deleted AFTER DELETE ON products BEGIN
         UPDATE catalog_version SET version = version + 1 WHERE id = 1;
         INSERT INTO product_changes (version, product_id)
             SELECT version, OLD.id FROM catalog_version WHERE id = 1;
     END",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS products_inserted",
    "DROP TRIGGER IF EXISTS products_updated",
    "DROP TRIGGER IF EXISTS products_deleted",
    "DROP TABLE IF EXISTS product_changes",
    "CREATE TRIGGER products_inserted AFTER INSERT ON products
     BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END",
    "CREATE TRIGGER products_updated AFTER UPDATE ON products
     BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END",
    "CREATE TRIGGER products_deleted AFTER DELETE ON products
     BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on both backends: on SQLite the default is none, and
    /// the pool would run a `DROP TRIGGER` and the `CREATE TRIGGER` after it
    /// on different connections (seen failing as "already exists").
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::raw_sql(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::raw_sql(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
