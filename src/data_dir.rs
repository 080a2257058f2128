//! The data directory is private by construction: it holds webhook payloads, template data and
//! the master key.
//!
//! At start the server sets its umask to `077`, so every file it (or sled, or a job) creates is
//! `0600` and every directory `0700` whatever the umask it was started with, creates the data
//! directory `0700`, and tightens anything an earlier version or the operator left readable by
//! others, saying so in the log.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Most entries inspected when tightening an existing directory (a journal holds a few dozen
/// files; a directory with more was not made by hookforge and is left as found below that).
const MAX_ENTRIES: usize = 10_000;

/// Makes `dir` private: umask `077` for the process, `dir` created `0700`, and existing files
/// and directories under it stripped of group and other permissions.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tightened = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        seen += 1;
        if seen > MAX_ENTRIES {
            break;
        }
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o700))?;
            tightened.push(format!("{} ({:o})", path.display(), mode));
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    if !tightened.is_empty() {
        tracing::warn!(
            count = tightened.len(),
            first = %tightened[0],
            "the data directory was readable by other users; removed group and other permissions"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_data_dir_is_tightened_and_new_files_are_private() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        fs::create_dir_all(dir.join("journal")).unwrap();
        fs::write(dir.join("journal/old.seg"), b"x").unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(
            dir.join("journal/old.seg"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("journal")), 0o700);
        assert_eq!(mode(&dir.join("journal/old.seg")), 0o600);
        fs::write(dir.join("new"), b"y").unwrap();
        assert_eq!(
            mode(&dir.join("new")),
            0o600,
            "the umask applies to new files"
        );
    }
}
