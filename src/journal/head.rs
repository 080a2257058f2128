//! The head marker: a small file recording how far the log was known to be committed, and the
//! chain hash there. Offline verification uses it to tell tampering from a torn write: a bad
//! record below the marker was acknowledged and must be intact; past it, only the last,
//! unacknowledged write can be torn; and a log that ends before the marker was truncated.
//!
//! Written atomically (temp file, fsync, rename) at most once a second and at close, so it may
//! lag the log by a second after a crash, never lead it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::record::Hash;
use super::segment::sync_dir;
use super::types::Position;

const FILE: &str = "HEAD";

/// The recorded head: every position below `next` was committed; `hash` is the chain hash of
/// position `next - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadMarker {
    pub next: Position,
    pub hash: Hash,
}

/// Atomically replaces the marker in `dir`.
pub(crate) fn write(dir: &Path, head: HeadMarker) -> std::io::Result<()> {
    let tmp = dir.join("HEAD.tmp");
    let mut file = File::create(&tmp)?;
    writeln!(file, "{} {}", head.next, hex::encode(head.hash))?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)
}

/// The marker in `dir`, if there is a readable one.
pub(crate) fn read(dir: &Path) -> Option<HeadMarker> {
    let text = fs::read_to_string(dir.join(FILE)).ok()?;
    let (next, hash) = text.trim().split_once(' ')?;
    let hash: Hash = hex::decode(hash).ok()?.try_into().ok()?;
    Some(HeadMarker {
        next: next.parse().ok()?,
        hash,
    })
}
