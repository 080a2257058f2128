//! The single writer: drains queued appends, checks expected revisions, writes one segment
//! chunk, makes it durable with one fdatasync, indexes it, then resolves every ticket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use tokio::sync::oneshot;

use super::AppendError;
use super::head::{self, HeadMarker};
use super::index::{Index, IndexBatch, Tail};
use super::record::{decode_payload, encode_frame, split_frame};
use super::segment::{ActiveSegment, Location};
use super::shared::Shared;
use super::types::{Appended, ExpectedRevision, NewEvent, RecordedEvent, Revision};

/// Longest stream id accepted.
pub(crate) const MAX_STREAM_LEN: usize = 256;
/// How often the head marker is refreshed while appends flow.
const HEAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Largest event body accepted.
pub(crate) const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// What the writer thread is asked to do.
pub(crate) enum Command {
    Append(AppendRequest),
    /// Flush the index and stop; later appends fail.
    Close(oneshot::Sender<()>),
}

pub(crate) struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// Tuning the writer needs.
pub(crate) struct WriterConfig {
    pub journal_dir: PathBuf,
    pub segments_dir: PathBuf,
    pub segment_bytes: u64,
    pub max_batch_events: usize,
    pub sync: bool,
}

pub(crate) struct Writer {
    config: WriterConfig,
    index: Index,
    segment: ActiveSegment,
    tail: Tail,
    last_recorded_at: i64,
    heads: HashMap<String, Option<Revision>>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    head_written: Option<Instant>,
}

/// A commit that cannot be completed; the writer stops rather than run ahead of the disk.
struct Fatal(String);

impl Writer {
    pub fn new(
        config: WriterConfig,
        index: Index,
        segment: ActiveSegment,
        tail: Tail,
        last_recorded_at: i64,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            config,
            index,
            segment,
            tail,
            last_recorded_at,
            heads: HashMap::new(),
            shared,
            buf: Vec::new(),
            head_written: None,
        }
    }

    /// Runs until closed or until the disk fails.
    pub fn run(mut self, rx: Receiver<Command>) {
        let mut pending = Vec::new();
        let outcome = loop {
            let Ok(first) = rx.recv() else { break Ok(None) };
            let mut events = 0;
            let mut close = queue(first, &mut pending, &mut events);
            while close.is_none() && events < self.config.max_batch_events {
                match rx.try_recv() {
                    Ok(cmd) => close = queue(cmd, &mut pending, &mut events),
                    Err(_) => break,
                }
            }
            if let Err(Fatal(reason)) = self.commit(&mut pending) {
                for req in pending.drain(..) {
                    let _ = req
                        .reply
                        .send(Err(AppendError::Unavailable(reason.clone())));
                }
                break Err(reason);
            }
            if let Some(done) = close {
                break Ok(Some(done));
            }
        };
        drop(rx);
        self.write_head();
        let flushed = self.index.flush();
        match outcome {
            Ok(done) => {
                if let Err(e) = flushed {
                    tracing::error!(error = %e, "journal index flush at close failed; it is rebuilt from the segments at next start");
                }
                self.shared.close(None);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Err(reason) => {
                tracing::error!(%reason, "journal writer stopped");
                self.shared.close(Some(reason));
            }
        }
    }

    fn head(&mut self, stream: &str) -> Result<Option<Revision>, Fatal> {
        if let Some(head) = self.heads.get(stream) {
            return Ok(*head);
        }
        let head = self
            .index
            .head(stream)
            .map_err(|e| Fatal(format!("index read failed: {e}")))?;
        if self.heads.len() >= 100_000 {
            self.heads.clear();
        }
        self.heads.insert(stream.to_owned(), head);
        Ok(head)
    }

    fn now_micros(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_micros();
        self.last_recorded_at = self.last_recorded_at.max(now);
        self.last_recorded_at
    }

    /// Commits the valid requests of `pending` as one durable batch and answers all of them.
    fn commit(&mut self, pending: &mut Vec<AppendRequest>) -> Result<(), Fatal> {
        if pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        if self.segment.len >= self.config.segment_bytes {
            self.roll()?;
        }
        let recorded_at = self.now_micros();
        let base_offset = self.segment.len;
        let mut tail = self.tail;
        let mut overlay: HashMap<String, Revision> = HashMap::new();
        let mut index = IndexBatch::default();
        let mut accepted = Vec::with_capacity(pending.len());
        self.buf.clear();
        for req in pending.drain(..) {
            if let Err(reason) = validate(&req) {
                let _ = req.reply.send(Err(AppendError::Invalid(reason)));
                continue;
            }
            let current = match overlay.get(&req.stream) {
                Some(rev) => Some(*rev),
                None => self.head(&req.stream)?,
            };
            if !req.expected.admits(current) {
                let err = AppendError::WrongExpectedRevision {
                    stream: req.stream.clone(),
                    expected: req.expected,
                    actual: current,
                };
                let _ = req.reply.send(Err(err));
                continue;
            }
            let first_position = tail.next_position;
            let mut revision = current.map_or(0, |r| r + 1);
            for event in &req.events {
                let start = self.buf.len();
                let hash = encode_frame(
                    &mut self.buf,
                    &tail.last_hash,
                    tail.next_position,
                    &req.stream,
                    revision,
                    recorded_at,
                    event,
                );
                let location = Location {
                    segment: self.segment.id,
                    offset: base_offset + start as u64,
                    len: (self.buf.len() - start) as u32,
                };
                index.record(&req.stream, revision, tail.next_position, location);
                tail.next_position += 1;
                tail.last_hash = hash;
                revision += 1;
            }
            let last_revision = revision - 1;
            overlay.insert(req.stream.clone(), last_revision);
            let appended = Appended {
                first_position,
                last_position: tail.next_position - 1,
                last_revision,
            };
            accepted.push((req.reply, appended, req.events.len()));
        }
        if accepted.is_empty() {
            return Ok(());
        }

        if let Err(e) = self.segment.append(&self.buf) {
            // Nothing was acknowledged: cut the partial write and refuse this batch only
            // (a full disk may be freed), unless even that fails.
            let reason = format!("segment write failed: {e}");
            self.restore_segment_len(base_offset)
                .map_err(|e2| Fatal(format!("{reason}; truncation failed: {e2}")))?;
            for (reply, _, _) in accepted {
                let _ = reply.send(Err(AppendError::Unavailable(reason.clone())));
            }
            return Ok(());
        }
        if self.config.sync {
            // After a failed fsync the page cache can no longer be trusted: stop.
            self.segment
                .sync()
                .map_err(|e| Fatal(format!("segment fsync failed: {e}")))?;
        }
        let synced = started.elapsed();

        for (stream, revision) in &overlay {
            index.head(stream, *revision);
        }
        index.batch_start(self.tail.next_position, self.segment.id, base_offset);
        tail.segment = self.segment.id;
        tail.offset = self.segment.len;
        index.tail(&tail);
        self.index
            .apply(index)
            .map_err(|e| Fatal(format!("index update failed: {e}")))?;
        self.tail = tail;
        for (stream, revision) in &overlay {
            if let Some(head) = self.heads.get_mut(stream) {
                *head = Some(*revision);
            }
        }

        let events: usize = accepted.iter().map(|(_, _, n)| n).sum();
        let written = self.buf.len();
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(written));
        self.shared.remember(committed_records(buf));
        self.shared.publish(
            tail.next_position,
            overlay.iter().map(|(s, r)| (s.as_str(), *r)),
        );
        for (reply, appended, _) in accepted {
            let _ = reply.send(Ok(appended));
        }
        self.shared
            .metrics
            .observe_commit(events, written, synced, started.elapsed());
        if self
            .head_written
            .is_none_or(|at| at.elapsed() >= HEAD_INTERVAL)
        {
            self.write_head();
        }
        Ok(())
    }

    /// Records the committed head for offline verification (best effort: it only sharpens
    /// what `journal verify` can tell apart).
    fn write_head(&mut self) {
        if !self.config.sync {
            return;
        }
        let marker = HeadMarker {
            next: self.tail.next_position,
            hash: self.tail.last_hash,
        };
        if let Err(e) = head::write(&self.config.journal_dir, marker) {
            tracing::warn!(error = %e, "could not write the journal head marker");
        }
        self.head_written = Some(Instant::now());
    }

    fn restore_segment_len(&mut self, len: u64) -> std::io::Result<()> {
        self.segment = ActiveSegment::open(&self.config.segments_dir, self.segment.id, len)?;
        Ok(())
    }

    /// Starts a new segment at the next position; the old one is complete and synced.
    fn roll(&mut self) -> Result<(), Fatal> {
        let segment = ActiveSegment::create(&self.config.segments_dir, self.tail.next_position)
            .map_err(|e| Fatal(format!("creating segment failed: {e}")))?;
        self.segment = segment;
        Ok(())
    }
}

/// The records of a commit, decoded once from the bytes just written; their data shares them.
fn committed_records(buf: Vec<u8>) -> Vec<RecordedEvent> {
    let bytes = bytes::Bytes::from(buf);
    let mut records = Vec::new();
    let mut rest: &[u8] = &bytes;
    while !rest.is_empty() {
        let Ok((payload, crc, len)) = split_frame(rest) else {
            break;
        };
        match decode_payload(payload, crc) {
            Ok(view) => records.push(view.to_event(&bytes)),
            Err(_) => break,
        }
        rest = &rest[len..];
    }
    records
}

/// Adds an append to the pending batch, or returns the close request.
fn queue(
    cmd: Command,
    pending: &mut Vec<AppendRequest>,
    events: &mut usize,
) -> Option<oneshot::Sender<()>> {
    match cmd {
        Command::Append(req) => {
            *events += req.events.len();
            pending.push(req);
            None
        }
        Command::Close(done) => Some(done),
    }
}

fn validate(req: &AppendRequest) -> Result<(), String> {
    if req.stream.is_empty() || req.stream.len() > MAX_STREAM_LEN || req.stream.contains('\0') {
        return Err(format!(
            "stream id must be 1-{MAX_STREAM_LEN} bytes without NUL"
        ));
    }
    if req.events.is_empty() {
        return Err("an append needs at least one event".into());
    }
    if let Some(e) = req.events.iter().find(|e| e.data.len() > MAX_EVENT_BYTES) {
        return Err(format!(
            "event {} is larger than {MAX_EVENT_BYTES} bytes",
            e.event_type
        ));
    }
    Ok(())
}
