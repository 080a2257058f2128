//! Per-organization data keys: what makes erasure final.
//!
//! Payloads (webhook bodies and headers, job extra vars, published events) are sealed under a
//! key of their organization before they are journaled. Each key is sealed by the master key
//! and kept outside the journal, one file per organization (`keys/org-<id>.key`). Erasing an
//! organization rewrites its file without its keys: every copy sealed under them, in live or
//! compacted segments and in journal backups, stops opening at once. The journal itself stays
//! append-only and verifiable.
//!
//! After an erasure the next payload creates a new key generation, so the organization keeps
//! working and a later erasure can destroy the new keys too.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{MasterKey, NONCE_LEN, SecretError, random_bytes};
use crate::codec::{Protected, Sealed};

/// Why organization data does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// Its key was destroyed by an erasure.
    #[error("erased")]
    Erased,
    /// The bytes do not open under the key they name (altered, or another organization's).
    #[error("sealed data does not open (altered, or sealed for another organization)")]
    Corrupt,
}

/// An organization's key file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    /// Every generation up to this one was erased.
    erased_through: u32,
    /// Live generations, each sealed by the master key.
    keys: Vec<(u32, Sealed)>,
}

/// One organization's opened keys.
#[derive(Default)]
struct OrgKeys {
    erased_through: u32,
    keys: BTreeMap<u32, XChaCha20Poly1305>,
}

/// The data keys of every organization, opened on first use and kept while the process runs
/// (a few hundred bytes per organization).
pub struct DataKeys {
    dir: PathBuf,
    master: Arc<MasterKey>,
    orgs: Mutex<HashMap<u64, Arc<OrgKeys>>>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKeys({})", self.dir.display())
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SecretError + '_ {
    move |source| SecretError::KeyFile {
        path: path.display().to_string(),
        source,
    }
}

fn key_field(org: u64, generation: u32) -> String {
    format!("organization-{org}/data-key-{generation}")
}

impl DataKeys {
    /// Keys kept under `dir` (created if missing), sealed by `master`.
    pub fn load(dir: &Path, master: Arc<MasterKey>) -> Result<Self, SecretError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            master,
            orgs: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, org: u64) -> PathBuf {
        self.dir.join(format!("org-{org}.key"))
    }

    fn read_file(&self, org: u64) -> Result<KeyFile, SecretError> {
        let path = self.path(org);
        match fs::read(&path) {
            Ok(bytes) => postcard::from_bytes(&bytes).map_err(|_| SecretError::Unseal),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Replaces the file atomically and durably: a crash leaves the old file or the new one.
    fn write_file(&self, org: u64, file: &KeyFile) -> Result<(), SecretError> {
        let path = self.path(org);
        let temporary = path.with_extension("key.new");
        let bytes = postcard::to_allocvec(file).expect("a key file always encodes");
        let write = || -> std::io::Result<()> {
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
            fs::rename(&temporary, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(io_error(&path))
    }

    fn opened(&self, org: u64, file: &KeyFile) -> Result<OrgKeys, SecretError> {
        let mut keys = BTreeMap::new();
        for (generation, sealed) in &file.keys {
            let key = self.master.open(&key_field(org, *generation), sealed)?;
            let key: [u8; 32] = key.try_into().map_err(|_| SecretError::Unseal)?;
            keys.insert(*generation, XChaCha20Poly1305::new(&key.into()));
        }
        Ok(OrgKeys {
            erased_through: file.erased_through,
            keys,
        })
    }

    /// Organization `org`'s keys, loaded from disk the first time.
    fn keys(&self, org: u64) -> Result<Arc<OrgKeys>, SecretError> {
        let mut orgs = self.orgs.lock().expect("data keys poisoned");
        if let Some(keys) = orgs.get(&org) {
            return Ok(keys.clone());
        }
        let keys = Arc::new(self.opened(org, &self.read_file(org)?)?);
        orgs.insert(org, keys.clone());
        Ok(keys)
    }

    /// The key new data of `org` is sealed under, made (and on disk) first if there is none.
    fn current(&self, org: u64) -> Result<(u32, Arc<OrgKeys>), SecretError> {
        let keys = self.keys(org)?;
        if let Some(generation) = keys.keys.keys().next_back() {
            return Ok((*generation, keys));
        }
        let mut orgs = self.orgs.lock().expect("data keys poisoned");
        let mut file = self.read_file(org)?;
        if file.keys.is_empty() {
            let generation = file.erased_through + 1;
            let key = random_bytes::<32>();
            let sealed = self.master.seal(&key_field(org, generation), &key);
            file.keys.push((generation, sealed));
            self.write_file(org, &file)?;
        }
        let keys = Arc::new(self.opened(org, &file)?);
        orgs.insert(org, keys.clone());
        let generation = *keys.keys.keys().next_back().expect("a key was just made");
        Ok((generation, keys))
    }

    /// Seals `value` for organization `org`, bound to `field` (what kind of data it is).
    pub fn seal<T: Serialize>(
        &self,
        org: u64,
        field: &str,
        value: &T,
    ) -> Result<Protected<T>, SecretError> {
        let (generation, keys) = self.current(org)?;
        let cipher = &keys.keys[&generation];
        let plaintext = postcard::to_allocvec(value).expect("plain data always encodes");
        let nonce = random_bytes::<NONCE_LEN>();
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: field.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(Protected::Sealed {
            generation,
            bytes: Sealed(bytes),
        })
    }

    /// `protected` sealed for `org` and `field` if it is in the clear (sealed data is kept).
    pub fn protect<T: Serialize>(
        &self,
        org: u64,
        field: &str,
        protected: Protected<T>,
    ) -> Result<Protected<T>, SecretError> {
        match protected {
            Protected::Clear(value) => self.seal(org, field, &value),
            sealed => Ok(sealed),
        }
    }

    /// The value of organization `org`'s `protected` data sealed for `field`.
    pub fn open<T: DeserializeOwned>(
        &self,
        org: u64,
        field: &str,
        protected: Protected<T>,
    ) -> Result<T, Unreadable> {
        let (generation, bytes) = match protected {
            Protected::Clear(value) => return Ok(value),
            Protected::Sealed { generation, bytes } => (generation, bytes),
        };
        let keys = self.keys(org).map_err(|e| {
            tracing::error!(org, error = %e, "an organization's data keys do not load");
            Unreadable::Corrupt
        })?;
        let Some(cipher) = keys.keys.get(&generation) else {
            return Err(if generation <= keys.erased_through {
                Unreadable::Erased
            } else {
                Unreadable::Corrupt
            });
        };
        if bytes.0.len() < NONCE_LEN {
            return Err(Unreadable::Corrupt);
        }
        let (nonce, ciphertext) = bytes.0.split_at(NONCE_LEN);
        let plaintext = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| Unreadable::Corrupt)?;
        postcard::from_bytes(&plaintext).map_err(|_| Unreadable::Corrupt)
    }

    /// The newest generation an erasure of `org` would destroy, if it has any live key.
    pub fn live_generation(&self, org: u64) -> Result<Option<u32>, SecretError> {
        Ok(self.keys(org)?.keys.keys().next_back().copied())
    }

    /// Destroys every key of `org` up to `through`, durably; the next seal makes a new one.
    /// Repeating it is harmless (it is how a start finishes an erasure a crash interrupted).
    pub fn erase_through(&self, org: u64, through: u32) -> Result<(), SecretError> {
        let mut orgs = self.orgs.lock().expect("data keys poisoned");
        let mut file = self.read_file(org)?;
        let before = (file.erased_through, file.keys.len());
        file.erased_through = file.erased_through.max(through);
        file.keys.retain(|(generation, _)| *generation > through);
        if (file.erased_through, file.keys.len()) != before {
            self.write_file(org, &file)?;
        }
        orgs.insert(org, Arc::new(self.opened(org, &file)?));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn keys(dir: &Path) -> DataKeys {
        let master = MasterKey::from_base64(&super::super::BASE64.encode([3u8; 32])).unwrap();
        DataKeys::load(dir, Arc::new(master)).unwrap()
    }

    #[test]
    fn sealed_data_opens_for_its_organization_and_field_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let sealed = keys.seal(1, "webhook", &"the payload".to_owned()).unwrap();
        let Protected::Sealed { generation, bytes } = &sealed else {
            panic!("not sealed")
        };
        assert_eq!(*generation, 1);
        assert!(!bytes.0.windows(7).any(|w| w == b"payload"));
        assert_eq!(
            keys.open(1, "webhook", sealed.clone()).unwrap(),
            "the payload"
        );
        assert_eq!(
            keys.open::<String>(1, "job", sealed.clone()),
            Err(Unreadable::Corrupt)
        );
        keys.seal(2, "webhook", &0u8).unwrap();
        assert_eq!(
            keys.open::<String>(2, "webhook", sealed.clone()),
            Err(Unreadable::Corrupt)
        );
        assert_eq!(
            keys.open(9, "webhook", Protected::Clear("old".to_owned())),
            Ok("old".to_owned())
        );
        // Another process on the same directory opens it too: the key is on disk.
        assert_eq!(
            super::tests::keys(dir.path())
                .open(1, "webhook", sealed)
                .unwrap(),
            "the payload"
        );
    }

    #[test]
    fn erasing_destroys_every_earlier_key_and_the_next_seal_starts_a_generation() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let before = keys.seal(1, "f", &1u32).unwrap();
        let other = keys.seal(2, "f", &2u32).unwrap();
        assert_eq!(keys.live_generation(1).unwrap(), Some(1));
        keys.erase_through(1, 1).unwrap();
        assert_eq!(keys.live_generation(1).unwrap(), None);
        assert_eq!(
            keys.open::<u32>(1, "f", before.clone()),
            Err(Unreadable::Erased)
        );
        assert_eq!(
            keys.open(2, "f", other).unwrap(),
            2,
            "other tenants keep theirs"
        );
        let after = keys.seal(1, "f", &3u32).unwrap();
        assert!(matches!(after, Protected::Sealed { generation: 2, .. }));
        // A restart sees the same: the erased key is gone from disk.
        let reopened = super::tests::keys(dir.path());
        assert_eq!(
            reopened.open::<u32>(1, "f", before),
            Err(Unreadable::Erased)
        );
        assert_eq!(reopened.open(1, "f", after).unwrap(), 3);
        // Finishing an erasure again changes nothing.
        reopened.erase_through(1, 1).unwrap();
        assert_eq!(reopened.live_generation(1).unwrap(), Some(2));
        let file = fs::read(dir.path().join("org-1.key")).unwrap();
        let file: KeyFile = postcard::from_bytes(&file).unwrap();
        assert_eq!((file.erased_through, file.keys.len()), (1, 1));
    }
}
