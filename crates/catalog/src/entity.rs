//! The `products` table (created by `otus-migration`).

use sea_orm::entity::prelude::*;

/// One product.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    /// `name` lowercased by [`crate::search::fold`]: what searches match.
    pub name_search: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
