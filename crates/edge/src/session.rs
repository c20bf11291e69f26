//! Who is calling: gateway authentication, and the session cookie.
//!
//! A request is authenticated by `Authorization: Bearer <token>` or the
//! `otus_session` cookie. The edge cannot judge a token itself: it asks the
//! auth service (`Authenticate`), which answers with the user id and an
//! identity token that the edge forwards to the services ([`Caller`]).
//! Headers such as `X-User-Id` or `X-Login` are never read.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use otus_proto::auth::v1::AuthenticateRequest;

use otus_grpc::client::read_retried_once;

use crate::{error::ApiError, state::AppState};

pub use crate::credentials::COOKIE;
use crate::credentials::session_cookies;

/// The bearer token of a request, from `Authorization` or the cookie.
#[derive(Debug)]
pub struct SessionToken(pub String);

fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        return otus_identity::bearer_token(v.to_str().ok()?).map(str::to_owned);
    }
    session_cookies(headers)
        .next()
        .map(|v| v.trim().to_owned())
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

pub(crate) fn cookie(state: &AppState, token: &str, max_age: i64) -> HeaderValue {
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
