//! Authentication at the gateway, and the `/register`, `/login`, `/logout`
//! routes.
//!
//! A request is authenticated by `Authorization: Bearer <token>` or the
//! `otus_session` cookie. The edge cannot judge a token itself: it asks the
//! auth service (`Authenticate`), which answers with the user id and an
//! identity token that the edge forwards to the services. Headers such as
//! `X-User-Id` or `X-Login` are never read.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::{ConnectInfo, FromRequestParts, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::post,
};
use otus_proto::auth::v1::{AuthenticateRequest, LoginRequest, LogoutRequest};
use serde::Serialize;

use crate::{
    AppState,
    body::{Field, JsonObject},
    error::{ApiError, read_retried_once},
    users,
};

/// Name of the session cookie.
pub const COOKIE: &str = "otus_session";

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/register", post(users::register))
        .route("/login", post(login))
        .route("/logout", post(logout))
}

/// The bearer token of a request, from `Authorization` or the cookie.
#[derive(Debug)]
pub struct SessionToken(pub String);

fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
            .filter(|t| !t.is_empty());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|t| !t.is_empty())
}

impl<S: Send + Sync> FromRequestParts<S> for SessionToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        token_from(&parts.headers)
            .map(Self)
            .ok_or_else(ApiError::missing_credentials)
    }
}

/// A verified caller.
#[derive(Debug)]
pub struct Caller {
    /// Whose session it is.
    pub user_id: i64,
    /// Identity token to forward to the services.
    pub identity_token: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let SessionToken(token) = SessionToken::from_request_parts(parts, state).await?;
        // Authenticate only reads the session: safe to send twice.
        let resp = read_retried_once(|| {
            let req = state.rpc(
                &parts.headers,
                AuthenticateRequest {
                    session_token: token.clone(),
                },
            );
            let mut client = state.auth.clone();
            async move { client.authenticate(req).await }
        })
        .await?
        .into_inner();
        Ok(Self {
            user_id: resp.user_id,
            identity_token: resp.identity_token,
        })
    }
}

/// The TCP peer's address, when the server was started with connect info.
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The client's address: the TCP peer, or `X-Real-IP` when the edge is
/// configured to trust the proxy in front of it.
fn client_address(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    if state.trust_proxy_headers
        && let Some(ip) = headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
    {
        return ip.to_string();
    }
    peer.map_or_else(|| "unknown".to_owned(), |p| p.ip().to_string())
}

fn cookie(state: &AppState, token: &str, max_age: i64) -> HeaderValue {
    let secure = if state.cookie_secure { "; Secure" } else { "" };
    let v = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    // Tokens are base64url and the rest is ASCII: always a valid header.
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// 204 with a `Set-Cookie` that removes the session cookie: the answer to
/// every request that ended the caller's session (logout, account deletion).
pub fn session_ended(state: &AppState) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie(state, "", 0))],
    )
        .into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginJson {
    token: String,
    user_id: i64,
    expires_in: i64,
}

const USERNAME: Field = Field {
    json: "username",
    proto: "username",
};
const PASSWORD: Field = Field {
    json: "password",
    proto: "password",
};

/// `POST /login`: 200 `{token, userId, expiresIn}` and the session cookie.
async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let (mut username, mut password) = (None, None);
    for (field, value) in body.string_fields(&[USERNAME, PASSWORD], &[])? {
        match field.json {
            "username" => username = Some(value),
            _ => password = Some(value),
        }
    }
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ApiError::bad_request(
            "MISSING_FIELD",
            "username and password are required",
        ));
    };
    let client_address = client_address(&state, &headers, peer);
    let req = state.rpc(
        &headers,
        LoginRequest {
            username,
            password,
            client_address,
        },
    );
    let resp = state.auth.clone().login(req).await?.into_inner();
    let set_cookie = cookie(&state, &resp.session_token, resp.expires_in);
    Ok((
        [(header::SET_COOKIE, set_cookie)],
        Json(LoginJson {
            token: resp.session_token,
            user_id: resp.user_id,
            expires_in: resp.expires_in,
        }),
    )
        .into_response())
}

/// `POST /logout`: 204; the token stops working at once.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    SessionToken(token): SessionToken,
) -> Result<Response, ApiError> {
    let req = state.rpc(
        &headers,
        LogoutRequest {
            session_token: token,
        },
    );
    state.auth.clone().logout(req).await?;
    Ok(session_ended(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_bearer_or_cookie_only() {
        let mut h = HeaderMap::new();
        assert_eq!(token_from(&h), None);
        h.insert(
            header::COOKIE,
            "a=b; otus_session=tok123; c=d".parse().unwrap(),
        );
        assert_eq!(token_from(&h).as_deref(), Some("tok123"));
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(token_from(&h).as_deref(), Some("abc"), "Authorization wins");
        h.insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(
            token_from(&h),
            None,
            "a non-bearer Authorization is no credential"
        );
        let mut h = HeaderMap::new();
        h.insert("x-user-id", "1".parse().unwrap());
        h.insert("x-login", "admin".parse().unwrap());
        assert_eq!(
            token_from(&h),
            None,
            "identity headers are never credentials"
        );
    }
}
