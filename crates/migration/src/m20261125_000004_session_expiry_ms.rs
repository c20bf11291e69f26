//! Session expiry in milliseconds: `sessions.expires_at_ms`.
//!
//! `expires_at` held whole Unix seconds, so a session of N seconds lived
//! anywhere between N-1 and N seconds depending on where in a second it was
//! created. This is the expand step of an expand/contract change: the new
//! column is added and back-filled, and the service writes both columns (so a
//! replica of the previous release, still running during a rolling update,
//! keeps reading `expires_at`) and reads `expires_at_ms`, falling back to
//! `expires_at` for rows such a replica wrote (`expires_at_ms = 0`). A later
//! release drops `expires_at` and the fallback.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column_if_not_exists(big_integer(Sessions::ExpiresAtMs).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(Sessions::Table)
                    .value(
                        Sessions::ExpiresAtMs,
                        Expr::col(Sessions::ExpiresAt).mul(1000),
                    )
                    .and_where(Expr::col(Sessions::ExpiresAtMs).eq(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::ExpiresAtMs)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ExpiresAt,
    ExpiresAtMs,
}
