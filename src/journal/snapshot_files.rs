//! Large snapshots live in files beside the index, not in sled.
//!
//! sled 0.34 holds a large value in memory once it has read it, whatever its `cache_capacity`.
//! Measured on a journal holding 100,000 rules: reading their 18 MiB view snapshot raised RSS by
//! 115 MiB with an 8 MiB cache. sled also rewrites the whole value into its log on every save,
//! so the index file grew to 1 GiB for 60 MiB of segments. A snapshot over [`FILE_BYTES`] is therefore
//! written to `journal/snapshots/<hex name>-<position>`: a temporary file, fsync, rename, fsync of
//! the directory. The index's `snapshot_files` tree then names it. The previous file goes only
//! once the index that names the new one is flushed, so after a crash the index names a file
//! that exists. A missing or unreadable file is no snapshot: the state is rebuilt from the log.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use super::segment::sync_dir;
use super::types::Position;

/// Snapshots larger than this (bytes) go to a file.
pub(crate) const FILE_BYTES: usize = 64 * 1024;

/// The directory of snapshot files.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
}

fn prefix(name: &str) -> String {
    format!("{}-", hex::encode(name))
}

impl SnapshotFiles {
    /// The files in `dir` (created, private, on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The file name of `name`'s snapshot at `position`.
    pub fn file_name(name: &str, position: Position) -> String {
        format!("{}{position:020}", prefix(name))
    }

    /// Writes `state` durably as `name`'s snapshot at `position`; returns the file name.
    pub fn write(&self, name: &str, position: Position, state: &[u8]) -> std::io::Result<String> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let file_name = Self::file_name(name, position);
        let tmp = self.dir.join(format!("{file_name}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(state)?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join(&file_name))?;
        sync_dir(&self.dir)?;
        Ok(file_name)
    }

    /// The contents of `file_name`, if it can be read.
    pub fn read(&self, file_name: &str) -> Option<Vec<u8>> {
        match fs::read(self.dir.join(file_name)) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(file = file_name, error = %e, "snapshot file unreadable; rebuilding from the log");
                None
            }
        }
    }

    /// Deletes the files of `name` other than `keep`, leftovers of crashed writes included.
    pub fn remove_others(&self, name: &str, keep: Option<&str>) {
        self.remove_matching(|file| file.starts_with(&prefix(name)) && Some(file) != keep);
    }

    /// Deletes the files of every name starting with `name_prefix` (all if it is empty).
    pub fn remove_prefixed(&self, name_prefix: &str) {
        let hex_prefix = hex::encode(name_prefix);
        self.remove_matching(|file| file.starts_with(&hex_prefix));
    }

    fn remove_matching(&self, doomed: impl Fn(&str) -> bool) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            if doomed(&file.to_string_lossy()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// The directory (tests).
    #[cfg(test)]
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_only_the_named_one_is_kept() {
        let temp = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(temp.path().join("snapshots"));
        let first = files.write("rules@1", 10, b"one").unwrap();
        let second = files.write("rules@1", 20, b"two").unwrap();
        let other = files.write("outbound@1", 20, b"three").unwrap();
        assert_eq!(files.read(&second).unwrap(), b"two");
        files.remove_others("rules@1", Some(&second));
        assert!(files.read(&first).is_none());
        assert_eq!(files.read(&second).unwrap(), b"two");
        assert_eq!(files.read(&other).unwrap(), b"three");
        files.remove_prefixed("");
        assert_eq!(fs::read_dir(files.dir()).unwrap().count(), 0);
    }
}
