//! Secrets at rest and in responses: the master key (AEAD), API token digests, masking.
//!
//! Secrets that must be recovered (webhook keys, outbound signing secrets, controller
//! credentials) are sealed with XChaCha20-Poly1305 under a master key, bound by associated data
//! to the field they belong to, so a ciphertext cannot be moved to another resource. API tokens
//! are never recoverable: only their SHA-256 digest is stored.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::codec::Sealed;

mod data_keys;
mod values;

pub use self::data_keys::{DataKeys, Unreadable};
pub use self::values::{MASK, is_secret_name, mask_secret_members, mask_text};

const NONCE_LEN: usize = 24;
const KEY_FILE: &str = "master.key";

/// Errors loading the master key or opening a sealed secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The configured key is not base64 of 32 bytes.
    #[error("master_key must be base64 of exactly 32 bytes")]
    BadKey,
    /// The key file could not be read or created.
    #[error("master key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The ciphertext was altered or sealed under another key or field.
    #[error("a sealed secret does not open (wrong master key, or the data was altered)")]
    Unseal,
}

/// How many opened secrets [`MasterKey::open_string`] keeps; a few per rule and endpoint in use.
const OPENED_CAPACITY: usize = 4096;

/// The key that seals every stored secret.
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
    /// Opened text by (field, ciphertext). Keyed by the ciphertext, so a rotation (which seals a
    /// new value) misses at once and the old entry ages out.
    opened: quick_cache::sync::Cache<(String, Vec<u8>), String>,
}

/// Borrowed form of the cache key: hashes exactly like `(String, Vec<u8>)`.
#[derive(Hash)]
struct Opened<'a>(&'a str, &'a [u8]);

impl quick_cache::Equivalent<(String, Vec<u8>)> for Opened<'_> {
    fn equivalent(&self, key: &(String, Vec<u8>)) -> bool {
        self.0 == key.0 && self.1 == key.1.as_slice()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Uses `configured` (base64 of 32 bytes, from `HOOKFORGE_MASTER_KEY`) if given; otherwise
    /// reads `<data_dir>/master.key`, generating it (mode 0600) on first start.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self, SecretError> {
        if let Some(encoded) = configured {
            return Self::from_base64(encoded);
        }
        let path = data_dir.join(KEY_FILE);
        let key_file_error = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>();
                write_private_file(&path, BASE64.encode(key).as_bytes()).map_err(key_file_error)?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) => Err(key_file_error(e)),
        }
    }

    /// A key from base64 text.
    pub fn from_base64(encoded: &str) -> Result<Self, SecretError> {
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| SecretError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(Self::from_bytes(&key))
    }

    fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
            opened: quick_cache::sync::Cache::new(OPENED_CAPACITY),
        }
    }

    /// Encrypts `plaintext`, bound to `field` (e.g. `rule-7/webhook_key`).
    pub fn seal(&self, field: &str, plaintext: &[u8]) -> Sealed {
        let nonce = random_bytes::<NONCE_LEN>();
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: field.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Sealed(sealed)
    }

    /// Decrypts a secret sealed for `field`.
    pub fn open(&self, field: &str, sealed: &Sealed) -> Result<Vec<u8>, SecretError> {
        if sealed.0.len() < NONCE_LEN {
            return Err(SecretError::Unseal);
        }
        let (nonce, ciphertext) = sealed.0.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Unseal)
    }

    /// Decrypts a secret that was sealed from UTF-8 text. Hot secrets (webhook keys, signing
    /// secrets) are opened once and then served from a small cache.
    pub fn open_string(&self, field: &str, sealed: &Sealed) -> Result<String, SecretError> {
        if let Some(text) = self.opened.get(&Opened(field, &sealed.0)) {
            return Ok(text);
        }
        let text = String::from_utf8(self.open(field, sealed)?).map_err(|_| SecretError::Unseal)?;
        self.opened
            .insert((field.to_owned(), sealed.0.clone()), text.clone());
        Ok(text)
    }
}

/// Writes a file readable by its owner only (0600), failing if it already exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A new random secret: URL-safe base64 of 32 random bytes (43 characters).
pub fn generate_secret() -> String {
    BASE64URL.encode(random_bytes::<32>())
}

/// A new API token: `hf_` followed by 32 random bytes in URL-safe base64.
pub fn generate_token() -> String {
    format!("hf_{}", generate_secret())
}

/// The digest under which an API token is stored and looked up.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Shows just enough of a secret to recognise it: `abc***xyz`; short secrets are fully masked.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "***".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_field_and_key() {
        let key = MasterKey::from_base64(&BASE64.encode([7u8; 32])).unwrap();
        let sealed = key.seal("rule-1/webhook_key", b"s3cret");
        assert!(!sealed.0.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(key.open("rule-1/webhook_key", &sealed).unwrap(), b"s3cret");
        assert!(key.open("rule-2/webhook_key", &sealed).is_err());
        let other = MasterKey::from_base64(&BASE64.encode([8u8; 32])).unwrap();
        assert!(other.open("rule-1/webhook_key", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.0.last_mut().unwrap() ^= 1;
        assert!(key.open("rule-1/webhook_key", &altered).is_err());
        assert_ne!(
            key.seal("f", b"x").0,
            key.seal("f", b"x").0,
            "nonces are random"
        );
    }

    #[test]
    fn cached_openings_stay_bound_to_field_and_ciphertext() {
        let key = MasterKey::from_base64(&BASE64.encode([7u8; 32])).unwrap();
        let first = key.seal("rule-1/webhook_key", b"old");
        assert_eq!(
            key.open_string("rule-1/webhook_key", &first).unwrap(),
            "old"
        );
        // A hit for one field is no key to another: the other field still fails to open.
        assert!(key.open_string("rule-2/webhook_key", &first).is_err());
        let rotated = key.seal("rule-1/webhook_key", b"new");
        assert_eq!(
            key.open_string("rule-1/webhook_key", &rotated).unwrap(),
            "new"
        );
        assert_eq!(
            key.open_string("rule-1/webhook_key", &first).unwrap(),
            "old"
        );
        let mut altered = rotated.clone();
        *altered.0.last_mut().unwrap() ^= 1;
        assert!(key.open_string("rule-1/webhook_key", &altered).is_err());
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::load(None, dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal("f", b"v");
        let second = MasterKey::load(None, dir.path()).unwrap();
        assert_eq!(second.open("f", &sealed).unwrap(), b"v");
        assert!(matches!(
            MasterKey::from_base64("c2hvcnQ="),
            Err(SecretError::BadKey)
        ));
    }

    #[test]
    fn masking_and_tokens() {
        assert_eq!(mask("abcdefghijklmnop"), "abc***nop");
        assert_eq!(mask("short"), "***");
        let token = generate_token();
        assert!(token.starts_with("hf_") && token.len() == 46);
        assert_ne!(generate_token(), token);
        assert_eq!(token_digest("a"), token_digest("a"));
    }
}
