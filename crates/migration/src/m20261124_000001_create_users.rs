//! The `users` table, owned by the users service.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    // BIGINT: ids are int64 on the wire (otus55 `id: int64`).
                    .col(big_pk_auto(Users::Id))
                    // The unique index is what makes concurrent registrations of
                    // one name safe: exactly one INSERT wins, the others get a
                    // unique violation that the service maps to 409.
                    .col(string_len_uniq(Users::Username, 256))
                    .col(string_len(Users::FirstName, 256).default(""))
                    .col(string_len(Users::LastName, 256).default(""))
                    .col(string_len(Users::Email, 254))
                    .col(string_len(Users::Phone, 32).default(""))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    FirstName,
    LastName,
    Email,
    Phone,
    CreatedAt,
    UpdatedAt,
}
