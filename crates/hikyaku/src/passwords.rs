//! Argon2id password hashes for Remote UI users and SMTP submitters. Hashing
//! takes tens of milliseconds of CPU and 19 MiB of memory, so it runs off the
//! async threads, on [`THREADS`] threads of its own: a burst of logins (eight
//! devices connecting together) then costs time, not memory. Each check's
//! working memory is freed when it ends, and the process's allocator (see
//! `main.rs`) gives blocks that large back to the system at once, so an idle
//! relay holds none. (Under glibc's allocator the freed blocks stayed in
//! each thread's arena: 150 MiB after eight simultaneous logins.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher};
use sha2::{Digest, Sha256};

/// Argon2 computations at once.
pub const THREADS: usize = 2;

type Work = Box<dyn FnOnce() + Send>;

/// The Argon2 threads' queue, started at the first use.
static QUEUE: OnceLock<Mutex<mpsc::Sender<Work>>> = OnceLock::new();

fn start_threads() -> Mutex<mpsc::Sender<Work>> {
    let (tx, rx) = mpsc::channel::<Work>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..THREADS {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || {
                loop {
                    let next = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(work) => work(),
                        Err(_) => return,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start an Argon2 thread");
        }
    }
    Mutex::new(tx)
}

/// Runs `f` on an Argon2 thread; `None` when no thread could take it.
async fn on_argon2_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let work: Work = Box::new(move || {
        let _ = done.send(f());
    });
    QUEUE
        .get_or_init(start_threads)
        .lock()
        .ok()?
        .send(work)
        .ok()?;
    result.await.ok()
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password (PHC string with its parameters and salt).
pub async fn hash(password: String) -> Result<String, HashError> {
    on_argon2_thread(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .unwrap_or_else(|| Err(HashError("no Argon2 thread is running".to_owned())))
}

/// Whether `password` matches the stored hash; a malformed hash never matches.
pub async fn verify(password: String, stored: String) -> bool {
    on_argon2_thread(move || verify_in(&mut Vec::new(), password.as_bytes(), &stored))
        .await
        .unwrap_or(false)
}

/// Largest working memory a stored hash may ask for (our hashes use 19 MiB);
/// a hash asking for more was not made here and is refused.
const MAX_BLOCKS: usize = 256 * 1024;

/// Argon2 verification of a PHC string in `blocks`, grown to the hash's
/// working memory if smaller.
fn verify_in(blocks: &mut Vec<argon2::Block>, password: &[u8], stored: &str) -> bool {
    let Ok(hash) = argon2::PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let need = params.block_count();
    if need > MAX_BLOCKS {
        return false;
    }
    if blocks.len() < need {
        blocks.resize(need, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt.as_ref(),
        &mut out,
        &mut blocks[..need],
    );
    computed.is_ok()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            out.as_slice(),
            expected.as_ref(),
        ))
}

/// Remembers recent successful logins, so a device that opens a new SMTP
/// session for every message (most do) does not pay Argon2 each time.
///
/// An entry holds a salted SHA-256 of the password under a key that lives
/// only in this process, next to the stored Argon2 hash it was checked
/// against: a changed password (a new stored hash) never matches, and an
/// entry expires after `ttl`. Failed logins are never cached.
pub struct LoginCache {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<String, Remembered>>,
    /// Argon2 verifications this cache could not spare (for tests and figures).
    pub argon2_checks: std::sync::atomic::AtomicU64,
}

struct Remembered {
    stored: String,
    digest: [u8; 32],
    at: Instant,
}

/// Logins remembered at once; beyond that the oldest are forgotten.
const MAX_REMEMBERED: usize = 1024;

impl LoginCache {
    pub fn new(ttl: Duration) -> Self {
        LoginCache {
            key: rand::random(),
            ttl,
            entries: Mutex::new(HashMap::new()),
            argon2_checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether `password` matches `stored`, from memory when this login
    /// succeeded recently, else by Argon2 (and remembered on success).
    pub async fn verify(&self, user: &str, password: &str, stored: &str) -> bool {
        let digest = self.digest(user, password);
        let now = Instant::now();
        if let Ok(entries) = self.entries.lock()
            && let Some(r) = entries.get(user)
            && r.stored == stored
            && now.duration_since(r.at) < self.ttl
            && constant_time_eq(&r.digest, &digest)
        {
            return true;
        }
        self.argon2_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ok = verify(password.to_owned(), stored.to_owned()).await;
        if ok && let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_REMEMBERED {
                let ttl = self.ttl;
                entries.retain(|_, r| now.duration_since(r.at) < ttl);
                if entries.len() >= MAX_REMEMBERED
                    && let Some(oldest) = entries
                        .iter()
                        .min_by_key(|(_, r)| r.at)
                        .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
            entries.insert(
                user.to_owned(),
                Remembered {
                    stored: stored.to_owned(),
                    digest,
                    at: now,
                },
            );
        }
        ok
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = super::hash("a long password".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("a long password".into(), h.clone()).await);
        assert!(!super::verify("another password".into(), h).await);
        assert!(!super::verify("x".into(), "not a hash".into()).await);
    }

    #[test]
    fn verification_in_kept_memory_agrees_with_the_library() {
        use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
        let mut blocks = Vec::new();
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 3, 1, None).unwrap(),
        );
        for hasher in [Argon2::default(), small] {
            let h = hasher.hash_password(b"pass phrase").unwrap().to_string();
            let lib = |p: &[u8]| {
                Argon2::default()
                    .verify_password(p, &argon2::PasswordHash::new(&h).unwrap())
                    .is_ok()
            };
            assert!(super::verify_in(&mut blocks, b"pass phrase", &h));
            assert!(lib(b"pass phrase"));
            assert!(!super::verify_in(&mut blocks, b"pass phrasE", &h));
            assert!(!lib(b"pass phrasE"));
        }
        // The memory grew to the larger hash and is reused.
        assert_eq!(blocks.len(), 19 * 1024);
        // A hash asking for 1 GiB was not made here.
        let huge = "$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(!super::verify_in(&mut blocks, b"x", huge));
        assert!(!super::verify_in(&mut blocks, b"x", "$argon2id$garbage"));
    }

    #[tokio::test]
    async fn the_login_cache_remembers_only_what_matches() {
        let h = super::hash("right password".into()).await.unwrap();
        let cache = super::LoginCache::new(std::time::Duration::from_secs(60));
        let checks =
            |c: &super::LoginCache| c.argon2_checks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(!cache.verify("mfp", "wrong", &h).await);
        assert!(cache.verify("mfp", "right password", &h).await);
        assert_eq!(checks(&cache), 2);
        // Remembered: no Argon2 for the same login again.
        assert!(cache.verify("mfp", "right password", &h).await);
        assert_eq!(checks(&cache), 2);
        // A wrong password, another user or a changed stored hash (the
        // password was changed) are checked by Argon2 again.
        assert!(!cache.verify("mfp", "wrong", &h).await);
        assert!(cache.verify("other", "right password", &h).await);
        let h2 = super::hash("new password".into()).await.unwrap();
        assert!(!cache.verify("mfp", "right password", &h2).await);
        assert!(cache.verify("mfp", "new password", &h2).await);
        assert_eq!(checks(&cache), 6);
        // Expired entries are checked again too.
        let short = super::LoginCache::new(std::time::Duration::ZERO);
        assert!(short.verify("mfp", "right password", &h).await);
        assert!(short.verify("mfp", "right password", &h).await);
        assert_eq!(checks(&short), 2);
    }
}
