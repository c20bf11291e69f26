//! `users.username_key`: the username's uniqueness key (Unicode-normalised,
//! case-folded, Latin look-alikes folded; computed by the users service, see
//! `otus_users::username`), with a unique index, so look-alike names count as
//! taken.
//!
//! The column is nullable: the key is computed in Rust, not SQL, so existing
//! rows are back-filled by `otus migrate` right after this migration
//! (`otus_users::username::backfill_keys`), and a row written by a replica of
//! the previous release during a rolling update has no key until the next
//! `otus migrate` (its exact username stays unique through the old index).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The unique index on `users.username_key`.
pub const INDEX: &str = "users_username_key_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column_if_not_exists(string_len_null(Users::UsernameKey, 1024))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(INDEX)
                    .table(Users::Table)
                    .col(Users::UsernameKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Users::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::UsernameKey)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    UsernameKey,
}
