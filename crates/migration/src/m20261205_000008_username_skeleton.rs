//! `users.username_skeleton`: the username's confusable skeleton (UTS #39,
//! after case folding; `otus_identity::username::skeleton`), with a unique
//! index, so a name drawn like a taken one (`paypa1`, `pɑypal` for `paypal`)
//! counts as taken too.
//!
//! Nullable for the same reason as `username_key`: computed in Rust, so
//! existing rows are back-filled by `otus migrate` right after this migration
//! (`otus_users::username::backfill_keys`). The key is left as it was:
//! logins keep finding every account during a rolling update.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The unique index on `users.username_skeleton`.
pub const INDEX: &str = "users_username_skeleton_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column_if_not_exists(string_len_null(Users::UsernameSkeleton, 1024))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(INDEX)
                    .table(Users::Table)
                    .col(Users::UsernameSkeleton)
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
                    .drop_column(Users::UsernameSkeleton)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    UsernameSkeleton,
}
