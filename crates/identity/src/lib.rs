//! Identity tokens: how one otus service proves to another who a call is for.
//!
//! The auth service mints short-lived JWTs (HS256) signed with a secret it
//! shares with the services that verify them (`IDENTITY_TOKEN_SECRET`, a
//! Kubernetes Secret). `sub` is `user:<id>` for a logged-in user or
//! `service:<name>` for a service acting on its own behalf. Callers send them
//! as `authorization: Bearer <jwt>` gRPC metadata; [`IdentityKey::verify_request`]
//! turns that into an [`Identity`] or an UNAUTHENTICATED status.
//!
//! The edge never holds the secret: it gets user tokens from
//! `AuthService/Authenticate`, so a header a client sets can never become an
//! identity, and a client calling a service directly has no way to mint one.
//!
//! [`username`]: when two usernames name the same account.

pub mod username;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Shortest accepted secret, in bytes (HS256 wants at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;
/// How long a minted token is valid: long enough for one request's calls.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// `aud` of every token, so tokens made for something else never pass.
const AUDIENCE: &str = "otus-internal";
/// `iss` of every token.
const ISSUER: &str = "otus-auth";

/// Who a call is made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A logged-in user.
    User(i64),
    /// A service acting for itself (e.g. [`AUTH_SERVICE`] during
    /// registration).
    Service(String),
}

/// The auth service's name as an identity: the one service the users
/// service lets create and look up accounts by name.
pub const AUTH_SERVICE: &str = "auth";

impl Identity {
    /// The auth service acting for itself.
    pub fn auth_service() -> Self {
        Self::Service(AUTH_SERVICE.to_owned())
    }

    /// Whether this is the auth service acting for itself.
    pub fn is_auth_service(&self) -> bool {
        matches!(self, Self::Service(s) if s == AUTH_SERVICE)
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iss: String,
    iat: u64,
    exp: u64,
}

/// A problem with the secret.
#[derive(Debug)]
pub enum KeyError {
    /// Too short to be safe.
    TooShort,
    /// The operating system gave no random bytes for a random key.
    NoRandomness(String),
}

impl std::error::Error for KeyError {}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort => write!(
                f,
                "IDENTITY_TOKEN_SECRET must be at least {MIN_SECRET_LEN} bytes"
            ),
            Self::NoRandomness(e) => write!(f, "no random bytes for an identity key: {e}"),
        }
    }
}

/// The shared signing key.
#[derive(Clone)]
pub struct IdentityKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(<secret>)")
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl IdentityKey {
    /// A key from the shared secret.
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// A key nobody else knows, from 256 random bits: for one process that
    /// both mints and verifies (all-in-one without a configured secret).
    pub fn random() -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
        Self::new(&secret)
    }

    /// Mints a token for `identity`, valid for [`TOKEN_TTL`].
    pub fn mint(&self, identity: &Identity) -> String {
        let sub = match identity {
            Identity::User(id) => format!("user:{id}"),
            Identity::Service(name) => format!("service:{name}"),
        };
        let iat = now_secs();
        let claims = Claims {
            sub,
            aud: AUDIENCE.into(),
            iss: ISSUER.into(),
            iat,
            exp: iat + TOKEN_TTL.as_secs(),
        };
        // HS256 encoding of a plain struct cannot fail (no key parsing, no
        // I/O); an empty token would simply be rejected by every verifier.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Checks signature, algorithm, audience, issuer and expiry.
    pub fn verify(&self, token: &str) -> Option<Identity> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[ISSUER]);
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok()?;
        let sub = data.claims.sub;
        if let Some(id) = sub.strip_prefix("user:") {
            id.parse().ok().filter(|id| *id > 0).map(Identity::User)
        } else {
            sub.strip_prefix("service:")
                .filter(|s| !s.is_empty())
                .map(|s| Identity::Service(s.to_owned()))
        }
    }

    /// The identity of a gRPC request from its `authorization` metadata.
    pub fn verify_request<T>(&self, req: &tonic::Request<T>) -> Result<Identity, tonic::Status> {
        let token = bearer(req.metadata()).ok_or_else(|| {
            tonic::Status::unauthenticated("missing authorization: Bearer <identity token>")
        })?;
        self.verify(token)
            .ok_or_else(|| tonic::Status::unauthenticated("invalid or expired identity token"))
    }
}

/// The bearer token in `authorization` metadata, if any.
pub fn bearer(md: &tonic::metadata::MetadataMap) -> Option<&str> {
    bearer_token(md.get("authorization")?.to_str().ok()?)
}

/// The token of an `Authorization` value `Bearer <token>` (the scheme in
/// any case), if it is one: the one parser for HTTP headers (the edge) and
/// gRPC metadata (the services).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Puts `token` into a request's `authorization` metadata.
pub fn attach<T>(req: &mut tonic::Request<T>, token: &str) {
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IdentityKey {
        IdentityKey::new(&[7u8; 32]).unwrap()
    }

    /// Only the auth service is the auth service: not another service,
    /// not a user, whatever their number.
    #[test]
    fn only_the_auth_service_is_the_auth_service() {
        assert!(Identity::auth_service().is_auth_service());
        assert!(!Identity::Service("catalog".into()).is_auth_service());
        assert!(!Identity::Service("auth2".into()).is_auth_service());
        assert!(!Identity::User(1).is_auth_service());
    }

    /// Two random keys are different keys: a token of one does not
    /// verify with the other.
    #[test]
    fn random_keys_verify_their_own_tokens_only() {
        let (a, b) = (
            IdentityKey::random().expect("random"),
            IdentityKey::random().expect("random"),
        );
        let token = a.mint(&Identity::User(7));
        assert_eq!(a.verify(&token), Some(Identity::User(7)));
        assert_eq!(b.verify(&token), None);
    }

    #[test]
    fn minted_tokens_verify_to_the_same_identity() {
        let k = key();
        for id in [Identity::User(42), Identity::auth_service()] {
            assert_eq!(k.verify(&k.mint(&id)), Some(id));
        }
    }

    #[test]
    fn forged_truncated_and_foreign_tokens_fail() {
        let k = key();
        let t = k.mint(&Identity::User(1));
        assert_eq!(k.verify(&t[..t.len() - 3]), None, "truncated");
        let other = IdentityKey::new(&[8u8; 32]).unwrap();
        assert_eq!(other.verify(&t), None, "signed with another secret");
        // Same claims, but alg=none: must never be accepted.
        let parts: Vec<&str> = t.split('.').collect();
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        assert_eq!(
            k.verify(&format!("{none_header}.{}.", parts[1])),
            None,
            "alg none"
        );
        assert_eq!(k.verify(""), None);
        assert_eq!(k.verify("garbage"), None);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(IdentityKey::new(b"too short").is_err());
    }

    #[test]
    fn expired_tokens_fail() {
        let k = key();
        let claims = Claims {
            sub: "user:1".into(),
            aud: AUDIENCE.into(),
            iss: ISSUER.into(),
            iat: now_secs() - 600,
            exp: now_secs() - 300,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        assert_eq!(k.verify(&t), None);
    }
}
