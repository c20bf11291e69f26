//! Usernames: the uniqueness key ([`key`], defined in `otus-identity` because
//! the auth service counts login failures by it too) and its back-fill.

pub use otus_identity::username::{is_invisible, key};

/// Fills `username_key` for rows that have none (existing rows after the
/// migration that added it, or rows a previous release wrote). Where two
/// existing names share a key, the older account keeps it and the newer one
/// gets `<key>#<id>`: both accounts keep working, and no new look-alike of
/// either can register. Returns how many rows were filled.
pub async fn backfill_keys(db: &sea_orm::DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::{
        ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, EntityTrait as _,
        QueryFilter as _, QueryOrder as _,
    };

    use crate::entity;

    let rows = entity::Entity::find()
        .filter(entity::Column::UsernameKey.is_null())
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await?;
    let mut filled = 0;
    for row in rows {
        let key = key(&row.username);
        let taken = entity::Entity::find()
            .filter(entity::Column::UsernameKey.eq(&key))
            .one(db)
            .await?
            .is_some();
        let id = row.id;
        let key = if taken { format!("{key}#{id}") } else { key };
        if taken {
            tracing::warn!(
                user.id = id,
                "username is a look-alike of an older account's; kept, keyed apart"
            );
        }
        let mut active: entity::ActiveModel = row.into();
        active.username_key = Set(Some(key));
        active.update(db).await?;
        filled += 1;
    }
    Ok(filled)
}
