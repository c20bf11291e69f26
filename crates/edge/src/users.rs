//! `/user` and `/me` routes: the otus55 users resource. Registration
//! (`POST /user`) is the auth module's: it goes to
//! `otus.auth.v1.AuthService/Register`. Reads and updates go to
//! `otus.users.v1.UsersService` with the caller's identity token, and the
//! users service decides whether the caller may (owner only, else 403);
//! deletion goes to `AuthService/DeleteAccount`, which also ends sessions.
//!
//! The edge checks only the JSON shape (object, known fields, string types,
//! no read-only fields); the services validate the values.

use std::sync::LazyLock;

use axum::{Json, Router, extract::State, http::HeaderMap, response::Response, routing::get};
use otus_proto::{
    auth::v1::DeleteAccountRequest,
    users::v1::{GetUserRequest, UpdateUserRequest, User},
};
use prost_types::FieldMask;

use otus_grpc::client::read_retried_once;

use crate::{
    body::{Field, JsonObject, PathId},
    error::ApiError,
    profile::{self, READ_ONLY, UserJson},
    session::{Caller, SessionToken, session_ended},
    state::AppState,
};

/// Fields a client may set on update: every profile field.
static UPDATABLE: LazyLock<Vec<Field>> = LazyLock::new(|| profile::fields().collect());

/// The routes of this module. (`POST /user` is registration: the auth
/// module's, which owns it beside `/register`.)
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/user/{userId}", get(read).put(update).delete(delete))
        .route("/me", get(read_me).put(update_me))
}

async fn get_user(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    id: i64,
) -> Result<Json<UserJson>, ApiError> {
    let user = read_retried_once(|| {
        let req = state.rpc_as(headers, &caller.identity_token, GetUserRequest { id });
        let mut client = state.users.clone();
        async move { client.get_user(req).await }
    })
    .await?
    .into_inner();
    Ok(Json(user.into()))
}

async fn update_user(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    id: i64,
    body: &JsonObject,
) -> Result<Json<UserJson>, ApiError> {
    let mut user = User {
        id,
        ..User::default()
    };
    // A client may send back the user it read (otus55 allows it): an `id`
    // equal to the one being updated is not a change. Any other id is
    // refused as read-only below.
    let without_id;
    let body = if body.0.get("id").and_then(serde_json::Value::as_i64) == Some(id) {
        let mut map = body.0.clone();
        map.remove("id");
        without_id = JsonObject(map);
        &without_id
    } else {
        body
    };
    let mut paths = Vec::new();
    for (field, value) in body.string_fields(&UPDATABLE, READ_ONLY)? {
        paths.push(field.proto.to_owned());
        profile::apply(&mut user, field, value);
    }
    let req = state.rpc_as(
        headers,
        &caller.identity_token,
        UpdateUserRequest {
            user: Some(user),
            update_mask: Some(FieldMask { paths }),
        },
    );
    let user = state.users.clone().update_user(req).await?.into_inner();
    Ok(Json(user.into()))
}

/// `GET /user/{userId}`: the owner only.
async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<UserJson>, ApiError> {
    get_user(&state, &headers, &caller, id).await
}

/// `GET /me`.
async fn read_me(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Json<UserJson>, ApiError> {
    get_user(&state, &headers, &caller, caller.user_id).await
}

/// `PUT /user/{userId}`: the owner only; fields not sent stay as they were.
async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    PathId(id): PathId,
    body: JsonObject,
) -> Result<Json<UserJson>, ApiError> {
    update_user(&state, &headers, &caller, id, &body).await
}

/// `PUT /me`.
async fn update_me(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    body: JsonObject,
) -> Result<Json<UserJson>, ApiError> {
    update_user(&state, &headers, &caller, caller.user_id, &body).await
}

/// `DELETE /user/{userId}`: the owner only; 204, and every session of the
/// user ends with it.
async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    SessionToken(token): SessionToken,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let req = state.rpc(
        &headers,
        DeleteAccountRequest {
            session_token: token,
            user_id: id,
        },
    );
    state.auth.clone().delete_account(req).await?;
    Ok(session_ended(&state))
}
