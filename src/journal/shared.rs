//! State the writer shares with readers: the committed head, per-stream wake-ups, and the
//! records of the latest commits.
//!
//! Live subscribers (a dozen read models and actors) read what was just committed. Serving it
//! from the writer's own bytes, decoded once, spares each of them a read from the segment file
//! and a decode per record: the data of every copy is the same shared buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::watch;

use super::metrics::JournalMetrics;
use super::types::{EventFilter, Position, RecordedEvent, Revision};

/// Most records kept for live readers, and most bytes of data they may hold.
const RECENT_RECORDS: usize = 1024;
const RECENT_BYTES: usize = 16 * 1024 * 1024;

/// The latest committed records, in order.
#[derive(Debug, Default)]
struct Recent {
    records: VecDeque<RecordedEvent>,
    bytes: usize,
}

impl Recent {
    fn first(&self) -> Option<Position> {
        self.records.front().map(|r| r.position)
    }

    fn push(&mut self, records: Vec<RecordedEvent>) {
        // A commit always follows the previous one; anything else starts afresh.
        if let (Some(last), Some(first)) = (self.records.back(), records.first())
            && last.position + 1 != first.position
        {
            self.records.clear();
            self.bytes = 0;
        }
        for record in records {
            self.bytes += record.data.len();
            self.records.push_back(record);
        }
        while self.records.len() > RECENT_RECORDS || self.bytes > RECENT_BYTES {
            match self.records.pop_front() {
                Some(old) => self.bytes -= old.data.len(),
                None => break,
            }
        }
    }
}

/// How far the journal is committed, and whether it still accepts appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Every position below this one is durable and readable.
    pub next: Position,
    /// `None` while open; why the writer stopped otherwise.
    pub stopped: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub committed: watch::Sender<Committed>,
    streams: Mutex<HashMap<String, watch::Sender<Revision>>>,
    recent: Mutex<Recent>,
    pub metrics: JournalMetrics,
}

impl Shared {
    pub fn new(next: Position, metrics: JournalMetrics) -> Self {
        let (committed, _) = watch::channel(Committed {
            next,
            stopped: None,
        });
        Self {
            committed,
            streams: Mutex::default(),
            recent: Mutex::default(),
            metrics,
        }
    }

    /// Keeps a commit's records for live readers (before [`Shared::publish`] announces it).
    pub fn remember(&self, records: Vec<RecordedEvent>) {
        self.recent
            .lock()
            .expect("recent records poisoned")
            .push(records);
    }

    /// The committed records from `from` (below `until`) that pass `filter`, at most `max`, and
    /// the position after the last one examined: `None` if `from` is no longer kept.
    pub fn recent_since(
        &self,
        from: Position,
        until: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Option<(Vec<RecordedEvent>, Position)> {
        let recent = self.recent.lock().expect("recent records poisoned");
        let first = recent.first()?;
        if from < first {
            return None;
        }
        let start = usize::try_from(from - first).ok()?;
        let mut out = Vec::new();
        let mut next = from;
        for record in recent.records.iter().skip(start) {
            if record.position >= until || out.len() >= max {
                break;
            }
            if filter.admits(&record.stream) {
                out.push(record.clone());
            }
            next = record.position + 1;
        }
        Some((out, next))
    }

    /// The kept records of `stream` from revision `from` on (at most `max`); `None` if the
    /// record at `from` is not among those kept.
    pub fn recent_of_stream(
        &self,
        stream: &str,
        from: Revision,
        max: usize,
    ) -> Option<Vec<RecordedEvent>> {
        let recent = self.recent.lock().expect("recent records poisoned");
        let mut found = Vec::new();
        for record in recent.records.iter().rev() {
            if record.stream != stream {
                continue;
            }
            if record.revision < from {
                break;
            }
            found.push(record);
            if record.revision == from {
                found.reverse();
                return Some(found.into_iter().take(max).cloned().collect());
            }
        }
        None
    }

    /// Announces a commit: the new head and the last revision of each stream it touched.
    pub fn publish<'a>(&self, next: Position, touched: impl Iterator<Item = (&'a str, Revision)>) {
        self.committed.send_modify(|c| c.next = next);
        let mut streams = self.streams.lock().expect("stream watchers poisoned");
        if streams.is_empty() {
            return;
        }
        for (stream, revision) in touched {
            if let Some(tx) = streams.get(stream) {
                if tx.receiver_count() == 0 {
                    streams.remove(stream);
                } else {
                    tx.send_replace(revision);
                }
            }
        }
    }

    /// A receiver that changes whenever `stream` gets new events.
    pub fn watch_stream(&self, stream: &str) -> watch::Receiver<Revision> {
        let mut streams = self.streams.lock().expect("stream watchers poisoned");
        streams
            .entry(stream.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Marks the journal closed (cleanly, or with the reason the writer stopped) and wakes
    /// every reader so that none waits forever.
    pub fn close(&self, reason: Option<String>) {
        let reason = reason.unwrap_or_else(|| "journal closed".into());
        self.committed.send_modify(|c| c.stopped = Some(reason));
        let streams = self.streams.lock().expect("stream watchers poisoned");
        for tx in streams.values() {
            tx.send_modify(|_| {});
        }
    }

    /// Why the journal stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.committed.borrow().stopped.clone()
    }
}
