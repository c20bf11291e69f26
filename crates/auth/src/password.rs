//! Password hashing with argon2id (OWASP parameters: m=19 MiB, t=2, p=1) and
//! session token generation.

use argon2::{
    Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _,
    password_hash::{
        SaltString,
        rand_core::{OsRng, RngCore as _},
    },
};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in characters (bounds hashing work).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Why a password is refused, if it is.
pub fn check_policy(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n == 0 {
        Some("password is required".into())
    } else if n < MIN_PASSWORD_CHARS {
        Some(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        ))
    } else if n > MAX_PASSWORD_CHARS {
        Some(format!(
            "password must be at most {MAX_PASSWORD_CHARS} characters"
        ))
    } else {
        None
    }
}

/// The argon2id PHC string for `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string `phc`. Malformed hashes never
/// match.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new bearer token: 256 random bits, base64url without padding.
pub fn new_session_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored for a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse", &a));
        assert!(!verify("wrong horse", &a));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let t = new_session_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, new_session_token());
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(token_hash(&t), t);
    }

    #[test]
    fn password_policy() {
        assert!(check_policy("").is_some());
        assert!(check_policy("short").is_some());
        assert!(check_policy("long enough").is_none());
        assert!(check_policy(&"x".repeat(129)).is_some());
    }
}
