//! State the writer shares with readers: the committed head and per-stream wake-ups.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::metrics::JournalMetrics;
use super::types::{Position, Revision};

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
            metrics,
        }
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
