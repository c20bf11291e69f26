//! `/user` routes: the otus55 users resource, mapped onto
//! `otus.users.v1.UsersService`.
//!
//! The edge checks only the JSON shape (object, known fields, string types,
//! no read-only fields); the users service validates the values.

use axum::{
    Json, Router,
    extract::{FromRequestParts, Path, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use otus_proto::users::v1::{
    CreateUserRequest, DeleteUserRequest, GetUserRequest, UpdateUserRequest, User,
};
use prost_types::FieldMask;
use serde::Serialize;

use crate::{
    AppState,
    body::{Field, JsonObject},
    error::ApiError,
};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/user", post(create))
        .route("/user/{userId}", get(read).put(update).delete(delete))
}

/// The REST `User` (otus55 shape).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct UserJson {
    id: i64,
    username: String,
    first_name: String,
    last_name: String,
    email: String,
    phone: String,
}

impl From<User> for UserJson {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            first_name: u.first_name,
            last_name: u.last_name,
            email: u.email,
            phone: u.phone,
        }
    }
}

const USERNAME: Field = Field {
    json: "username",
    proto: "username",
};
const FIRST_NAME: Field = Field {
    json: "firstName",
    proto: "first_name",
};
const LAST_NAME: Field = Field {
    json: "lastName",
    proto: "last_name",
};
const EMAIL: Field = Field {
    json: "email",
    proto: "email",
};
const PHONE: Field = Field {
    json: "phone",
    proto: "phone",
};
/// Accepted on create for the registration flow; the auth service (its own
/// issue) will store it. Until then it is checked for type and dropped.
const PASSWORD: Field = Field {
    json: "password",
    proto: "password",
};

/// Fields a client may set on update.
const UPDATABLE: &[Field] = &[USERNAME, FIRST_NAME, LAST_NAME, EMAIL, PHONE];
/// Fields a client may send on create.
const CREATABLE: &[Field] = &[USERNAME, FIRST_NAME, LAST_NAME, EMAIL, PHONE, PASSWORD];
/// Fields only the server sets.
const READ_ONLY: &[&str] = &["id"];

fn apply(user: &mut User, field: Field, value: String) {
    match field.proto {
        "username" => user.username = value,
        "first_name" => user.first_name = value,
        "last_name" => user.last_name = value,
        "email" => user.email = value,
        "phone" => user.phone = value,
        _ => {}
    }
}

/// The `{userId}` path segment: a positive int64.
pub struct UserId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for UserId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("INVALID_ID", format!("invalid user id: {e}")))?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Self(id)),
            _ => Err(ApiError::bad_request(
                "INVALID_ID",
                format!("user id must be a positive integer, got {raw:?}"),
            )),
        }
    }
}

/// `POST /user`: 201, `Location: /user/{id}`, the created user.
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut user = User::default();
    for (field, value) in body.string_fields(CREATABLE, READ_ONLY)? {
        apply(&mut user, field, value);
    }
    let req = state.rpc(&headers, CreateUserRequest { user: Some(user) });
    let created = state.users.clone().create_user(req).await?.into_inner();
    let location = format!("/user/{}", created.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserJson::from(created)),
    )
        .into_response())
}

/// `GET /user/{userId}`.
async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    UserId(id): UserId,
) -> Result<Json<UserJson>, ApiError> {
    let req = state.rpc(&headers, GetUserRequest { id });
    let user = state.users.clone().get_user(req).await?.into_inner();
    Ok(Json(user.into()))
}

/// `PUT /user/{userId}`: fields not sent stay as they were.
async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    UserId(id): UserId,
    body: JsonObject,
) -> Result<Json<UserJson>, ApiError> {
    let mut user = User {
        id,
        ..User::default()
    };
    let mut paths = Vec::new();
    for (field, value) in body.string_fields(UPDATABLE, READ_ONLY)? {
        paths.push(field.proto.to_owned());
        apply(&mut user, field, value);
    }
    let req = state.rpc(
        &headers,
        UpdateUserRequest {
            user: Some(user),
            update_mask: Some(FieldMask { paths }),
        },
    );
    let user = state.users.clone().update_user(req).await?.into_inner();
    Ok(Json(user.into()))
}

/// `DELETE /user/{userId}`: 204.
async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    UserId(id): UserId,
) -> Result<StatusCode, ApiError> {
    let req = state.rpc(&headers, DeleteUserRequest { id });
    state.users.clone().delete_user(req).await?;
    Ok(StatusCode::NO_CONTENT)
}
