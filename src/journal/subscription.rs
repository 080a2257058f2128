//! Catch-up subscriptions: read history from disk, then follow commits as they happen.
//!
//! Both kinds track the next position (or revision) to deliver and only ever read below the
//! committed head, so the seam between catch-up and live has no gap and no duplicate, and a
//! subscriber that falls behind simply reads from disk: memory stays bounded.

use tokio::sync::watch;

use super::cursor::LogCursor;
use super::types::{EventFilter, Position, RecordedEvent, Revision};
use super::{Journal, JournalError};

/// Frames one blocking read scans at most, so that a sparse filter still yields promptly.
const SCAN_LIMIT: usize = 8192;
/// A live subscriber this close to the head reads on its own task (see `read_until`).
const INLINE_READ: u64 = 64;

/// A subscription to the global log (or some categories of it).
#[derive(Debug)]
pub struct Subscription {
    journal: Journal,
    next: Position,
    filter: EventFilter,
    cursor: Option<LogCursor>,
    /// Whether the cursor is open and positioned (opening one reads the index: off-task).
    cursor_is_warm: bool,
    committed: watch::Receiver<super::shared::Committed>,
}

impl Subscription {
    pub(super) fn new(journal: Journal, from: Position, filter: EventFilter) -> Self {
        let committed = journal.shared().committed.subscribe();
        Self {
            journal,
            next: from,
            filter,
            cursor: None,
            cursor_is_warm: false,
            committed,
        }
    }

    /// The position of the next event this subscription will consider.
    pub fn position(&self) -> Position {
        self.next
    }

    /// Waits until new events are committed and returns up to `max` of them, in order.
    ///
    /// With a filter, the batch may be empty when only filtered-out events were committed;
    /// [`Self::position`] then tells how far the subscription has read (projections use it as
    /// their checkpoint). Fails once the journal is closed and everything was delivered.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, JournalError> {
        loop {
            let (head, stopped) = {
                let committed = self.committed.borrow_and_update();
                (committed.next, committed.stopped.clone())
            };
            if self.next < head {
                return self.read_until(head, max.max(1)).await;
            }
            if let Some(reason) = stopped {
                return Err(JournalError::Closed(reason));
            }
            if self.committed.changed().await.is_err() {
                return Err(JournalError::Closed("journal dropped".into()));
            }
        }
    }

    async fn read_until(
        &mut self,
        head: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, JournalError> {
        // What was just committed is shared by the writer: no read, no decode.
        if let Some((batch, next)) =
            self.journal
                .shared()
                .recent_since(self.next, head, max, &self.filter)
        {
            self.next = next;
            return Ok(batch);
        }
        let cursor = self.cursor.take();
        let journal = self.journal.clone();
        let filter = self.filter.clone();
        let from = self.next;
        let read = move || {
            let mut cursor = match cursor {
                Some(c) if c.next_position() == from => c,
                _ => journal.cursor(from)?,
            };
            let batch = cursor.read(head, max, SCAN_LIMIT, &filter)?;
            Ok::<_, JournalError>((cursor, batch))
        };
        // A live subscriber reads a few just-committed records from the page cache in
        // microseconds: handing that to the blocking pool would cost more (a thread hand-off per
        // commit per subscriber) than the read. Catch-up reads go to the blocking pool.
        let (cursor, batch) = if head - from <= INLINE_READ && self.cursor_is_warm {
            read()?
        } else {
            tokio::task::spawn_blocking(read)
                .await
                .map_err(|e| JournalError::Io(std::io::Error::other(e)))??
        };
        self.cursor_is_warm = true;
        self.next = cursor.next_position();
        self.cursor = Some(cursor);
        Ok(batch)
    }
}

/// A subscription to a single stream.
#[derive(Debug)]
pub struct StreamSubscription {
    journal: Journal,
    stream: String,
    next: Revision,
    changes: watch::Receiver<Revision>,
    /// Caught up at least once (until then reads may be long: off-task).
    live: bool,
}

impl StreamSubscription {
    pub(super) fn new(
        journal: Journal,
        stream: &str,
        from: Revision,
        changes: watch::Receiver<Revision>,
    ) -> Self {
        Self {
            journal,
            stream: stream.to_owned(),
            next: from,
            changes,
            live: false,
        }
    }

    /// The revision of the next event this subscription will deliver.
    pub fn revision(&self) -> Revision {
        self.next
    }

    /// Waits until the stream has events past the last delivered one and returns up to `max`.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, JournalError> {
        loop {
            let last_known = *self.changes.borrow_and_update();
            let journal = self.journal.clone();
            let stream = self.stream.clone();
            let from = self.next;
            let behind = (last_known + 1).saturating_sub(from);
            let recent = if self.live && behind > 0 {
                self.journal
                    .shared()
                    .recent_of_stream(&stream, from, max.max(1))
            } else {
                None
            };
            // As for the global subscription: a few fresh records are read on this task.
            let batch = if let Some(recent) = recent {
                recent
            } else if self.live && behind <= INLINE_READ {
                journal.read_stream(&stream, from, max.max(1))?
            } else {
                tokio::task::spawn_blocking(move || journal.read_stream(&stream, from, max.max(1)))
                    .await
                    .map_err(|e| JournalError::Io(std::io::Error::other(e)))??
            };
            if let Some(last) = batch.last() {
                self.next = last.revision + 1;
                return Ok(batch);
            }
            self.live = true;
            if let Some(reason) = self.journal.stopped() {
                return Err(JournalError::Closed(reason));
            }
            if self.changes.changed().await.is_err() {
                return Err(JournalError::Closed("journal dropped".into()));
            }
        }
    }
}
