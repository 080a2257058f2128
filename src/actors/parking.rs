//! Poison records are set aside, never retried forever: a consumer that cannot process a record
//! (it does not decode, or processing it panics) parks it with the reason and goes on.
//!
//! Without this, one bad record (written by an older version, or hitting a bug) would crash its
//! actor on every attempt, and a restart would replay it and crash again: the rule, endpoint or
//! read model would be dead for good. Parked records are kept in the journal's `parked` index
//! (listed by `hookforge parked list`), counted in `hookforge_parked_total{consumer}`, and
//! retried by `hookforge parked retry` after an upgrade that fixes the cause.

use std::panic::{AssertUnwindSafe, catch_unwind};

use prometheus::{IntCounterVec, IntGauge};

use crate::journal::{Journal, Parked, Position, RecordedEvent};

/// Parks records for the consumers of one journal; cheap to clone.
#[derive(Clone)]
pub struct Parking {
    journal: Journal,
    counter: IntCounterVec,
    gauge: IntGauge,
}

impl Parking {
    /// Parks into `journal`'s parked index, counting each new one in `counter` (labelled by
    /// consumer kind) and keeping `gauge` at the number parked (set here from the index).
    pub fn new(journal: Journal, counter: IntCounterVec, gauge: IntGauge) -> Self {
        let parked = journal.parked().map_or(0, |p| p.len());
        gauge.set(i64::try_from(parked).unwrap_or(i64::MAX));
        Self {
            journal,
            counter,
            gauge,
        }
    }

    /// Runs `process` on `record` for `consumer`; if it panics, parks the record with the panic
    /// message and returns `None`, so the caller goes on with the next record.
    pub fn guard<T>(
        &self,
        consumer: &str,
        record: &RecordedEvent,
        process: impl FnOnce() -> T,
    ) -> Option<T> {
        match catch_unwind(AssertUnwindSafe(process)) {
            Ok(done) => Some(done),
            Err(panic) => {
                let message = crate::conditions::panic_message(&*panic);
                self.park(
                    consumer,
                    record.position,
                    format!("processing {} panicked: {message}", record.event_type),
                );
                None
            }
        }
    }

    /// Parks the record at `position` for `consumer`, with `reason` (once: a replay that meets
    /// the same record again leaves the first entry).
    pub fn park(&self, consumer: &str, position: Position, reason: String) {
        if self.journal.is_parked(consumer, position).unwrap_or(false) {
            return;
        }
        tracing::error!(consumer, position, %reason, "record parked");
        let kind = consumer.split(':').next().unwrap_or(consumer);
        self.counter.with_label_values(&[kind]).inc();
        self.gauge.inc();
        let item = Parked {
            consumer: consumer.to_owned(),
            position,
            reason,
            parked_at: chrono::Utc::now().timestamp_micros(),
        };
        if let Err(e) = self.journal.park(&item) {
            tracing::error!(consumer, position, error = %e, "could not record the parked record");
        }
    }
}
