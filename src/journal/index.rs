//! The sled index beside the segment files: stream revisions, heads, batch starts and the tail.
//!
//! One tree with prefixed keys, so that everything a commit indexes is one atomic sled batch:
//! - `s | stream | 0 | revision(BE)` → position, segment, offset, frame length
//! - `h | stream` → last revision
//! - `b | position(BE)` → segment, offset of the first record of a commit batch
//! - `m | tail` → next position, segment, end offset, last chain hash
//! - `c | segment(BE)` → a compacted copy of the segment is switching in (see `compaction`)
//!
//! The index is not flushed on every commit: the segment files are the source of truth and a
//! start-up re-indexes whatever the segments hold past the last persisted tail.

use std::path::Path;

use super::record::Hash;
use super::segment::Location;
use super::snapshot_files::{FILE_BYTES, SnapshotFiles};
use super::types::{Position, Revision};

const STREAM: u8 = b's';
const HEAD: u8 = b'h';
const BATCH: u8 = b'b';
const TAIL_KEY: &[u8] = b"mtail";
const COMPACTING: u8 = b'c';

/// Where the log ends: the next position to assign and the byte after the last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    pub next_position: Position,
    pub segment: u64,
    pub offset: u64,
    pub last_hash: Hash,
}

impl Tail {
    pub(crate) const EMPTY: Tail = Tail {
        next_position: 0,
        segment: 0,
        offset: 0,
        last_hash: [0; 32],
    };
}

/// The sled-backed index.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    db: sled::Db,
    tree: sled::Tree,
    snapshots: sled::Tree,
    /// Large snapshots: name → position and the file holding the state.
    snapshot_files: sled::Tree,
    files: SnapshotFiles,
    parked: sled::Tree,
    compaction: sled::Tree,
}

/// Index entries for one commit, applied atomically.
#[derive(Default)]
pub(crate) struct IndexBatch {
    batch: sled::Batch,
}

impl IndexBatch {
    pub fn record(
        &mut self,
        stream: &str,
        revision: Revision,
        position: Position,
        location: Location,
    ) {
        let mut value = [0u8; 28];
        value[0..8].copy_from_slice(&position.to_be_bytes());
        value[8..16].copy_from_slice(&location.segment.to_be_bytes());
        value[16..24].copy_from_slice(&location.offset.to_be_bytes());
        value[24..28].copy_from_slice(&location.len.to_be_bytes());
        self.batch.insert(stream_key(stream, revision), &value[..]);
    }

    /// Marks `segment` as switching to its compacted copy, in the batch that moves its records.
    pub fn compacting(&mut self, segment: u64) {
        self.batch
            .insert(prefixed(COMPACTING, &segment.to_be_bytes()), &[][..]);
    }

    pub fn head(&mut self, stream: &str, revision: Revision) {
        self.batch.insert(
            prefixed(HEAD, stream.as_bytes()),
            &revision.to_be_bytes()[..],
        );
    }

    pub fn batch_start(&mut self, position: Position, segment: u64, offset: u64) {
        let mut value = [0u8; 16];
        value[0..8].copy_from_slice(&segment.to_be_bytes());
        value[8..16].copy_from_slice(&offset.to_be_bytes());
        self.batch
            .insert(prefixed(BATCH, &position.to_be_bytes()), &value[..]);
    }

    pub fn tail(&mut self, tail: &Tail) {
        let mut value = Vec::with_capacity(56);
        value.extend_from_slice(&tail.next_position.to_be_bytes());
        value.extend_from_slice(&tail.segment.to_be_bytes());
        value.extend_from_slice(&tail.offset.to_be_bytes());
        value.extend_from_slice(&tail.last_hash);
        self.batch.insert(TAIL_KEY, value);
    }
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut key = prefixed(STREAM, stream.as_bytes());
    key.push(0);
    key
}

fn stream_key(stream: &str, revision: Revision) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

fn parked_key(consumer: &str, position: Position) -> Vec<u8> {
    let mut key = consumer.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

impl Index {
    /// Opens (or creates) the index at `path`. Fails if another process holds it.
    pub fn open(path: &Path, cache_bytes: u64) -> sled::Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(1000))
            .open()?;
        let tree = db.open_tree("index")?;
        let snapshots = db.open_tree("snapshots")?;
        let snapshot_files = db.open_tree("snapshot_files")?;
        let files = SnapshotFiles::new(
            path.parent()
                .unwrap_or_else(|| Path::new("."))
                .join("snapshots"),
        );
        let parked = db.open_tree("parked")?;
        let compaction = db.open_tree("compaction")?;
        Ok(Self {
            db,
            tree,
            snapshots,
            snapshot_files,
            files,
            parked,
            compaction,
        })
    }

    /// Applies one commit's entries atomically (durable at the next flush).
    pub fn apply(&self, batch: IndexBatch) -> sled::Result<()> {
        self.tree.apply_batch(batch.batch)
    }

    /// Makes everything applied so far durable.
    pub fn flush(&self) -> sled::Result<()> {
        self.db.flush().map(drop)
    }

    /// The persisted tail, if anything was ever indexed.
    pub fn tail(&self) -> sled::Result<Option<Tail>> {
        Ok(self.tree.get(TAIL_KEY)?.map(|v| Tail {
            next_position: be_u64(&v[0..]),
            segment: be_u64(&v[8..]),
            offset: be_u64(&v[16..]),
            last_hash: v[24..56].try_into().expect("32-byte hash"),
        }))
    }

    /// The last revision of `stream`, if it exists.
    pub fn head(&self, stream: &str) -> sled::Result<Option<Revision>> {
        Ok(self
            .tree
            .get(prefixed(HEAD, stream.as_bytes()))?
            .map(|v| be_u64(&v)))
    }

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        self.tree.scan_prefix([HEAD]).count()
    }

    /// Up to `max` records of `stream` from `from` on: `(revision, position, location)`.
    pub fn stream_records(
        &self,
        stream: &str,
        from: Revision,
        max: usize,
    ) -> sled::Result<Vec<(Revision, Position, Location)>> {
        let prefix = stream_prefix(stream);
        let end = {
            let mut end = prefix.clone();
            *end.last_mut().expect("prefix ends in 0") = 1;
            end
        };
        let mut out = Vec::new();
        for item in self.tree.range(stream_key(stream, from)..end).take(max) {
            let (key, v) = item?;
            let revision = be_u64(&key[prefix.len()..]);
            let location = Location {
                segment: be_u64(&v[8..]),
                offset: be_u64(&v[16..]),
                len: u32::from_be_bytes(v[24..28].try_into().expect("4 bytes")),
            };
            out.push((revision, be_u64(&v[0..]), location));
        }
        Ok(out)
    }

    /// The start of the commit batch that holds `position`: `(first position, segment, offset)`.
    pub fn batch_floor(&self, position: Position) -> sled::Result<Option<(Position, u64, u64)>> {
        let upper = prefixed(BATCH, &position.to_be_bytes());
        let found = self
            .tree
            .range(vec![BATCH]..=upper)
            .next_back()
            .transpose()?;
        Ok(found.map(|(k, v)| (be_u64(&k[1..]), be_u64(&v[0..]), be_u64(&v[8..]))))
    }

    /// Commit batches starting in `from..until`: `(first position, segment, offset)`.
    pub fn batch_starts(
        &self,
        from: Position,
        until: Position,
    ) -> sled::Result<Vec<(Position, u64, u64)>> {
        let lo = prefixed(BATCH, &from.to_be_bytes());
        let hi = prefixed(BATCH, &until.to_be_bytes());
        self.tree
            .range(lo..hi)
            .map(|item| item.map(|(k, v)| (be_u64(&k[1..]), be_u64(&v[0..]), be_u64(&v[8..]))))
            .collect()
    }

    /// Segments whose switch to a compacted copy a crash may have interrupted.
    pub fn compacting(&self) -> sled::Result<Vec<u64>> {
        self.tree
            .scan_prefix([COMPACTING])
            .keys()
            .map(|k| k.map(|k| be_u64(&k[1..])))
            .collect()
    }

    /// The switch of `segment` is complete.
    pub fn compacted(&self, segment: u64) -> sled::Result<()> {
        self.tree
            .remove(prefixed(COMPACTING, &segment.to_be_bytes()))
            .map(drop)
    }

    /// Bytes the index occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Stores a snapshot of a projection or actor taken at `position`: in the index if small,
    /// in a file it names if large (see [`super::snapshot_files`]).
    pub fn save_snapshot(&self, name: &str, position: Position, state: &[u8]) -> sled::Result<()> {
        if state.len() <= FILE_BYTES {
            self.snapshots
                .insert(name, [&position.to_be_bytes()[..], state].concat())?;
            if self.snapshot_files.remove(name)?.is_some() {
                self.db.flush()?;
                self.files.remove_others(name, None);
            }
            return Ok(());
        }
        let file = self.files.write(name, position, state)?;
        self.snapshot_files.insert(
            name,
            [&position.to_be_bytes()[..], file.as_bytes()].concat(),
        )?;
        self.snapshots.remove(name)?;
        // The older file goes once the index naming the new one is on disk.
        self.db.flush()?;
        self.files.remove_others(name, Some(&file));
        Ok(())
    }

    /// The latest snapshot stored under `name`.
    pub fn load_snapshot(&self, name: &str) -> sled::Result<Option<(Position, Vec<u8>)>> {
        if let Some(pointer) = self.snapshot_files.get(name)? {
            let file = String::from_utf8_lossy(&pointer[8..]);
            return Ok(self
                .files
                .read(&file)
                .map(|state| (be_u64(&pointer), state)));
        }
        Ok(self
            .snapshots
            .get(name)?
            .map(|v| (be_u64(&v), v[8..].to_vec())))
    }

    /// Drops every snapshot (they are an optimisation; state is rebuilt from the log).
    pub fn clear_snapshots(&self) -> sled::Result<()> {
        self.snapshots.clear()?;
        self.snapshot_files.clear()?;
        self.db.flush()?;
        self.files.remove_prefixed("");
        Ok(())
    }

    /// Drops the snapshots whose names start with `prefix`.
    pub fn remove_snapshots(&self, prefix: &str) -> sled::Result<usize> {
        let mut removed = 0;
        for tree in [&self.snapshots, &self.snapshot_files] {
            for key in tree.scan_prefix(prefix).keys() {
                tree.remove(key?)?;
                removed += 1;
            }
        }
        self.db.flush()?;
        self.files.remove_prefixed(prefix);
        Ok(removed)
    }

    /// Records that `consumer` could not process the record at `position` (durable at once:
    /// parking is rare, and must survive the crash that may follow).
    pub fn park(&self, consumer: &str, position: Position, value: &[u8]) -> sled::Result<()> {
        self.parked.insert(parked_key(consumer, position), value)?;
        self.parked.flush().map(drop)
    }

    /// Whether `consumer` parked the record at `position`.
    pub fn is_parked(&self, consumer: &str, position: Position) -> sled::Result<bool> {
        self.parked.contains_key(parked_key(consumer, position))
    }

    /// Every parked record: `(consumer, position, value)`, by consumer then position.
    pub fn parked(&self) -> sled::Result<Vec<(String, Position, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.parked.iter() {
            let (key, value) = item?;
            let split = key.len().saturating_sub(9);
            let consumer = String::from_utf8_lossy(&key[..split]).into_owned();
            out.push((consumer, be_u64(&key[split + 1..]), value.to_vec()));
        }
        Ok(out)
    }

    /// Forgets a parked record.
    pub fn unpark(&self, consumer: &str, position: Position) -> sled::Result<()> {
        self.parked.remove(parked_key(consumer, position))?;
        self.parked.flush().map(drop)
    }

    /// What compaction last found in `segment` (an encoded summary), if it looked.
    pub fn compaction_summary(&self, segment: u64) -> sled::Result<Option<Vec<u8>>> {
        Ok(self
            .compaction
            .get(segment.to_be_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Records what compaction found in `segment`. Losing it in a crash only costs a rescan.
    pub fn save_compaction_summary(&self, segment: u64, summary: &[u8]) -> sled::Result<()> {
        self.compaction
            .insert(segment.to_be_bytes(), summary)
            .map(drop)
    }
}
