//! Where a request's credentials are: the `Authorization` header and the
//! session cookie. A leaf module: the listener refuses requests with two of
//! either (`listener::ambiguity`), the session extractor reads the one.

use axum::http::{HeaderMap, header};

/// Name of the session cookie.
pub const COOKIE: &str = "otus_session";

/// The values of every session cookie the request carries, in every
/// `Cookie` header.
pub fn session_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}
