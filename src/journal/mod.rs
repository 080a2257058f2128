//! The event journal: an append-only, EventStore-style log with streams, one global order and
//! catch-up subscriptions. This is the only module that touches sled.
//!
//! Records live in append-only segment files (`segments/<first position>.seg`) made durable by
//! one fdatasync per group commit; sled (`index/`) maps stream revisions and batch starts to
//! segment locations and stores snapshots. See `docs/decisions/0002-journal-layout.md` for why
//! the bytes are not inside sled. Nothing in this module's public API names a sled type, so a
//! different backend (NATS JetStream for multi-node) can stand behind the same methods.

mod compaction;
mod cursor;
mod head;
mod index;
mod lock;
mod metrics;
mod offline;
mod record;
mod segment;
mod shared;
mod snapshot_files;
mod subscription;
mod types;
mod writer;

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;

pub use self::compaction::{CompactionPolicy, CompactionReport};
pub use self::metrics::JournalMetrics;
pub use self::offline::{ReadOnlyJournal, VerifyReport};
pub use self::subscription::{StreamSubscription, Subscription};
pub use self::types::*;

use self::cursor::LogCursor;
use self::index::{Index, IndexBatch, Tail};
use self::lock::DirLock;
use self::record::{FrameError, decode_payload, split_frame};
use self::segment::{
    ActiveSegment, CursorError, FrameCursor, SegmentFiles, list_segments, segment_path,
};
use self::shared::Shared;
use self::writer::{AppendRequest, Command, Writer, WriterConfig};

/// Why an append was refused. The journal is unchanged by a refused append.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Optimistic concurrency: the stream is not where the appender expected it.
    #[error("stream {stream} was expected at {expected} but is at {}", actual.map_or("no stream".to_string(), |r| format!("revision {r}")))]
    WrongExpectedRevision {
        /// The stream appended to.
        stream: String,
        /// What the appender expected.
        expected: ExpectedRevision,
        /// The stream's actual last revision.
        actual: Option<Revision>,
    },
    /// The append itself is malformed (bad stream id, no events, oversized event).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The journal cannot take writes now (closed, full disk, failed device); retry later.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
}

/// Errors opening or reading the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another process holds the data directory.
    #[error("{0}")]
    Locked(String),
    /// The files on disk contradict each other or fail their checksums.
    #[error("journal damaged: {0}")]
    Corrupt(String),
    /// The journal was closed or its writer stopped.
    #[error("journal closed: {0}")]
    Closed(String),
    /// An operating-system error. Not a `#[source]`: the message already includes it, and
    /// `{:#}` would print it twice.
    #[error("journal I/O error: {0}")]
    Io(std::io::Error),
    /// The sled index failed.
    #[error("journal index error: {0}")]
    Index(String),
}

impl From<std::io::Error> for JournalError {
    fn from(e: std::io::Error) -> Self {
        JournalError::Io(e)
    }
}

impl From<sled::Error> for JournalError {
    fn from(e: sled::Error) -> Self {
        JournalError::Index(e.to_string())
    }
}

impl From<CursorError> for JournalError {
    fn from(e: CursorError) -> Self {
        match e {
            CursorError::Io(e) => JournalError::Io(e),
            frame @ CursorError::Frame(..) => JournalError::Corrupt(frame.to_string()),
        }
    }
}

impl From<record::FrameError> for JournalError {
    fn from(e: record::FrameError) -> Self {
        JournalError::Corrupt(e.to_string())
    }
}

/// How the journal is tuned.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// fdatasync every commit (default). Off trades durability for speed: only for tests/benchmarks.
    pub sync: bool,
    /// Roll to a new segment file after this many bytes.
    pub segment_bytes: u64,
    /// Most events one group commit takes from the queue.
    pub max_batch_events: usize,
    /// Appends that may wait for the writer before new ones are refused as unavailable.
    pub queue_capacity: usize,
    /// Memory sled may use for its page cache.
    pub index_cache_bytes: u64,
    /// Collectors the writer updates.
    pub metrics: JournalMetrics,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            sync: true,
            segment_bytes: 256 * 1024 * 1024,
            max_batch_events: 2048,
            queue_capacity: 65_536,
            index_cache_bytes: 128 * 1024 * 1024,
            metrics: JournalMetrics::new(),
        }
    }
}

/// A handle on an open journal; clones share it.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    segments_dir: PathBuf,
    index: Index,
    files: SegmentFiles,
    shared: Arc<Shared>,
    tx: Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held by the one compaction pass that may run at a time.
    compacting: Mutex<()>,
    /// Read while a location is looked up and its file opened; written while compaction
    /// switches a segment (offsets move).
    layout: std::sync::RwLock<()>,
    _lock: DirLock,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.segments_dir)
            .finish_non_exhaustive()
    }
}

/// Resolves once the append it was issued for is durable (or refused).
///
/// The append is already queued when the ticket exists: dropping the ticket does not cancel it.
#[must_use = "an append is only known to be durable once its ticket resolves"]
pub struct AppendTicket(TicketState);

enum TicketState {
    Pending(
        oneshot::Receiver<Result<Appended, AppendError>>,
        Arc<Shared>,
    ),
    Refused(Option<AppendError>),
}

impl Future for AppendTicket {
    type Output = Result<Appended, AppendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            TicketState::Pending(rx, shared) => Pin::new(rx).poll(cx).map(|r| {
                r.unwrap_or_else(|_| {
                    Err(AppendError::Unavailable(
                        shared.stopped().unwrap_or_else(|| "journal closed".into()),
                    ))
                })
            }),
            TicketState::Refused(err) => {
                Poll::Ready(Err(err.take().expect("ticket polled after completion")))
            }
        }
    }
}

impl Journal {
    /// Opens the journal in `dir`, creating it if needed, and recovers from an unclean stop:
    /// records past the index's tail are re-indexed and a torn last write is cut off.
    pub fn open(dir: &Path, options: JournalOptions) -> Result<Journal, JournalError> {
        let segments_dir = dir.join("segments");
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(&segments_dir)?;
        let lock = DirLock::exclusive(dir)?;
        let index = Index::open(&dir.join("index"), options.index_cache_bytes)?;
        let (finished, removed) = compaction::recover(&segments_dir, &index)?;
        if finished + removed > 0 {
            tracing::info!(
                finished,
                removed,
                "an interrupted compaction: switches finished, unused copies removed"
            );
        }
        let (segment, tail, last_recorded_at) = recover(&segments_dir, &index)?;
        let shared = Arc::new(Shared::new(tail.next_position, options.metrics.clone()));
        let (tx, rx) = crossbeam_channel::bounded(options.queue_capacity);
        let writer = Writer::new(
            WriterConfig {
                journal_dir: dir.to_path_buf(),
                segments_dir: segments_dir.clone(),
                segment_bytes: options.segment_bytes,
                max_batch_events: options.max_batch_events.max(1),
                sync: options.sync,
            },
            index.clone(),
            segment,
            tail,
            last_recorded_at,
            shared.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Journal {
            inner: Arc::new(Inner {
                files: SegmentFiles::new(segments_dir.clone()),
                segments_dir,
                index,
                shared,
                tx,
                writer: Mutex::new(Some(handle)),
                compacting: Mutex::new(()),
                layout: std::sync::RwLock::new(()),
                _lock: lock,
            }),
        })
    }

    /// Queues `events` for `stream`, all or none, if the stream is where `expected` says.
    /// Returns at once; the ticket resolves when the events are durable.
    pub fn append(
        &self,
        stream: impl Into<String>,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> AppendTicket {
        let (reply, rx) = oneshot::channel();
        let request = AppendRequest {
            stream: stream.into(),
            expected,
            events,
            reply,
        };
        match self.inner.tx.try_send(Command::Append(request)) {
            Ok(()) => AppendTicket(TicketState::Pending(rx, self.inner.shared.clone())),
            Err(TrySendError::Full(_)) => AppendTicket(TicketState::Refused(Some(
                AppendError::Unavailable("journal queue is full".into()),
            ))),
            Err(TrySendError::Disconnected(_)) => {
                AppendTicket(TicketState::Refused(Some(AppendError::Unavailable(
                    self.inner
                        .shared
                        .stopped()
                        .unwrap_or_else(|| "journal closed".into()),
                ))))
            }
        }
    }

    /// The position the next committed event will get; every position below it is durable.
    pub fn next_position(&self) -> Position {
        self.inner.shared.committed.borrow().next
    }

    /// Why the journal stopped taking writes, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.inner.shared.stopped()
    }

    /// Resolves when the journal stops taking writes (closed, or its disk failed).
    pub async fn wait_stopped(&self) -> String {
        let mut rx = self.inner.shared.committed.subscribe();
        match rx.wait_for(|c| c.stopped.is_some()).await {
            Ok(c) => c.stopped.clone().unwrap_or_default(),
            Err(_) => "journal closed".into(),
        }
    }

    /// The last revision of `stream`, or `None` if it has no events.
    pub fn stream_revision(&self, stream: &str) -> Result<Option<Revision>, JournalError> {
        Ok(self.inner.index.head(stream)?)
    }

    /// Up to `max` events of `stream`, from revision `from` on, in order.
    pub fn read_stream(
        &self,
        stream: &str,
        from: Revision,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, JournalError> {
        let _layout = self.layout();
        let locations = self.inner.index.stream_records(stream, from, max)?;
        locations
            .into_iter()
            .map(|(_, _, location)| {
                let frame = self.inner.files.read_frame(location)?;
                let (payload, crc, _) = split_frame(&frame)?;
                Ok(decode_payload(payload, crc)?.to_event(&frame))
            })
            .collect()
    }

    /// Up to `max` committed events from position `from` on, in global order.
    pub fn read_all(&self, from: Position, max: usize) -> Result<Vec<RecordedEvent>, JournalError> {
        let until = self.next_position();
        if from >= until {
            return Ok(Vec::new());
        }
        let mut cursor = self.cursor(from)?;
        cursor.read(until, max, usize::MAX, &EventFilter::All)
    }

    /// A catch-up subscription to every event (or some categories) from `from` on: it reads
    /// history from disk, then follows live commits, with no gap and no duplicate.
    pub fn subscribe(&self, from: Position, filter: EventFilter) -> Subscription {
        Subscription::new(self.clone(), from, filter)
    }

    /// A catch-up subscription to one stream from revision `from` on.
    pub fn subscribe_stream(&self, stream: &str, from: Revision) -> StreamSubscription {
        StreamSubscription::new(
            self.clone(),
            stream,
            from,
            self.inner.shared.watch_stream(stream),
        )
    }

    /// Stores a snapshot of some state derived from every event below `position`.
    pub fn save_snapshot(
        &self,
        name: &str,
        position: Position,
        state: &[u8],
    ) -> Result<(), JournalError> {
        Ok(self.inner.index.save_snapshot(name, position, state)?)
    }

    /// The latest snapshot saved under `name`: `(position, state)`.
    pub fn load_snapshot(&self, name: &str) -> Result<Option<(Position, Vec<u8>)>, JournalError> {
        Ok(self.inner.index.load_snapshot(name)?)
    }

    /// Deletes every snapshot; state is then rebuilt from the log alone.
    pub fn clear_snapshots(&self) -> Result<(), JournalError> {
        Ok(self.inner.index.clear_snapshots()?)
    }

    /// Drops the snapshots whose names start with `prefix` (e.g. one view's), so that state is
    /// rebuilt from the log; returns how many there were.
    pub fn remove_snapshots(&self, prefix: &str) -> Result<usize, JournalError> {
        Ok(self.inner.index.remove_snapshots(prefix)?)
    }

    /// Records that `consumer` (a view, an actor) could not process the record at `position`,
    /// and why, so that it goes on with the next one and an operator can retry this one later.
    pub fn park(&self, item: &Parked) -> Result<(), JournalError> {
        let value =
            postcard::to_stdvec(item).map_err(|e| JournalError::Io(std::io::Error::other(e)))?;
        Ok(self
            .inner
            .index
            .park(&item.consumer, item.position, &value)?)
    }

    /// Whether `consumer` already parked the record at `position`.
    pub fn is_parked(&self, consumer: &str, position: Position) -> Result<bool, JournalError> {
        Ok(self.inner.index.is_parked(consumer, position)?)
    }

    /// Every parked record, by consumer then position.
    pub fn parked(&self) -> Result<Vec<Parked>, JournalError> {
        let entries = self.inner.index.parked()?;
        Ok(entries
            .into_iter()
            .map(|(consumer, position, value)| {
                postcard::from_bytes(&value).unwrap_or(Parked {
                    consumer,
                    position,
                    reason: "(unreadable parking record)".into(),
                    parked_at: 0,
                })
            })
            .collect())
    }

    /// Forgets a parked record (it was retried).
    pub fn unpark(&self, consumer: &str, position: Position) -> Result<(), JournalError> {
        Ok(self.inner.index.unpark(consumer, position)?)
    }

    /// Cuts the payloads `policy` says have expired out of every closed segment, reading and
    /// writing at most `bytes_per_second`. Blocking (run it on a blocking thread); one pass at a
    /// time. Appends and reads go on meanwhile: each sees a segment before or after, whole.
    pub fn compact(
        &self,
        policy: &dyn CompactionPolicy,
        bytes_per_second: u64,
    ) -> Result<CompactionReport, JournalError> {
        let _one_at_a_time = self
            .inner
            .compacting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let segments = list_segments(&self.inner.segments_dir)?;
        let target = compaction::Target {
            dir: &self.inner.segments_dir,
            index: &self.inner.index,
            files: &self.inner.files,
            layout: &self.inner.layout,
        };
        compaction::compact(
            &target,
            &segments,
            self.next_position(),
            policy,
            bytes_per_second,
        )
    }

    /// Bytes on disk (allocated, so compacted holes do not count) of segments and index.
    pub fn disk_usage(&self) -> Result<(u64, u64), JournalError> {
        use std::os::unix::fs::MetadataExt;
        let mut segment_bytes = 0;
        for id in list_segments(&self.inner.segments_dir)? {
            segment_bytes +=
                fs::metadata(segment_path(&self.inner.segments_dir, id))?.blocks() * 512;
        }
        Ok((segment_bytes, self.inner.index.size_on_disk()))
    }

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        self.inner.index.stream_count()
    }

    /// Finishes every queued append, makes the index durable and stops the writer.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Close(done)).is_ok() {
            let _ = rx.await;
        }
        let handle = self
            .inner
            .writer
            .lock()
            .expect("writer handle poisoned")
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// A cursor whose next record is `from` (opened while no compaction moves offsets).
    fn cursor(&self, from: Position) -> Result<LogCursor, JournalError> {
        let _layout = self.layout();
        LogCursor::open(&self.inner.segments_dir, &self.inner.index, from)
    }

    /// Holds compaction's switch off while a location is looked up and read.
    fn layout(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner.layout.read().unwrap_or_else(|e| e.into_inner())
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

/// Brings the index up to date with the segments and returns where appending resumes.
fn recover(segments_dir: &Path, index: &Index) -> Result<(ActiveSegment, Tail, i64), JournalError> {
    let ids = list_segments(segments_dir)?;
    let start = index.tail()?.unwrap_or(Tail::EMPTY);
    if ids.is_empty() {
        if start.next_position != 0 {
            return Err(JournalError::Corrupt(format!(
                "the index records {} events but there are no segment files",
                start.next_position
            )));
        }
        return Ok((ActiveSegment::create(segments_dir, 0)?, Tail::EMPTY, 0));
    }
    let start_path = segment_path(segments_dir, start.segment);
    let start_len = fs::metadata(&start_path).map(|m| m.len()).unwrap_or(0);
    if start_len < start.offset {
        return Err(JournalError::Corrupt(format!(
            "the index expects {} bytes in {} but it holds {start_len}",
            start.offset,
            start_path.display()
        )));
    }

    let mut cursor = FrameCursor::open(segments_dir, start.segment, start.offset)?;
    let mut tail = start;
    let mut batch = IndexBatch::default();
    let mut heads = std::collections::HashMap::new();
    let mut recovered = 0u64;
    let mut last_recorded_at = 0;
    let bad = loop {
        let frame = match cursor.next_frame(tail.next_position) {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(CursorError::Frame(e, (segment, offset))) => {
                break Some(BadFrame {
                    segment,
                    offset,
                    end: None,
                    incomplete: e == FrameError::Incomplete,
                    reason: e.to_string(),
                });
            }
            Err(CursorError::Io(e)) => return Err(e.into()),
        };
        let location = frame.location;
        let end = location.offset + u64::from(location.len);
        let view = match decode_payload(&frame.payload, frame.crc) {
            Ok(view)
                if view.position() == tail.next_position
                    && view.expected_hash(&tail.last_hash) == view.hash() =>
            {
                view
            }
            Ok(_) => {
                let reason = format!(
                    "record does not continue the chain at position {}",
                    tail.next_position
                );
                break Some(BadFrame {
                    segment: location.segment,
                    offset: location.offset,
                    end: Some(end),
                    incomplete: false,
                    reason,
                });
            }
            Err(e) => {
                break Some(BadFrame {
                    segment: location.segment,
                    offset: location.offset,
                    end: Some(end),
                    incomplete: false,
                    reason: e.to_string(),
                });
            }
        };
        if recovered == 0 {
            batch.batch_start(view.position(), location.segment, location.offset);
        }
        batch.record(view.stream(), view.revision(), view.position(), location);
        heads.insert(view.stream().to_owned(), view.revision());
        last_recorded_at = view.recorded_at();
        tail = Tail {
            next_position: view.position() + 1,
            segment: location.segment,
            offset: end,
            last_hash: view.hash(),
        };
        recovered += 1;
    };
    let last_segment = *ids.last().expect("segments exist");
    if let Some(bad) = &bad {
        // Only the last commit can be torn, and it was never acknowledged: cutting it loses
        // nothing. Damage anywhere else is refused rather than silently truncated.
        if bad.segment != last_segment || !bad.is_torn_tail(segments_dir)? {
            return Err(JournalError::Corrupt(format!(
                "{} in segment {} at offset {} (position {}); run `hookforge journal verify`",
                bad.reason, bad.segment, bad.offset, tail.next_position
            )));
        }
        tracing::warn!(reason = %bad.reason, position = tail.next_position, "discarding an unacknowledged torn write at the journal's tail");
    }
    for id in ids.iter().filter(|id| **id > tail.segment) {
        let path = segment_path(segments_dir, *id);
        let torn = bad.as_ref().is_some_and(|b| b.segment == *id);
        if fs::metadata(&path)?.len() > 0 && !torn {
            return Err(JournalError::Corrupt(format!(
                "{} follows the end of the log at position {}; run `hookforge journal verify`",
                path.display(),
                tail.next_position
            )));
        }
        fs::remove_file(&path)?;
    }
    if recovered > 0 {
        for (stream, revision) in &heads {
            batch.head(stream, *revision);
        }
        batch.tail(&tail);
        index.apply(batch)?;
        index.flush()?;
        tracing::info!(
            recovered,
            "re-indexed journal records written after the last index flush"
        );
    }
    let segment = ActiveSegment::open(segments_dir, tail.segment, tail.offset)?;
    Ok((segment, tail, last_recorded_at))
}

/// A frame that stopped recovery.
struct BadFrame {
    segment: u64,
    offset: u64,
    /// Where the frame ends, when its length could be read.
    end: Option<u64>,
    incomplete: bool,
    reason: String,
}

impl BadFrame {
    /// Whether this looks like a write cut short by a crash: the frame runs past the end of the
    /// file, ends exactly at it, or is followed only by zeros (a size extended before the data).
    fn is_torn_tail(&self, segments_dir: &Path) -> std::io::Result<bool> {
        if self.incomplete {
            return Ok(true);
        }
        use std::io::{Read, Seek, SeekFrom};
        let mut file = fs::File::open(segment_path(segments_dir, self.segment))?;
        if self.end == Some(file.metadata()?.len()) {
            return Ok(true);
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut rest = Vec::new();
        file.read_to_end(&mut rest)?;
        Ok(rest.iter().all(|b| *b == 0))
    }
}
