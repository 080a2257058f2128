//! The data directory's lock: one server at a time, and read-only tools only when none runs.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::JournalError;

const LOCK_FILE: &str = "LOCK";

/// A held advisory lock on a journal directory; released when dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Taken by the server: fails while any other process holds the directory.
    pub fn exclusive(dir: &Path) -> Result<Self, JournalError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(JournalError::Locked(format!(
                "{} is in use by another hookforge process (a running server or a journal command)",
                dir.display()
            ))),
            Err(TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// Taken by read-only tools: fails while a server holds the directory.
    pub fn shared(dir: &Path) -> Result<Self, JournalError> {
        let file = File::open(dir.join(LOCK_FILE))?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(JournalError::Locked(format!(
                "{} is held by a running hookforge server; stop it first, or run this command on a copy of the data dir",
                dir.display()
            ))),
            Err(TryLockError::Error(e)) => Err(e.into()),
        }
    }
}
