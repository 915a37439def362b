//! Secrets at rest: client secrets, refresh and access tokens and pending
//! authorizations are sealed with XChaCha20-Poly1305 under a master key that
//! lives outside the database (a `0600` key file in the data directory, or the
//! `HIKYAKU_MASTER_KEY` environment variable). The associated data binds each
//! sealed value to its row and column, so a blob copied elsewhere fails to open.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// Format version of a sealed blob: `1 ‖ nonce(24) ‖ ciphertext`.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "master.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    // The I/O error is part of the message, not a chained source: said once.
    #[error("cannot read or create the master key {path}: {error}")]
    KeyFile { path: String, error: std::io::Error },
    #[error(
        "the master key in {0} is not 32 bytes of base64; restore it from backup (without it, stored tokens and secrets cannot be read)"
    )]
    BadKey(String),
    #[error(
        "a stored secret cannot be decrypted: the master key does not match the database, or the value was damaged"
    )]
    Open,
    #[error("encryption failed")]
    Seal,
}

/// The master key. Its `Debug` never shows the key.
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Loads the key from `HIKYAKU_MASTER_KEY` or `{data_dir}/master.key`,
    /// creating the file with a fresh random key (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SecretsError> {
        if let Ok(value) = std::env::var("HIKYAKU_MASTER_KEY") {
            return Self::from_base64(value.trim(), "HIKYAKU_MASTER_KEY");
        }
        let path = data_dir.join(KEY_FILE);
        let shown = path.display().to_string();
        let io = |error| SecretsError::KeyFile {
            path: shown.clone(),
            error,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_base64(text.trim(), &shown),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                rand::rng().fill_bytes(&mut key);
                let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&path).map_err(io)?;
                file.write_all(encoded.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Self::from_bytes(&key).ok_or_else(|| SecretsError::BadKey(shown.clone()))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn from_base64(text: &str, origin: &str) -> Result<Self, SecretsError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| SecretsError::BadKey(origin.to_string()))?;
        Self::from_bytes(&bytes).ok_or_else(|| SecretsError::BadKey(origin.to_string()))
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != KEY_LEN {
            return None;
        }
        XChaCha20Poly1305::new_from_slice(bytes)
            .ok()
            .map(|cipher| Self { cipher })
    }

    /// A random key that is never written anywhere (tests).
    pub fn ephemeral() -> Self {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        match Self::from_bytes(&key) {
            Some(k) => k,
            None => unreachable!("a 32-byte key is always accepted"),
        }
    }

    /// Encrypts `plaintext`, bound to `aad` (e.g. `b"account:1:refresh_token"`).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce_bytes);
        let nonce = XNonce::try_from(&nonce_bytes[..]).map_err(|_| SecretsError::Seal)?;
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts a blob made by [`MasterKey::seal`] with the same `aad`.
    pub fn open(&self, aad: &str, blob: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if blob.len() < 1 + NONCE_LEN || blob[0] != VERSION {
            return Err(SecretsError::Open);
        }
        let nonce = XNonce::try_from(&blob[1..1 + NONCE_LEN]).map_err(|_| SecretsError::Open)?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &blob[1 + NONCE_LEN..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Open)
    }

    /// Seals a UTF-8 string.
    pub fn seal_str(&self, aad: &str, plaintext: &str) -> Result<Vec<u8>, SecretsError> {
        self.seal(aad, plaintext.as_bytes())
    }

    /// Opens a sealed UTF-8 string.
    pub fn open_string(&self, aad: &str, blob: &[u8]) -> Result<String, SecretsError> {
        String::from_utf8(self.open(aad, blob)?).map_err(|_| SecretsError::Open)
    }
}

/// SHA-256 in hex: how session ids, API tokens and setup tokens are stored.
pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A random token of `bytes` bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = MasterKey::ephemeral();
        let blob = key.seal("account:1:refresh_token", b"secret").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open("account:1:refresh_token", &blob).unwrap(),
            b"secret"
        );
        assert!(key.open("account:2:refresh_token", &blob).is_err());
        assert!(
            MasterKey::ephemeral()
                .open("account:1:refresh_token", &blob)
                .is_err()
        );
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_create(dir.path()).unwrap();
        let blob = a.seal("x", b"y").unwrap();
        let b = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(b.open("x", &blob).unwrap(), b"y");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
