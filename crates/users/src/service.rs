//! The `otus.users.v1.UsersService` implementation.

use chrono::Utc;
use otus_db::Db;
use otus_identity::{Identity, IdentityKey};
use otus_proto::users::v1::{
    CreateUserRequest, DeleteUserRequest, GetUserRequest, LookupUsernameRequest,
    LookupUsernameResponse, UpdateUserRequest, User, users_service_server::UsersService,
};
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _,
    QuerySelect as _,
};
use tonic::{Request, Response, Status};

use otus_proto::user_fields::{self, USER_FIELDS};

use crate::{entity, error::UsersError, username, validate};

/// Serves user profiles from the `users` table.
#[derive(Clone)]
pub struct UsersApi {
    db: Db,
    key: IdentityKey,
}

/// Who may call what. Checked before anything is read, so answers never
/// reveal whether someone else's id exists.
#[derive(Clone, Copy)]
enum Access {
    /// The user themself.
    Owner(i64),
    /// The auth service only.
    Auth,
}

impl UsersApi {
    /// A service over an open (and migrated) database, trusting identity
    /// tokens signed with `key`.
    pub fn new(db: Db, key: IdentityKey) -> Self {
        Self { db, key }
    }

    fn authorize<T>(&self, req: &Request<T>, access: Access) -> Result<(), UsersError> {
        let who = self
            .key
            .verify_request(req)
            .map_err(|s| UsersError::Unauthenticated(s.message().to_owned()))?;
        let allowed = match (access, &who) {
            (Access::Owner(id), Identity::User(me)) => *me == id,
            (Access::Auth, who) => who.is_auth_service(),
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            tracing::warn!(caller = ?who, "permission denied");
            Err(UsersError::NotOwner)
        }
    }

    async fn find(&self, id: i64) -> Result<entity::Model, UsersError> {
        check_id(id)?;
        entity::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(UsersError::from_db)?
            .ok_or(UsersError::NotFound(id))
    }
}

fn check_id(id: i64) -> Result<(), UsersError> {
    if id <= 0 {
        return Err(UsersError::BadRequest {
            reason: "INVALID_ID",
            message: format!("user id must be a positive integer, got {id}"),
        });
    }
    Ok(())
}

/// Rows whose username is the same name as `username` (uniqueness key
/// `key`): by key, or exactly for a row not yet back-filled.
fn same_name(username: &str, key: &str) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(entity::Column::UsernameKey.eq(key))
        .add(
            sea_orm::Condition::all()
                .add(entity::Column::UsernameKey.is_null())
                .add(entity::Column::Username.eq(username)),
        )
}

fn timestamp(t: &sea_orm::prelude::DateTimeWithTimeZone) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        // subsec_nanos() < 2e9 always fits in i32 (leap seconds included).
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn to_proto(m: &entity::Model) -> User {
    let mut user = User {
        create_time: Some(timestamp(&m.created_at)),
        update_time: Some(timestamp(&m.updated_at)),
        id: m.id,
        ..User::default()
    };
    m.write_profile(&mut user);
    user
}

#[tonic::async_trait]
impl UsersService for UsersApi {
    #[tracing::instrument(skip_all, fields(user.id = request.get_ref().id))]
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        self.authorize(&request, Access::Owner(request.get_ref().id))?;
        let user = self.find(request.into_inner().id).await?;
        Ok(Response::new(to_proto(&user)))
    }

    #[tracing::instrument(skip_all)]
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        // Registration goes through the auth service, which stores the
        // password; a profile without a credential would be an orphan.
        self.authorize(&request, Access::Auth)?;
        let CreateUserRequest {
            user,
            validate_only,
        } = request.into_inner();
        let user = user.unwrap_or_default();
        let violations = validate::check(&user);
        if !violations.is_empty() {
            return Err(UsersError::Invalid(violations).into());
        }
        let key = username::key(&user.username);
        let skeleton = username::skeleton(&user.username);
        if validate_only {
            // The unique indexes still decide races at the real create.
            let taken = entity::Entity::find()
                .select_only()
                .column(entity::Column::Id)
                .filter(
                    same_name(&user.username, &key)
                        .add(entity::Column::UsernameSkeleton.eq(&skeleton)),
                )
                .into_tuple::<i64>()
                .one(&self.db)
                .await
                .map_err(UsersError::from_db)?
                .is_some();
            if taken {
                return Err(UsersError::UsernameTaken.into());
            }
            return Ok(Response::new(User { id: 0, ..user }));
        }
        let now = Utc::now().fixed_offset();
        let mut row = entity::ActiveModel {
            username_key: Set(Some(key)),
            username_skeleton: Set(Some(skeleton)),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        row.set_profile(&user);
        let model = row.insert(&self.db).await.map_err(UsersError::from_db)?;
        tracing::info!(user.id = model.id, "user created");
        Ok(Response::new(to_proto(&model)))
    }

    #[tracing::instrument(skip_all, fields(user.id))]
    async fn update_user(
        &self,
        request: Request<UpdateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let target = request.get_ref().user.as_ref().map_or(0, |u| u.id);
        self.authorize(&request, Access::Owner(target))?;
        let UpdateUserRequest { user, update_mask } = request.into_inner();
        let user = user.unwrap_or_default();
        tracing::Span::current().record("user.id", user.id);
        let paths = update_mask.map(|m| m.paths).unwrap_or_default();
        // Every profile field is updatable.
        let mut fields = Vec::with_capacity(paths.len());
        for path in &paths {
            let Some(field) = user_fields::by_proto(path) else {
                let allowed: Vec<&str> = USER_FIELDS.iter().map(|f| f.proto).collect();
                return Err(UsersError::BadRequest {
                    reason: "INVALID_UPDATE_MASK",
                    message: format!(
                        "update_mask path {path:?} is not updatable; allowed: {}",
                        allowed.join(", ")
                    ),
                }
                .into());
            };
            fields.push(field);
        }

        let current = self.find(user.id).await?;
        if fields.is_empty() {
            return Ok(Response::new(to_proto(&current)));
        }
        let mut profile = to_proto(&current);
        for field in fields {
            (field.set)(&mut profile, (field.get)(&user).to_owned());
        }
        // Validate the user as it would be stored, so an update can never
        // produce a profile that create would have refused.
        let violations = validate::check(&profile);
        if !violations.is_empty() {
            return Err(UsersError::Invalid(violations).into());
        }
        let mut next = current.clone();
        next.read_profile(&profile);
        next.username_key = Some(username::key(&next.username));
        next.username_skeleton = Some(username::skeleton(&next.username));
        if next == current {
            return Ok(Response::new(to_proto(&current)));
        }
        let mut active: entity::ActiveModel = current.into();
        active.set_profile(&profile);
        active.username_key = Set(next.username_key);
        active.username_skeleton = Set(next.username_skeleton);
        active.updated_at = Set(Utc::now().fixed_offset());
        let updated = match active.update(&self.db).await {
            Ok(m) => m,
            // Deleted between our read and the write.
            Err(sea_orm::DbErr::RecordNotUpdated) => {
                return Err(UsersError::NotFound(user.id).into());
            }
            Err(e) => return Err(UsersError::from_db(e).into()),
        };
        tracing::info!("user updated");
        Ok(Response::new(to_proto(&updated)))
    }

    #[tracing::instrument(skip_all, fields(user.id = request.get_ref().id))]
    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<()>, Status> {
        // Only through auth's DeleteAccount, which also ends the account's
        // sessions and deletes its credential: a profile deleted here alone
        // would leave both behind.
        self.authorize(&request, Access::Auth)
            .map_err(|e| match e {
                UsersError::NotOwner => UsersError::DeleteThroughAuth,
                e => e,
            })?;
        let id = request.into_inner().id;
        check_id(id)?;
        let res = entity::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(UsersError::from_db)?;
        if res.rows_affected == 0 {
            return Err(UsersError::NotFound(id).into());
        }
        tracing::info!("user deleted");
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all)]
    async fn lookup_username(
        &self,
        request: Request<LookupUsernameRequest>,
    ) -> Result<Response<LookupUsernameResponse>, Status> {
        self.authorize(&request, Access::Auth)?;
        let username = request.into_inner().username;
        if let Some(v) = validate::lookup_username(&username) {
            return Err(UsersError::Invalid(vec![v]).into());
        }
        let key = username::key(&username);
        let find = |condition: sea_orm::Condition| {
            entity::Entity::find()
                .select_only()
                .column(entity::Column::Id)
                .filter(condition)
                .into_tuple::<i64>()
                .one(&self.db)
        };
        // The spelling's own key first; then a look-alike of an account
        // (its skeleton), as login accepts any spelling of a name.
        let mut id = find(same_name(&username, &key))
            .await
            .map_err(UsersError::from_db)?;
        if id.is_none() {
            let skeleton = username::skeleton(&username);
            id = find(sea_orm::Condition::all().add(entity::Column::UsernameSkeleton.eq(skeleton)))
                .await
                .map_err(UsersError::from_db)?;
        }
        let id = id.ok_or(UsersError::UsernameNotFound)?;
        Ok(Response::new(LookupUsernameResponse { id }))
    }
}
