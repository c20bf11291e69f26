//! The account routes the auth service answers: registration (`/register`,
//! and `POST /user`, the otus55 spelling), `/login` and `/logout`. Who is
//! calling is [`crate::session`]'s.

use std::{net::SocketAddr, sync::LazyLock};

use axum::{
    Json, Router,
    extract::{ConnectInfo, FromRequestParts, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::post,
};
use otus_proto::{
    auth::v1::{LoginRequest, LogoutRequest, RegisterRequest},
    users::v1::User,
};
use serde::Serialize;

use crate::{
    body::{Field, JsonObject},
    error::ApiError,
    profile::{self, UserJson},
    session::{SessionToken, cookie, session_ended},
    state::AppState,
};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/register", post(register))
        .route("/user", post(register))
        .route("/login", post(login))
        .route("/logout", post(logout))
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

/// The client's address: the TCP peer, or the one `X-Real-IP` when the peer
/// is a trusted proxy (`TRUSTED_PROXIES`: the ingress controller, which
/// overwrites that header). From any other peer the header is ignored, so no
/// client chooses the address its login attempts are counted under.
/// `X-Forwarded-For` is never read (a client can prepend to it).
fn client_address(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    let Some(peer) = peer else {
        return "unknown".to_owned();
    };
    let peer_ip = peer.ip().to_canonical();
    if state
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer_ip))
    {
        let mut values = headers.get_all("x-real-ip").iter();
        if let (Some(one), None) = (values.next(), values.next())
            && let Some(ip) = one
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
        {
            return ip.to_string();
        }
    }
    peer_ip.to_string()
}

/// One `TRUSTED_PROXIES` entry: an address (`10.0.0.7`) or a network in CIDR
/// notation (`10.244.0.0/16`, `fd00::/8`).
pub fn parse_trusted_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a network such as 10.244.0.0/16"))
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

/// Fields a client may send on registration: every profile field, and the
/// password (stored by the auth service as an argon2id hash, never returned).
static CREATABLE: LazyLock<Vec<Field>> =
    LazyLock::new(|| profile::fields().chain([PASSWORD]).collect());

/// `POST /register` and `POST /user`: 201, `Location: /user/{id}`, the user.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut user = User::default();
    let mut password = String::new();
    for (field, value) in body.string_fields(&CREATABLE, profile::READ_ONLY)? {
        if field.proto == PASSWORD.proto {
            password = value;
        } else {
            profile::apply(&mut user, field, value);
        }
    }
    let req = state.rpc(
        &headers,
        RegisterRequest {
            user: Some(user),
            password,
        },
    );
    let created = state.auth.clone().register(req).await?.into_inner();
    let location = format!("/user/{}", created.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserJson::from(created)),
    )
        .into_response())
}

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
