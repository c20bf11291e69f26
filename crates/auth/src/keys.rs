//! Every key the auth service builds, in one place: Redis keys (each under
//! the deployment's prefix, [`otus_db::Redis::key`]) and the login counters'
//! names (the same names in the in-process limiter).
//!
//! | key | holds |
//! |---|---|
//! | `session:<sha256>` | the user id, with the session's TTL |
//! | `user-sessions:<id>` | the set of that user's session hashes (to revoke them all) |
//! | `login:addr:<address>` | login attempts from a client address, with the window as TTL |
//! | `login:name:<username skeleton>` | failed logins of one account, however its name is spelt |

/// A session, by the SHA-256 of its token.
pub fn session(token_hash: &str) -> String {
    format!("session:{token_hash}")
}

/// The set of a user's session hashes.
pub fn user_sessions(user_id: i64) -> String {
    format!("user-sessions:{user_id}")
}

/// The login-attempt counter of a client address.
pub fn login_address(client_address: &str) -> String {
    format!("login:addr:{client_address}")
}

/// The failed-login counter of an account: by the username's skeleton
/// ([`otus_identity::username::skeleton`]), so every spelling login accepts
/// for one account (`Ada`, `ａｄａ`, `аda`, `AdA`) counts against the same limit.
pub fn login_username(username: &str) -> String {
    format!("login:name:{}", otus_identity::username::skeleton(username))
}
