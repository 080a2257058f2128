//! Compaction: cutting expired payloads out of closed segments.
//!
//! A closed segment is copied into `<id>.compacting`, every expired record's frame replaced by
//! its compacted form (the same header and chain hash, the data cut down by the policy) and the
//! frames packed, and the copy is made durable. The switch then happens under the journal's
//! layout lock, so no reader looks a location up in one version and reads the other:
//! 1. one index batch moves the segment's record locations and batch starts to their new
//!    offsets and marks the segment as switching; the index is flushed;
//! 2. the copy is renamed over the segment (atomic) and the directory synced;
//! 3. the mark is removed.
//!
//! A crash before 1 leaves the old segment and a stray copy, removed at the next open; after 1,
//! the next open finds the mark and finishes the rename if it had not happened. Readers already
//! inside the old file keep reading it whole (its inode lives until they close it).
//!
//! The active segment is never touched. What a segment still holds that may expire later is
//! summarised per owner (its oldest uncompacted payload) in the index, so a sweep only reads the
//! segments that have something to cut.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::JournalError;
use super::index::{Index, IndexBatch};
use super::record::{FrameHeader, compact_frame, decode_payload};
use super::segment::{FrameCursor, Location, RawFrame, SegmentFiles, segment_path, sync_dir};
use super::types::{Position, RecordedEvent, Revision};

const LEFTOVER_SUFFIX: &str = ".compacting";

/// What may be cut, decided outside the journal (which knows nothing of payloads or tenants).
pub trait CompactionPolicy {
    /// The owner (an organization) of the payload `event` carries, if it carries one.
    fn payload_owner(&self, event: &RecordedEvent) -> Option<u64>;

    /// `owner`'s payloads recorded before this time (µs) have expired.
    fn expired_before(&self, owner: u64) -> Option<i64>;

    /// `event`'s data without its payload, in the same schema version; `None` keeps it whole.
    fn strip(&self, event: &RecordedEvent) -> Option<Vec<u8>>;

    /// Sees every record an offline walk reads, so a policy can learn from the journal itself.
    fn observe(&mut self, _event: &RecordedEvent) {}
}

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionReport {
    /// Closed segments read (to summarise or rewrite them).
    pub segments_scanned: u64,
    /// Segments rewritten.
    pub segments_rewritten: u64,
    /// Records whose payload was cut.
    pub records_compacted: u64,
    /// Disk space freed (allocated blocks before minus after).
    pub bytes_reclaimed: u64,
}

/// Per owner, the time of the oldest payload a segment still holds.
type Summary = BTreeMap<u64, i64>;

fn summary_due(summary: &Summary, policy: &dyn CompactionPolicy) -> bool {
    summary.iter().any(|(owner, oldest)| {
        policy
            .expired_before(*owner)
            .is_some_and(|before| *oldest < before)
    })
}

/// Holds a pass to a byte rate so it never competes with appends for the disk.
struct Pace {
    bytes_per_second: f64,
    started: Instant,
    bytes: u64,
}

impl Pace {
    fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1) as f64,
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn account(&mut self, bytes: u64) {
        self.bytes += bytes;
        if self.bytes % (1 << 20) < bytes {
            let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// What a pass works on: the journal's files, index and the lock readers take.
pub(crate) struct Target<'a> {
    pub dir: &'a Path,
    pub index: &'a Index,
    pub files: &'a SegmentFiles,
    pub layout: &'a RwLock<()>,
}

/// Compacts every closed segment below `committed` that holds expired payloads.
pub(crate) fn compact(
    target: &Target<'_>,
    segments: &[u64],
    committed: u64,
    policy: &dyn CompactionPolicy,
    bytes_per_second: u64,
) -> Result<CompactionReport, JournalError> {
    let mut report = CompactionReport::default();
    let mut pace = Pace::new(bytes_per_second);
    // A segment is closed once the next one exists; the last one may be active.
    for pair in segments.windows(2) {
        let (id, next) = (pair[0], pair[1]);
        if next > committed {
            break;
        }
        let known = target
            .index
            .compaction_summary(id)?
            .and_then(|bytes| postcard::from_bytes::<Summary>(&bytes).ok());
        let summary = match known {
            Some(summary) => summary,
            None => {
                report.segments_scanned += 1;
                let summary = copy(target.dir, id, policy, &mut pace, false)?.summary;
                save(target.index, id, &summary)?;
                summary
            }
        };
        if !summary_due(&summary, policy) {
            continue;
        }
        report.segments_scanned += 1;
        let copied = copy(target.dir, id, policy, &mut pace, true)?;
        if copied.compacted > 0 {
            let reclaimed = switch(target, id, next, &copied)?;
            report.segments_rewritten += 1;
            report.records_compacted += copied.compacted;
            report.bytes_reclaimed += reclaimed;
        }
        save(target.index, id, &copied.summary)?;
    }
    Ok(report)
}

fn save(index: &Index, id: u64, summary: &Summary) -> Result<(), JournalError> {
    let bytes = postcard::to_stdvec(summary).expect("encoding into a Vec cannot fail");
    Ok(index.save_compaction_summary(id, &bytes)?)
}

/// A record's place in the copy.
struct Moved {
    stream: String,
    revision: Revision,
    position: Position,
    location: Location,
}

struct Copied {
    summary: Summary,
    compacted: u64,
    moved: Vec<Moved>,
    /// Old offset → new offset of every frame.
    offsets: HashMap<u64, u64>,
}

/// Reads segment `id`, summarising what it still holds that may expire; with `write`, also
/// writes a durable, packed copy in which every expired payload is cut.
fn copy(
    dir: &Path,
    id: u64,
    policy: &dyn CompactionPolicy,
    pace: &mut Pace,
    write: bool,
) -> Result<Copied, JournalError> {
    let tmp = leftover_path(dir, id);
    let mut out = if write {
        Some(SegmentCopy::create(&tmp)?)
    } else {
        None
    };
    let mut copied = Copied {
        summary: Summary::new(),
        compacted: 0,
        moved: Vec::new(),
        offsets: HashMap::new(),
    };
    // Passing the segment's own id never continues into the next segment.
    let mut frames = FrameCursor::open(dir, id, 0)?;
    while let Some(frame) = frames.next_frame(id)? {
        pace.account(u64::from(frame.location.len));
        let view = decode_payload(&frame.payload, frame.crc)?;
        let event = view.to_event(&frame.payload);
        let owner = (!view.compacted())
            .then(|| policy.payload_owner(&event))
            .flatten();
        let cut = owner.and_then(|owner| {
            let expired = policy
                .expired_before(owner)
                .is_some_and(|before| event.recorded_at < before);
            let cut = expired
                .then(|| policy.strip(&event))
                .flatten()
                .and_then(|data| compact_frame(&view, &data, frame.location.len));
            // Still to cut: what may expire later, and (when only looking) what could be cut
            // now. An expired payload that cannot be cut keeps nothing due.
            let pending = match cut {
                Some(_) => !write,
                None => !expired,
            };
            if pending {
                let oldest = copied.summary.entry(owner).or_insert(event.recorded_at);
                *oldest = (*oldest).min(event.recorded_at);
            }
            cut
        });
        copied.compacted += u64::from(cut.is_some());
        if let Some(out) = &mut out {
            let offset = out.len;
            let len = match &cut {
                Some(bytes) => out.put(bytes)?,
                None => out.copy(&frame)?,
            };
            copied.offsets.insert(frame.location.offset, offset);
            copied.moved.push(Moved {
                stream: event.stream,
                revision: event.revision,
                position: event.position,
                location: Location {
                    segment: id,
                    offset,
                    len,
                },
            });
        }
    }
    if let Some(out) = out {
        if copied.compacted == 0 {
            drop(out);
            fs::remove_file(&tmp)?;
        } else {
            out.finish()?;
        }
    }
    Ok(copied)
}

/// Puts the durable copy of segment `id` (whose records end before `next`) in its place;
/// returns the disk space freed.
fn switch(target: &Target<'_>, id: u64, next: u64, copied: &Copied) -> Result<u64, JournalError> {
    let path = segment_path(target.dir, id);
    let before = allocated(&path)?;
    let batch = relocations(target.index, id, next, copied)?;
    {
        let _readers_wait = target.layout.write().unwrap_or_else(|e| e.into_inner());
        target.index.apply(batch)?;
        target.index.flush()?;
        fs::rename(leftover_path(target.dir, id), &path)?;
        sync_dir(target.dir)?;
        target.files.forget(id);
    }
    target.index.compacted(id)?;
    Ok(before.saturating_sub(allocated(&path)?))
}

/// The index batch that moves segment `id`'s records and commit starts to their offsets in
/// the copy, and marks the switch.
fn relocations(
    index: &Index,
    id: u64,
    next: u64,
    copied: &Copied,
) -> Result<IndexBatch, JournalError> {
    let mut batch = IndexBatch::default();
    for m in &copied.moved {
        batch.record(&m.stream, m.revision, m.position, m.location);
    }
    for (position, segment, offset) in index.batch_starts(id, next)? {
        let moved = copied.offsets.get(&offset).copied();
        let offset = moved.ok_or_else(|| {
            JournalError::Corrupt(format!(
                "commit at position {position} starts at offset {offset} of segment {segment}, where no record does"
            ))
        })?;
        batch.batch_start(position, segment, offset);
    }
    batch.compacting(id);
    Ok(batch)
}

/// The packed copy being written.
struct SegmentCopy {
    file: BufWriter<File>,
    len: u64,
}

impl SegmentCopy {
    fn create(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            file: BufWriter::with_capacity(1 << 20, file),
            len: 0,
        })
    }

    /// Appends a frame; returns its length.
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<u32> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(bytes.len() as u32)
    }

    /// Appends a frame as it was read.
    fn copy(&mut self, frame: &RawFrame) -> std::io::Result<u32> {
        let header = FrameHeader {
            len: frame.payload.len(),
            crc: frame.crc,
            compacted: frame.compacted,
        };
        let len = self.put(&header.to_bytes())? + self.put(&frame.payload)?;
        debug_assert_eq!(len, frame.location.len, "copied frames have no holes");
        Ok(len)
    }

    fn finish(self) -> std::io::Result<()> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

fn leftover_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{LEFTOVER_SUFFIX}"))
}

fn allocated(path: &Path) -> std::io::Result<u64> {
    Ok(fs::metadata(path)?.blocks() * 512)
}

/// Finishes the switches a crash interrupted and removes the copies that never got that far
/// (the segments they were made from are whole). Returns how many of each there were.
pub(crate) fn recover(dir: &Path, index: &Index) -> Result<(usize, usize), JournalError> {
    let mut finished = 0;
    for id in index.compacting()? {
        let copy = leftover_path(dir, id);
        if copy.exists() {
            fs::rename(&copy, segment_path(dir, id))?;
            sync_dir(dir)?;
            finished += 1;
        }
        index.compacted(id)?;
    }
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with(LEFTOVER_SUFFIX)
        {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok((finished, removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{ExpectedRevision, Journal, JournalOptions, Metadata, NewEvent};

    /// Cuts every `payload` record down to nothing.
    struct CutAll;

    impl CompactionPolicy for CutAll {
        fn payload_owner(&self, event: &RecordedEvent) -> Option<u64> {
            (event.event_type == "payload").then_some(1)
        }
        fn expired_before(&self, _owner: u64) -> Option<i64> {
            Some(i64::MAX)
        }
        fn strip(&self, _event: &RecordedEvent) -> Option<Vec<u8>> {
            Some(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_switch_interrupted_after_the_index_moved_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let options = || JournalOptions {
            sync: false,
            segment_bytes: 8 * 1024,
            ..JournalOptions::default()
        };
        let journal = Journal::open(dir.path(), options()).unwrap();
        for i in 0..12u8 {
            let event = NewEvent {
                event_type: "payload".into(),
                schema_version: 1,
                metadata: Metadata::default(),
                data: vec![i; 2000],
            };
            journal
                .append(format!("s-{}", i % 3), ExpectedRevision::Any, vec![event])
                .await
                .unwrap();
        }
        let before = journal.read_all(0, usize::MAX).unwrap();
        journal.close().await;
        drop(journal);

        // Steps 0 and 1 of a switch of the first segment, then the crash.
        let segments_dir = dir.path().join("segments");
        let ids = super::super::segment::list_segments(&segments_dir).unwrap();
        let index = Index::open(&dir.path().join("index"), 1 << 20).unwrap();
        let mut pace = Pace::new(u64::MAX);
        let copied = copy(&segments_dir, ids[0], &CutAll, &mut pace, true).unwrap();
        assert!(copied.compacted > 0);
        index
            .apply(relocations(&index, ids[0], ids[1], &copied).unwrap())
            .unwrap();
        index.flush().unwrap();
        drop(index);

        let journal = Journal::open(dir.path(), options()).unwrap();
        let after = journal.read_all(0, usize::MAX).unwrap();
        assert_eq!(after.len(), before.len());
        for (old, new) in before.iter().zip(&after) {
            let cut = old.position < ids[1];
            assert_eq!(new.compacted, cut, "position {}", old.position);
            assert_eq!(new.data.is_empty(), cut);
            assert_eq!(
                journal.read_stream(&old.stream, old.revision, 1).unwrap()[0],
                *new
            );
        }
        assert!(!leftover_path(&segments_dir, ids[0]).exists());
        journal.close().await;
    }
}
