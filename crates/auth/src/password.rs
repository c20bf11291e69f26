//! Password hashing with argon2id (OWASP parameters: m=19 MiB, t=2, p=1) and
//! session token generation.

use argon2::{
    Argon2, Block, PasswordHash, PasswordHasher as _, PasswordVerifier as _,
    password_hash::{
        Output, SaltString,
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
    } else if password.contains('\0') {
        // Many clients and stores cut strings at NUL; refuse it everywhere.
        Some("password must not contain NUL characters".into())
    } else {
        None
    }
}

/// The argon2id PHC string for `password`, with a fresh random salt.
/// Allocates its own 19 MiB: for one-off use (start-up, tests). Requests go
/// through [`Hasher`].
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string `phc`. Malformed hashes never
/// match. Allocates like [`hash`].
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Memory of one argon2id computation with the parameters in use (m=19 MiB).
pub const WORK_MEMORY_BYTES: usize = argon2::Params::DEFAULT_M_COST as usize * 1024;

/// Why a hash or verification did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every work buffer stayed busy for the whole wait: the service is at
    /// its bound for password hashing.
    #[error("password hashing is at capacity")]
    Busy,
    /// A bug: hashing itself failed or its task died.
    #[error("hashing failed: {0}")]
    Failed(String),
}

/// Password hashing with a bounded memory budget, whatever the number of
/// concurrent requests: at most `max_concurrent` argon2id computations run at
/// once, each in one of that many work buffers that are allocated once and
/// reused (so the process's memory is `max_concurrent` x 19 MiB at most, and
/// the allocator never sees a fresh 19 MiB request that it might keep). A
/// request that cannot get a buffer within `max_wait` gets
/// [`HashError::Busy`] (the caller answers 503 with `Retry-After`).
#[derive(Clone)]
pub struct Hasher {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    buffers: std::sync::Arc<std::sync::Mutex<Vec<Vec<Block>>>>,
    max_wait: std::time::Duration,
}

impl Hasher {
    /// A hasher running at most `max_concurrent` (at least 1) computations.
    pub fn new(max_concurrent: usize, max_wait: std::time::Duration) -> Self {
        Self {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
            buffers: std::sync::Arc::default(),
            max_wait,
        }
    }

    /// The argon2id PHC string for `password`, with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move |blocks| hash_into(&password, blocks)).await
    }

    /// Whether `password` matches the PHC string `phc` (malformed hashes, and
    /// hashes needing more memory than a work buffer, never match).
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, HashError> {
        self.run(move |blocks| Ok(verify_into(&password, &phc, blocks)))
            .await
    }

    /// Runs `work` on a blocking thread with a work buffer, once a permit is
    /// free. The permit and buffer go with the thread: a caller that gives up
    /// (client gone) does not free them before the computation ends.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> Result<T, String> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Failed("hasher closed".into()))?;
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = buffers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            // Never more buffers than permits: one is allocated only when all
            // existing ones are in use by other permit holders.
            let mut blocks = taken
                .unwrap_or_else(|| vec![Block::default(); argon2::Params::DEFAULT_M_COST as usize]);
            let result = work(&mut blocks);
            buffers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(blocks);
            result
        })
        .await
        .map_err(|e| HashError::Failed(format!("hash task: {e}")))?
        .map_err(HashError::Failed)
    }
}

fn hash_into(password: &str, blocks: &mut [Block]) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| e.to_string())?;
    let argon = Argon2::default();
    let output = Output::init_with(argon2::Params::DEFAULT_OUTPUT_LEN, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_raw, out, &mut *blocks)
            .map_err(argon2::password_hash::Error::from)
    })
    .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: argon2::password_hash::ParamsString::try_from(argon.params())
            .map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

fn verify_into(password: &str, phc: &str, blocks: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        argon2::Algorithm::try_from(parsed.algorithm),
        argon2::Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    if params.block_count() > blocks.len() {
        tracing::error!(
            m_cost = params.m_cost(),
            "stored password hash needs more memory than a work buffer; refusing it"
        );
        return false;
    }
    let version = parsed
        .version
        .and_then(|v| argon2::Version::try_from(v).ok())
        .unwrap_or_default();
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_raw, out, &mut *blocks)
            .map_err(argon2::password_hash::Error::from)
    });
    // Output's equality is constant-time.
    computed.is_ok_and(|c| c == expected)
}

/// 256 random bits, base64url without padding.
fn random_256_bits() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new bearer token: 256 random bits, base64url without padding.
pub fn new_session_token() -> String {
    random_256_bits()
}

/// A password nobody knows: its hash is what a login for an unknown
/// username is checked against, so that it costs what a known one does.
pub fn unknown_password() -> String {
    random_256_bits()
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

    #[tokio::test]
    async fn the_bounded_hasher_agrees_with_the_reference_implementation() {
        let hasher = Hasher::new(2, std::time::Duration::from_secs(30));
        let ours = hasher.hash("correct horse".into()).await.unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        // Each side verifies the other's hashes.
        assert!(verify("correct horse", &ours));
        assert!(!verify("wrong horse", &ours));
        let reference = hash("correct horse").unwrap();
        assert!(
            hasher
                .verify("correct horse".into(), reference.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse".into(), reference)
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("x".into(), "not a hash".into())
                .await
                .unwrap()
        );
        // A hash asking for more memory than a work buffer is refused, not run.
        let greedy = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(!hasher.verify("x".into(), greedy.into()).await.unwrap());
    }

    #[tokio::test]
    async fn the_hasher_runs_at_most_its_bound_and_reuses_buffers() {
        let hasher = Hasher::new(2, std::time::Duration::from_secs(60));
        let jobs: Vec<_> = (0..8)
            .map(|i| {
                let h = hasher.clone();
                tokio::spawn(async move { h.hash(format!("password {i}")).await })
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        let buffers = hasher.buffers.lock().unwrap().len();
        assert!(
            (1..=2).contains(&buffers),
            "{buffers} work buffers for a bound of 2"
        );
    }

    #[tokio::test]
    async fn a_hasher_at_its_bound_answers_busy_after_the_wait() {
        let hasher = Hasher::new(1, std::time::Duration::from_millis(1));
        let held = hasher.permits.clone().acquire_owned().await.unwrap();
        assert!(matches!(
            hasher.hash("password".into()).await,
            Err(HashError::Busy)
        ));
        drop(held);
        assert!(hasher.hash("password".into()).await.is_ok());
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
        assert!(check_policy("long\0enough").is_some());
    }
}
