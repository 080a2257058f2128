//! Read-only access to a stopped journal, for audit tools: replay, verify, stats.
//!
//! It reads the segment files only (opened read-only, never the sled index, which cannot be
//! opened without writing) and refuses to run while a server holds the directory.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::JournalError;
use super::compaction::CompactionPolicy;
use super::head::{self, HeadMarker};
use super::lock::DirLock;
use super::record::{FrameError, GENESIS_HASH, Hash, decode_payload};
use super::segment::{CursorError, FrameCursor, list_segments, segment_path};
use super::types::{JournalStats, Position, RecordedEvent};

/// A journal directory opened for reading by an offline tool.
#[derive(Debug)]
pub struct ReadOnlyJournal {
    dir: PathBuf,
    segments_dir: PathBuf,
    segments: Vec<u64>,
    _lock: DirLock,
}

/// The outcome of walking the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked and found intact.
    pub verified: u64,
    /// Of those, records whose payload retention cut: their header and chain link are intact,
    /// their data is a cut-down version the digest no longer covers.
    pub compacted: u64,
    /// The hex chain hash of the last intact record.
    pub head_hash: String,
    /// The first position that is altered, missing or breaks the chain, and why.
    pub first_bad: Option<(Position, String)>,
    /// An incomplete last write (never acknowledged; cut at the next start), if present.
    pub torn_tail: Option<String>,
}

impl VerifyReport {
    /// Whether the journal is intact.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

impl ReadOnlyJournal {
    /// Opens the journal under `dir` (a server's `<data dir>/journal`) for reading.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let segments_dir = dir.join("segments");
        if !segments_dir.is_dir() {
            return Err(JournalError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no journal at {} (expected a segments/ directory)",
                    dir.display()
                ),
            )));
        }
        let lock = DirLock::shared(dir)?;
        let segments = list_segments(&segments_dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            segments_dir,
            segments,
            _lock: lock,
        })
    }

    /// Every intact record from position `from` on, in order; stops at the first damage.
    pub fn events(
        &self,
        from: Position,
    ) -> impl Iterator<Item = Result<RecordedEvent, JournalError>> + '_ {
        let start = self
            .segments
            .iter()
            .rev()
            .find(|id| **id <= from)
            .copied()
            .unwrap_or(0);
        let mut cursor =
            FrameCursor::open(&self.segments_dir, start, 0).map_err(JournalError::from);
        let mut next = start;
        let mut done = false;
        std::iter::from_fn(move || {
            loop {
                if done {
                    return None;
                }
                let frames = match &mut cursor {
                    Ok(c) => c,
                    Err(_) => {
                        done = true;
                        let err = std::mem::replace(
                            &mut cursor,
                            Err(JournalError::Closed("done".into())),
                        );
                        return Some(Err(err.expect_err("checked above")));
                    }
                };
                let frame = match frames.next_frame(next) {
                    Ok(Some(frame)) => frame,
                    Ok(None) | Err(CursorError::Frame(FrameError::Incomplete, _)) => return None,
                    Err(e) => {
                        done = true;
                        return Some(Err(e.into()));
                    }
                };
                let event =
                    decode_payload(&frame.payload, frame.crc).map(|v| v.to_event(&frame.payload));
                next += 1;
                match event {
                    Ok(event) if event.position < from => continue,
                    Ok(event) => return Some(Ok(event)),
                    Err(e) => {
                        done = true;
                        return Some(Err(e.into()));
                    }
                }
            }
        })
    }

    /// Walks every record and its hash chain; `progress` is called with each verified position.
    ///
    /// The head marker tells tampering from a crash: damage below it is reported; past it, an
    /// unreadable last write is a torn tail; a log that ends before it was truncated.
    pub fn verify(&self, progress: impl FnMut(Position)) -> Result<VerifyReport, JournalError> {
        let marker = head::read(&self.dir);
        let mut report = self.walk(marker, progress)?;
        if let (Some(marker), None) = (marker, &report.first_bad)
            && report.verified < marker.next
        {
            report.first_bad = Some((
                report.verified,
                format!(
                    "records {}..{} are missing: the head marker says {} were committed (the journal was truncated)",
                    report.verified,
                    marker.next - 1,
                    marker.next
                ),
            ));
        }
        Ok(report)
    }

    fn walk(
        &self,
        marker: Option<HeadMarker>,
        mut progress: impl FnMut(Position),
    ) -> Result<VerifyReport, JournalError> {
        let committed = marker.map_or(0, |m| m.next);
        let mut report = VerifyReport {
            verified: 0,
            compacted: 0,
            head_hash: hex::encode(GENESIS_HASH),
            first_bad: None,
            torn_tail: None,
        };
        let mut prev: Hash = GENESIS_HASH;
        let mut next: Position = 0;
        let last_segment = self.segments.last().copied();
        let bad = |report: &mut VerifyReport, at: Position, why: String| {
            report.first_bad = Some((at, why))
        };
        for (i, &segment) in self.segments.iter().enumerate() {
            if segment != next {
                let why = if segment > next {
                    format!(
                        "records {next}..{} are missing (no segment holds them)",
                        segment - 1
                    )
                } else {
                    format!("segment {segment} overlaps records already seen")
                };
                bad(&mut report, next, why);
                return Ok(report);
            }
            let is_last = Some(segment) == last_segment;
            let mut frames = FrameCursor::open(&self.segments_dir, segment, 0)?;
            loop {
                let frame = match frames.next_frame(u64::MAX) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(CursorError::Io(e)) => return Err(e.into()),
                    Err(CursorError::Frame(e, (_, offset))) => {
                        let at_end = is_last
                            && next >= committed
                            && self.rest_is_tail(segment, offset, &e)?;
                        if at_end {
                            report.torn_tail = Some(format!(
                                "an incomplete write at the end of segment {segment} (offset {offset}); it was never acknowledged and is discarded at the next start"
                            ));
                        } else {
                            bad(
                                &mut report,
                                next,
                                format!(
                                    "record altered or truncated: {e} (segment {segment}, offset {offset})"
                                ),
                            );
                        }
                        return Ok(report);
                    }
                };
                let view = match decode_payload(&frame.payload, frame.crc) {
                    Ok(view) => view,
                    Err(e) => {
                        let end = frame.location.offset + u64::from(frame.location.len);
                        if is_last
                            && self.segment_len(segment)? == end
                            && i + 1 == self.segments.len()
                        {
                            report.torn_tail =
                                Some(format!("a damaged last write in segment {segment}: {e}"));
                        } else {
                            bad(&mut report, next, format!("record altered: {e}"));
                        }
                        return Ok(report);
                    }
                };
                if view.position() != next {
                    let why = if view.position() > next {
                        format!("records {next}..{} were removed", view.position() - 1)
                    } else {
                        format!(
                            "found position {} again where {next} was expected",
                            view.position()
                        )
                    };
                    bad(&mut report, next, why);
                    return Ok(report);
                }
                if view.expected_hash(&prev) != view.hash() {
                    bad(
                        &mut report,
                        next,
                        "hash chain broken: the record or one before it was altered".into(),
                    );
                    return Ok(report);
                }
                if view.compacted() {
                    report.compacted += 1;
                } else if !view.data_matches_digest() {
                    bad(
                        &mut report,
                        next,
                        "event data altered (digest mismatch)".into(),
                    );
                    return Ok(report);
                }
                if let Some(marker) = marker
                    && next + 1 == marker.next
                    && view.hash() != marker.hash
                {
                    bad(
                        &mut report,
                        next,
                        "chain hash differs from the head marker's: the log was rewritten".into(),
                    );
                    return Ok(report);
                }
                prev = view.hash();
                report.verified += 1;
                report.head_hash = hex::encode(prev);
                progress(next);
                next += 1;
            }
        }
        Ok(report)
    }

    fn segment_len(&self, segment: u64) -> std::io::Result<u64> {
        Ok(fs::metadata(segment_path(&self.segments_dir, segment))?.len())
    }

    /// Whether a bad frame at `offset` is the torn end of the log rather than damage.
    fn rest_is_tail(&self, segment: u64, offset: u64, error: &FrameError) -> std::io::Result<bool> {
        if *error == FrameError::Incomplete {
            return Ok(true);
        }
        let bytes = fs::read(segment_path(&self.segments_dir, segment))?;
        Ok(bytes
            .get(offset as usize..)
            .unwrap_or_default()
            .iter()
            .all(|b| *b == 0))
    }

    /// Counts events and streams, measures the files, and tells what compaction did and could
    /// still do under `policy` (which learns from the records it is shown).
    pub fn stats(&self, policy: &mut dyn CompactionPolicy) -> Result<JournalStats, JournalError> {
        let mut stats = JournalStats::default();
        let mut streams = HashSet::new();
        let (mut first, mut last) = (None, None);
        // Per owner, (time, bytes) of each payload not yet cut: what expired is known at the end.
        let mut payloads: HashMap<u64, Vec<(i64, u64)>> = HashMap::new();
        for event in self.events(0) {
            let event = event?;
            policy.observe(&event);
            stats.events += 1;
            if event.compacted {
                stats.compacted_records += 1;
            } else if let Some(owner) = policy.payload_owner(&event) {
                payloads
                    .entry(owner)
                    .or_default()
                    .push((event.recorded_at, event.data.len() as u64));
            }
            if !streams.contains(&event.stream) {
                streams.insert(event.stream.clone());
            }
            first.get_or_insert(event.recorded_at);
            last = Some(event.recorded_at);
        }
        stats.streams = streams.len() as u64;
        stats.reclaimable_bytes = payloads
            .iter()
            .filter_map(|(owner, sizes)| Some((policy.expired_before(*owner)?, sizes)))
            .map(|(before, sizes)| {
                let expired = sizes.partition_point(|(at, _)| *at < before);
                sizes[..expired].iter().map(|(_, bytes)| bytes).sum::<u64>()
            })
            .sum();
        for id in &self.segments {
            stats.segment_bytes += self.segment_len(*id)?;
            stats.segment_bytes_allocated +=
                fs::metadata(segment_path(&self.segments_dir, *id))?.blocks() * 512;
        }
        stats.index_bytes = dir_size(&self.dir.join("index"))?;
        let rfc3339 =
            |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339());
        stats.first_recorded_at = first.and_then(rfc3339);
        stats.last_recorded_at = last.and_then(rfc3339);
        Ok(stats)
    }
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
