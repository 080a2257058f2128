//! Journal instrumentation: commit sizes and durability latency.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

/// Prometheus collectors the writer updates on every commit.
#[derive(Debug, Clone)]
pub struct JournalMetrics {
    appends: IntCounter,
    batches: IntCounter,
    bytes: IntCounter,
    batch_events: Histogram,
    flush_seconds: Histogram,
    commit_seconds: Histogram,
}

impl Default for JournalMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl JournalMetrics {
    /// Unregistered collectors (for tools and tests).
    pub fn new() -> Self {
        let buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
        ];
        Self {
            appends: IntCounter::new(
                "hookforge_journal_events_appended_total",
                "Events made durable",
            )
            .unwrap(),
            batches: IntCounter::new(
                "hookforge_journal_commits_total",
                "Group commits (one fsync each)",
            )
            .unwrap(),
            bytes: IntCounter::new(
                "hookforge_journal_bytes_written_total",
                "Segment bytes written",
            )
            .unwrap(),
            batch_events: Histogram::with_opts(
                HistogramOpts::new("hookforge_journal_commit_events", "Events per group commit")
                    .buckets(vec![
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                    ]),
            )
            .unwrap(),
            flush_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hookforge_journal_flush_seconds",
                    "Write plus fdatasync time per commit",
                )
                .buckets(buckets.clone()),
            )
            .unwrap(),
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hookforge_journal_commit_seconds",
                    "Whole commit time, including indexing",
                )
                .buckets(buckets),
            )
            .unwrap(),
        }
    }

    /// Registers every collector with `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.appends.clone()))?;
        registry.register(Box::new(self.batches.clone()))?;
        registry.register(Box::new(self.bytes.clone()))?;
        registry.register(Box::new(self.batch_events.clone()))?;
        registry.register(Box::new(self.flush_seconds.clone()))?;
        registry.register(Box::new(self.commit_seconds.clone()))
    }

    pub(crate) fn observe_commit(
        &self,
        events: usize,
        bytes: usize,
        flush: Duration,
        total: Duration,
    ) {
        self.appends.inc_by(events as u64);
        self.batches.inc();
        self.bytes.inc_by(bytes as u64);
        self.batch_events.observe(events as f64);
        self.flush_seconds.observe(flush.as_secs_f64());
        self.commit_seconds.observe(total.as_secs_f64());
    }

    /// Events appended so far.
    pub fn events_appended(&self) -> u64 {
        self.appends.get()
    }

    /// Group commits so far.
    pub fn commits(&self) -> u64 {
        self.batches.get()
    }
}
