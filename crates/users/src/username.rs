//! Usernames: the uniqueness key ([`key`], defined in `otus-identity` because
//! the auth service counts login failures by it too) and its back-fill.

pub use otus_identity::username::{key, refusal, skeleton};

/// Fills `username_key` and `username_skeleton` for rows that have none
/// (existing rows after the migrations that added them, or rows a previous
/// release wrote). Where two existing names share one, the older account
/// keeps it and the newer one gets `<value>#<id>`: both accounts keep
/// working, and no new look-alike of either can register. Returns how many
/// rows were filled.
pub async fn backfill_keys(db: &sea_orm::DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    let keys = backfill(db, Computed::Key).await?;
    Ok(keys + backfill(db, Computed::Skeleton).await?)
}

/// The two columns computed from `username` in Rust.
#[derive(Clone, Copy)]
enum Computed {
    Key,
    Skeleton,
}

impl Computed {
    fn column(self) -> crate::entity::Column {
        match self {
            Self::Key => crate::entity::Column::UsernameKey,
            Self::Skeleton => crate::entity::Column::UsernameSkeleton,
        }
    }

    fn of(self, username: &str) -> String {
        match self {
            Self::Key => key(username),
            Self::Skeleton => skeleton(username),
        }
    }
}

async fn backfill(
    db: &sea_orm::DatabaseConnection,
    which: Computed,
) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::{
        ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, EntityTrait as _,
        QueryFilter as _, QueryOrder as _,
    };

    use crate::entity;

    let rows = entity::Entity::find()
        .filter(which.column().is_null())
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await?;
    let mut filled = 0;
    for row in rows {
        let value = which.of(&row.username);
        let taken = entity::Entity::find()
            .filter(which.column().eq(&value))
            .one(db)
            .await?
            .is_some();
        let id = row.id;
        let value = if taken {
            format!("{value}#{id}")
        } else {
            value
        };
        if taken {
            tracing::warn!(
                user.id = id,
                "username is a look-alike of an older account's; kept, keyed apart"
            );
        }
        let mut active: entity::ActiveModel = row.into();
        match which {
            Computed::Key => active.username_key = Set(Some(value)),
            Computed::Skeleton => active.username_skeleton = Set(Some(value)),
        }
        active.update(db).await?;
        filled += 1;
    }
    Ok(filled)
}
