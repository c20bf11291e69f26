//! The auth service's tables: `credentials` and `sessions`.
//!
//! No foreign key to `users`: each service owns its tables and may live in its
//! own database; consistency between them is the auth service's job
//! (registration compensates, account deletion cleans up).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .if_not_exists()
                    // One credential per user; the id comes from the users service.
                    .col(big_integer(Credentials::UserId).primary_key())
                    // PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
                    .col(text(Credentials::PasswordHash))
                    .col(timestamp_with_time_zone(Credentials::CreatedAt))
                    .col(timestamp_with_time_zone(Credentials::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    // Hex SHA-256 of the bearer token: a database leak does not
                    // leak usable tokens.
                    .col(string_len(Sessions::TokenHash, 64).primary_key())
                    .col(big_integer(Sessions::UserId))
                    // Unix seconds: compares the same way on every backend.
                    .col(big_integer(Sessions::ExpiresAt))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sessions_user_id_idx")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Credentials::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    UserId,
    PasswordHash,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    TokenHash,
    UserId,
    ExpiresAt,
    CreatedAt,
}
