//! Idempotency keys of published events, on disk: they grow with the publication rate over
//! their 24-hour window. A publication's first answer is kept under `(organization, key)` with
//! the count of deliveries dispatched for it, and dropped once the window has passed.
//!
//! Layout: `k | organization | key` → the first answer; `s | position` → the key a keyed
//! publication was recorded under; `t | time | position` → nothing, oldest first, for expiry;
//! `d | position | endpoint` → nothing, once a delivery of that publication to that endpoint
//! is counted (dispatch is at-least-once: a repeat is not counted again).

use serde::{Deserialize, Serialize};

use super::StoredView;
use crate::domain::Event;
use crate::domain::delivery::{DeliveryKind, DeliveryScheduled};
use crate::domain::published::{EventPublished, IDEMPOTENCY_WINDOW_SECONDS};
use crate::journal::{EventFilter, Position, RecordedEvent};
use crate::store::{Key, StoreError, Table, Writes, u64_at};

/// The first answer to a publication with an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedRecord {
    /// The event's id (journal position).
    pub id: Position,
    /// Its type.
    pub event_type: String,
    /// When it was published (µs).
    pub at: i64,
    /// Deliveries recorded for it so far.
    pub deliveries: u32,
}

/// Where a keyed publication's record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeyRef {
    organization: u64,
    key: String,
}

fn record_key(organization: u64, key: &str) -> Vec<u8> {
    Key::new(b'k').u64(organization).str(key).into_bytes()
}

fn source_key(position: Position) -> Vec<u8> {
    Key::new(b's').u64(position).into_bytes()
}

fn expiry_key(at: i64, position: Position) -> Vec<u8> {
    Key::new(b't').time(at).u64(position).into_bytes()
}

fn counted_key(position: Position, endpoint: u64) -> Vec<u8> {
    Key::new(b'd').u64(position).u64(endpoint).into_bytes()
}

const WINDOW: i64 = IDEMPOTENCY_WINDOW_SECONDS * 1_000_000;

/// Publications' idempotency keys within their window.
pub struct PublicationsView {
    table: Table,
}

impl PublicationsView {
    /// The first answer under `(organization, key)`, if it was given within the window before
    /// `now`.
    pub fn idempotent(
        &self,
        organization: u64,
        key: &str,
        now: i64,
    ) -> Result<Option<PublishedRecord>, StoreError> {
        Ok(self
            .table
            .get::<PublishedRecord>(&record_key(organization, key))?
            .filter(|r| now - r.at < WINDOW))
    }

    /// Drops the keys recorded before `horizon`, oldest first.
    fn expire(&self, writes: &mut Writes, horizon: i64) -> Result<(), StoreError> {
        let lo = Key::new(b't').into_bytes();
        let hi = Key::new(b't').time(horizon).into_bytes();
        for key in writes.keys_in(&lo, &hi)? {
            writes.delete(key.clone());
            let position = u64_at(&key, 9);
            let Some(source) = writes.get::<KeyRef>(&source_key(position))? else {
                continue;
            };
            writes.delete(source_key(position));
            let record = record_key(source.organization, &source.key);
            if writes
                .get::<PublishedRecord>(&record)?
                .is_some_and(|r| r.id == position)
            {
                writes.delete(record);
            }
            let (lo, hi) = (
                Key::new(b'd').u64(position).into_bytes(),
                Key::new(b'd').u64(position + 1).into_bytes(),
            );
            for counted in writes.keys_in(&lo, &hi)? {
                writes.delete(counted);
            }
        }
        Ok(())
    }

    fn published(
        &self,
        writes: &mut Writes,
        record: &RecordedEvent,
        e: EventPublished,
    ) -> Result<(), StoreError> {
        let at = record.recorded_at;
        self.expire(writes, at - WINDOW)?;
        let Some(key) = e.idempotency_key else {
            return Ok(());
        };
        let at_key = record_key(e.organization, &key);
        if writes
            .get::<PublishedRecord>(&at_key)?
            .is_some_and(|r| at - r.at < WINDOW)
        {
            return Ok(());
        }
        let position = record.position;
        writes.put(
            at_key,
            &PublishedRecord {
                id: position,
                event_type: e.event_type,
                at,
                deliveries: 0,
            },
        );
        writes.put(
            source_key(position),
            &KeyRef {
                organization: e.organization,
                key,
            },
        );
        writes.put_new(expiry_key(at, position), Vec::new());
        Ok(())
    }

    fn scheduled(&self, writes: &mut Writes, e: &DeliveryScheduled) -> Result<(), StoreError> {
        if e.kind != DeliveryKind::Dispatched {
            return Ok(());
        }
        let Some(position) = e.source.position() else {
            return Ok(());
        };
        let Some(source) = writes.get::<KeyRef>(&source_key(position))? else {
            return Ok(());
        };
        let counted = counted_key(position, e.endpoint);
        if writes.get_raw(&counted)?.is_some() {
            return Ok(());
        }
        writes.put_new(counted, Vec::new());
        let record = record_key(source.organization, &source.key);
        if let Some(mut first) = writes.get::<PublishedRecord>(&record)?
            && first.id == position
        {
            first.deliveries += 1;
            writes.put(record, &first);
        }
        Ok(())
    }
}

impl StoredView for PublicationsView {
    const NAME: &'static str = "publications";
    const SCHEMA: u32 = 1;

    fn filter() -> EventFilter {
        EventFilter::Categories(vec!["published".into(), "endpoint".into()])
    }

    fn open(table: Table) -> Result<Self, StoreError> {
        Ok(Self { table })
    }

    fn table(&self) -> &Table {
        &self.table
    }

    fn apply(&mut self, record: &RecordedEvent, writes: &mut Writes) -> Result<(), StoreError> {
        // Only two event types matter: skip the others (attempts are the bulk) undecoded.
        if record.event_type != <EventPublished as crate::codec::EventBody>::TYPE
            && record.event_type != <DeliveryScheduled as crate::codec::EventBody>::TYPE
        {
            return Ok(());
        }
        match Event::decode(record) {
            Ok(Some(Event::EventPublished(e))) => self.published(writes, record, e),
            Ok(Some(Event::DeliveryScheduled(e))) => self.scheduled(writes, &e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbound_log::Log;
    use super::*;
    use crate::codec::RawJson;

    fn publish(key: &str) -> Event {
        EventPublished {
            organization: 1,
            event_type: "build.done".into(),
            resource_type: String::new(),
            resource_id: String::new(),
            payload: crate::codec::Protected::Clear(RawJson(b"{}".to_vec())),
            idempotency_key: Some(key.into()),
        }
        .into()
    }

    #[test]
    fn keys_expire_after_24_hours_and_count_each_endpoints_delivery_once() {
        let mut log = Log::new();
        let first = log.push(publish("k"));
        log.schedule(first);
        log.schedule(first);
        let view = &log.publications;
        let record = view.idempotent(1, "k", log.at).unwrap().unwrap();
        assert_eq!((record.id, record.deliveries), (first, 1));
        assert_eq!(
            view.idempotent(2, "k", log.at).unwrap(),
            None,
            "keys are per organization"
        );
        assert_eq!(view.idempotent(1, "k", log.at + WINDOW).unwrap(), None);
        let again = log.push(publish("k"));
        let view = &log.publications;
        assert_eq!(
            view.idempotent(1, "k", log.at).unwrap().unwrap().id,
            first,
            "a repeat within the window keeps the first answer ({again} is not recorded)"
        );
        log.at += WINDOW + 1;
        let second = log.push(publish("other"));
        let view = &log.publications;
        assert_eq!(view.idempotent(1, "k", log.at).unwrap(), None);
        assert_eq!(
            view.idempotent(1, "other", log.at).unwrap().unwrap().id,
            second
        );
        let left: Vec<_> = view
            .table
            .scan_prefix(b"")
            .map(|i| i.unwrap().0[0])
            .filter(|kind| *kind != 0)
            .collect();
        assert_eq!(
            left,
            [b'k', b's', b't'],
            "the expired key left no rows behind"
        );
    }
}
