//! The `users` table (created by `otus-migration`).
//!
//! Its profile columns come from the one field table
//! ([`otus_proto::with_user_fields!`]): one `String` column per profile
//! field, and the copies between a row and a `User` message, written once
//! here for every field.

use otus_proto::users::v1::User;
use sea_orm::{ActiveValue::Set, entity::prelude::*};

macro_rules! users_table {
    ($($field:ident: $json:literal, $rule:ident, $reason:literal;)*) => {
        /// One stored user profile.
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "users")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            /// [`crate::username::key`] of `username`, unique; `None` only in
            /// rows not yet back-filled.
            pub username_key: Option<String>,
            /// [`crate::username::skeleton`] of `username`, unique; `None`
            /// only in rows not yet back-filled.
            pub username_skeleton: Option<String>,
            $(pub $field: String,)*
            pub created_at: DateTimeWithTimeZone,
            pub updated_at: DateTimeWithTimeZone,
        }

        impl Model {
            /// The profile fields of this row, into `user`.
            pub fn write_profile(&self, user: &mut User) {
                $(user.$field.clone_from(&self.$field);)*
            }

            /// Sets this row's profile fields from `user`.
            pub fn read_profile(&mut self, user: &User) {
                $(self.$field.clone_from(&user.$field);)*
            }
        }

        impl ActiveModel {
            /// Marks every profile field of `user` to be written.
            pub fn set_profile(&mut self, user: &User) {
                $(self.$field = Set(user.$field.clone());)*
            }
        }
    };
}
otus_proto::with_user_fields!(users_table);

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
