//! The delivery history on disk: every delivery made to an endpoint with every attempt. It grows
//! with traffic, so its rows live in the store, indexed by endpoint (and by status within it)
//! and, once finished, by organization for retention; lists read newest first from the indexes.
//!
//! Each endpoint also has a small ledger row here (enabled or not, the last dispatched source),
//! so that the view is a fold of the journal alone: whether a delivery scheduled to a disabled
//! endpoint ends at once, and whether a dispatch is a repeat, are decided as the endpoint's
//! actor decided them.

use serde::{Deserialize, Serialize};

use super::StoredView;
use super::compact::WebhookId;
use crate::domain::Event;
use crate::domain::delivery::{DeliveryKind, DeliveryScheduled, DeliverySource};
use crate::domain::retention::Expiring;
use crate::journal::{EventFilter, Position, RecordedEvent};
use crate::store::{
    IndexKey, Indexed, Key, Query, QueryPage, StoreError, Table, TimeRange, Writes,
};

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or a retry.
    Pending,
    /// A 2xx was received.
    Delivered,
    /// Ended without delivery: the endpoint was disabled, or a test ping failed.
    Failed,
    /// Dead-lettered after `max_attempts` failures.
    Dead,
    /// Never sent: the endpoint's filter could not be evaluated on the event (over its budget,
    /// or an interpreter failure); the error says why.
    FilterError,
}

impl DeliveryStatus {
    /// Parses the API's status filter value.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            "filter_error" => Self::FilterError,
            _ => return None,
        })
    }
}

/// One attempt, as the delivery detail lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based number.
    pub attempt: u32,
    /// Start (µs).
    pub at: i64,
    /// Response status, if answered.
    pub status: Option<u16>,
    /// Duration.
    pub duration_ms: u32,
    /// Error, if it failed.
    pub error: Option<String>,
}

/// One delivery with its attempts; the "last response" fields are those of its last attempt,
/// derived rather than stored twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Id (journal position of its scheduling).
    pub id: u64,
    /// The endpoint.
    pub endpoint: u64,
    /// Its organization.
    pub organization: u64,
    /// `webhook-id` of every attempt.
    pub webhook_id: WebhookId,
    /// The event type delivered.
    pub event_type: String,
    /// Why it exists.
    pub kind: DeliveryKind,
    /// What it sends (redeliveries reuse it).
    pub source: DeliverySource,
    /// State.
    pub status: DeliveryStatus,
    /// Last response body, first 4 KiB.
    pub response_snippet: String,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
    /// When the next retry is due (µs).
    pub next_retry_at: Option<i64>,
    /// When it was scheduled (µs).
    pub created_at: i64,
    /// The latest redelivery of this delivery, if any.
    pub redelivered_by: Option<u64>,
    abandoned: Option<String>,
}

impl DeliveryRecord {
    /// Status of the last response.
    pub fn response_status(&self) -> Option<u16> {
        self.attempts.last().and_then(|a| a.status)
    }

    /// Duration of the last attempt.
    pub fn duration_ms(&self) -> Option<u64> {
        self.attempts.last().map(|a| u64::from(a.duration_ms))
    }

    /// When it was delivered (µs): the end of its successful attempt.
    pub fn delivered_at(&self) -> Option<i64> {
        let last = self
            .attempts
            .last()
            .filter(|_| self.status == DeliveryStatus::Delivered)?;
        Some(last.at + i64::from(last.duration_ms) * 1000)
    }

    /// Why it is not delivered (yet): why it was abandoned, or its last attempt's error.
    pub fn error_message(&self) -> Option<&str> {
        self.abandoned
            .as_deref()
            .or_else(|| self.attempts.last().and_then(|a| a.error.as_deref()))
    }

    /// Whether it has ended, one way or another.
    pub fn is_finished(&self) -> bool {
        self.status != DeliveryStatus::Pending
    }
}

/// What the view remembers of an endpoint to fold its deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Ledger {
    enabled: bool,
    last_dispatched: Option<Position>,
}

/// Whether a dispatched delivery of `scheduled` repeats one already recorded (dispatch is
/// at-least-once; the endpoint's actor keeps the first): advances `last_dispatched` if not.
pub fn is_repeat_dispatch(last_dispatched: &mut Option<Position>, e: &DeliveryScheduled) -> bool {
    if e.kind != DeliveryKind::Dispatched {
        return false;
    }
    let Some(p) = e.source.position() else {
        return false;
    };
    if last_dispatched.is_some_and(|last| p <= last) {
        return true;
    }
    *last_dispatched = Some(p);
    false
}

fn ledger_key(endpoint: u64) -> Vec<u8> {
    Key::new(b'e').u64(endpoint).into_bytes()
}

fn endpoint_index(endpoint: u64) -> IndexKey {
    Key::new(b'E').u64(endpoint)
}

fn status_index(endpoint: u64, status: DeliveryStatus) -> IndexKey {
    Key::new(b'S').u64(endpoint).byte(status as u8)
}

fn finished_index(organization: u64) -> IndexKey {
    Key::new(b'F').u64(organization)
}

/// By endpoint, by endpoint and status, and, once finished (pending deliveries never expire),
/// by organization.
fn indexes(d: &DeliveryRecord) -> Vec<IndexKey> {
    let mut keys = vec![
        endpoint_index(d.endpoint),
        status_index(d.endpoint, d.status),
    ];
    if d.is_finished() {
        keys.push(finished_index(d.organization));
    }
    keys
}

/// The filters of an endpoint's delivery list, as the API names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// `status`.
    pub status: Option<DeliveryStatus>,
    /// `event_type`.
    pub event_type: Option<String>,
    /// `since` (on `created_at`, inclusive).
    pub since: Option<i64>,
}

/// Every delivery with its attempts, on disk.
pub struct DeliveriesView {
    rows: Indexed<DeliveryRecord>,
}

impl DeliveriesView {
    /// The delivery with `id`.
    pub fn get(&self, id: u64) -> Result<Option<DeliveryRecord>, StoreError> {
        self.rows.get(id)
    }

    /// The page `offset..offset + limit` of `endpoint`'s deliveries matching `filter`, newest
    /// first, with their exact count.
    pub fn list(
        &self,
        endpoint: u64,
        filter: &DeliveryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<QueryPage<DeliveryRecord>, StoreError> {
        let index = filter
            .status
            .map_or(endpoint_index(endpoint), |s| status_index(endpoint, s));
        let event_type = |d: &DeliveryRecord| filter.event_type.as_deref() == Some(&d.event_type);
        self.rows.query(&Query {
            index,
            range: TimeRange {
                since: filter.since,
                until: None,
            },
            filter: filter
                .event_type
                .is_some()
                .then_some(&event_type as &dyn Fn(&DeliveryRecord) -> bool),
            offset,
            limit,
        })
    }

    /// `endpoint`'s failed and dead deliveries created since `since` that were not redelivered
    /// yet (test pings excluded), oldest first, at most `limit`; and whether more remain.
    pub fn recoverable(
        &self,
        endpoint: u64,
        since: i64,
        limit: usize,
    ) -> Result<(Vec<DeliveryRecord>, bool), StoreError> {
        let range = TimeRange {
            since: Some(since),
            until: None,
        };
        // The two indexes merged oldest first, read only as far as the page needs.
        let mut failed = self
            .rows
            .ids(&status_index(endpoint, DeliveryStatus::Failed), range)
            .peekable();
        let mut dead = self
            .rows
            .ids(&status_index(endpoint, DeliveryStatus::Dead), range)
            .peekable();
        let mut found = Vec::new();
        loop {
            let failed_first = match (failed.peek(), dead.peek()) {
                (None, None) => break,
                (Some(Ok(a)), Some(Ok(b))) => a <= b,
                (Some(_), None) | (Some(Err(_)), _) => true,
                (None, Some(_)) | (_, Some(Err(_))) => false,
            };
            let next = if failed_first {
                failed.next()
            } else {
                dead.next()
            };
            let Some(next) = next else { break };
            let (_, id) = next?;
            let Some(d) = self.rows.get(id)? else {
                continue;
            };
            if d.kind == DeliveryKind::Test || d.redelivered_by.is_some() {
                continue;
            }
            if found.len() == limit {
                return Ok((found, true));
            }
            found.push(d);
        }
        Ok((found, false))
    }

    /// Creation times of an organization's `n` oldest finished deliveries, ascending.
    pub fn oldest_finished(&self, organization: u64, n: usize) -> Result<Vec<i64>, StoreError> {
        self.rows.oldest_times(&finished_index(organization), n)
    }

    /// Whether `organization` has a finished delivery created within `range`: then a published
    /// payload of that time is still in the journal.
    pub fn any_finished_within(
        &self,
        organization: u64,
        range: TimeRange,
    ) -> Result<bool, StoreError> {
        Ok(self
            .rows
            .ids_rev(&finished_index(organization), range)
            .next()
            .transpose()?
            .is_some())
    }

    fn ledger(&self, writes: &Writes, endpoint: u64) -> Result<Option<Ledger>, StoreError> {
        writes.get(&ledger_key(endpoint))
    }

    /// Records `attempt` on delivery `id` if it is the next one of a pending delivery; `then`
    /// settles the rest.
    fn attempt(
        &self,
        writes: &mut Writes,
        id: u64,
        attempt: AttemptRecord,
        snippet: String,
        then: impl FnOnce(&mut DeliveryRecord),
    ) -> Result<(), StoreError> {
        self.rows.update(writes, id, |d| {
            if attempt.attempt as usize != d.attempts.len() + 1
                || d.status != DeliveryStatus::Pending
            {
                return;
            }
            d.response_snippet = snippet;
            d.attempts.push(attempt);
            then(d);
        })
    }

    /// Records a scheduled delivery; returns its id if it is not a repeat.
    fn schedule(
        &self,
        writes: &mut Writes,
        record: &RecordedEvent,
        e: DeliveryScheduled,
    ) -> Result<Option<u64>, StoreError> {
        let Some(mut ledger) = self.ledger(writes, e.endpoint)? else {
            return Ok(None);
        };
        if is_repeat_dispatch(&mut ledger.last_dispatched, &e) {
            return Ok(None);
        }
        writes.put(ledger_key(e.endpoint), &ledger);
        let id = record.position;
        if let DeliveryKind::Redelivery { of } = e.kind {
            self.rows
                .update(writes, of, |original| original.redelivered_by = Some(id))?;
        }
        let inactive = !ledger.enabled && e.kind != DeliveryKind::Test;
        let (status, abandoned) = if inactive {
            (
                DeliveryStatus::Failed,
                Some("not delivered: the endpoint is disabled".to_owned()),
            )
        } else {
            (DeliveryStatus::Pending, None)
        };
        let delivery = DeliveryRecord {
            id,
            endpoint: e.endpoint,
            organization: e.organization,
            webhook_id: WebhookId::parse(&e.webhook_id),
            event_type: e.event_type,
            kind: e.kind,
            source: e.source,
            status,
            response_snippet: String::new(),
            attempts: Vec::new(),
            next_retry_at: None,
            created_at: record.recorded_at,
            redelivered_by: None,
            abandoned,
        };
        self.rows.put(writes, id, &delivery)?;
        Ok(Some(id))
    }

    /// Ends every pending delivery of an endpoint that was disabled or deleted, saying why.
    fn end_pending(&self, writes: &mut Writes, endpoint: u64, why: &str) -> Result<(), StoreError> {
        let pending: Vec<u64> = self
            .rows
            .ids_in(writes, &status_index(endpoint, DeliveryStatus::Pending))?;
        for id in pending {
            self.rows.update(writes, id, |d| {
                d.status = DeliveryStatus::Failed;
                d.next_retry_at = None;
                d.abandoned = Some(why.to_owned());
            })?;
        }
        Ok(())
    }

    fn set_enabled(
        &self,
        writes: &mut Writes,
        endpoint: u64,
        enabled: bool,
    ) -> Result<(), StoreError> {
        if let Some(mut ledger) = self.ledger(writes, endpoint)? {
            ledger.enabled = enabled;
            writes.put(ledger_key(endpoint), &ledger);
        }
        Ok(())
    }
}

fn millis(duration_ms: u64) -> u32 {
    u32::try_from(duration_ms).unwrap_or(u32::MAX)
}

impl StoredView for DeliveriesView {
    const NAME: &'static str = "deliveries";
    const SCHEMA: u32 = 1;

    fn filter() -> EventFilter {
        EventFilter::Categories(vec!["endpoint".into(), "retention".into()])
    }

    fn open(table: Table) -> Result<Self, StoreError> {
        Ok(Self {
            rows: Indexed::new(table, indexes, |d| d.created_at).without_all(),
        })
    }

    fn table(&self) -> &Table {
        self.rows.table()
    }

    fn apply(&mut self, record: &RecordedEvent, writes: &mut Writes) -> Result<(), StoreError> {
        let Ok(Some(event)) = Event::decode(record) else {
            return Ok(());
        };
        match event {
            Event::RetentionExpired(e) if e.kind == Expiring::Deliveries => {
                self.rows
                    .remove_before(writes, &finished_index(e.organization), e.before)?;
            }
            Event::EndpointCreated(e) => writes.put(
                ledger_key(e.id),
                &Ledger {
                    enabled: e.enabled,
                    last_dispatched: None,
                },
            ),
            Event::EndpointEnabled(e) => self.set_enabled(writes, e.id, true)?,
            Event::EndpointDisabled(e) => {
                let why = format!("not delivered: the endpoint was disabled ({})", e.reason);
                self.end_pending(writes, e.id, &why)?;
                self.set_enabled(writes, e.id, false)?;
            }
            Event::EndpointDeleted(e) => {
                // Its history stays until retention takes it (removing it all in one batch
                // could be millions of rows); what was pending ends, and nothing new is recorded.
                self.end_pending(writes, e.id, "not delivered: the endpoint was deleted")?;
                writes.delete(ledger_key(e.id));
            }
            Event::DeliveryScheduled(e) => {
                self.schedule(writes, record, e)?;
            }
            Event::DeliveryFilterFailed(e) => {
                let (scheduled, error) = e.into_scheduled();
                if let Some(id) = self.schedule(writes, record, scheduled)? {
                    self.rows.update(writes, id, |d| {
                        d.status = DeliveryStatus::FilterError;
                        d.abandoned = Some(format!("filter_error: {error}"));
                    })?;
                }
            }
            Event::AttemptSucceeded(e) => {
                let attempt = AttemptRecord {
                    attempt: e.attempt,
                    at: e.at,
                    status: Some(e.status),
                    duration_ms: millis(e.duration_ms),
                    error: None,
                };
                self.attempt(writes, e.delivery, attempt, e.snippet, |d| {
                    d.status = DeliveryStatus::Delivered;
                    d.next_retry_at = None;
                })?;
            }
            Event::AttemptFailed(e) => {
                let attempt = AttemptRecord {
                    attempt: e.attempt,
                    at: e.at,
                    status: e.status,
                    duration_ms: millis(e.duration_ms),
                    error: (!e.error.is_empty()).then_some(e.error),
                };
                self.attempt(writes, e.delivery, attempt, e.snippet, |d| {
                    d.next_retry_at = e.next_attempt_at;
                    if e.next_attempt_at.is_none() {
                        d.status = DeliveryStatus::Failed;
                    }
                })?;
            }
            Event::DeliveryDeadLettered(e) => self.rows.update(writes, e.delivery, |d| {
                d.status = DeliveryStatus::Dead;
            })?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbound_log::Log;
    use super::*;
    use crate::domain::delivery::{AttemptSucceeded, DeliveryDeadLettered};
    use crate::domain::endpoint::{EndpointDeleted, EndpointDisabled};
    use crate::domain::retention::RetentionExpired;

    fn succeed(log: &mut Log, delivery: u64, attempt: u32) {
        log.push(
            AttemptSucceeded {
                endpoint: 1,
                delivery,
                attempt,
                at: 9_000,
                status: 204,
                duration_ms: 3,
                snippet: String::new(),
            }
            .into(),
        );
    }

    fn ids(page: QueryPage<DeliveryRecord>) -> (u64, Vec<u64>) {
        (page.count, page.rows.iter().map(|d| d.id).collect())
    }

    fn listed(log: &Log, filter: DeliveryFilter) -> (u64, Vec<u64>) {
        ids(log.deliveries.list(1, &filter, 0, 100).unwrap())
    }

    #[test]
    fn a_delivery_goes_from_pending_through_retries_to_delivered() {
        let mut log = Log::new();
        let id = log.schedule(3);
        assert_eq!(log.schedule(3), 12, "a repeat is ignored");
        assert_eq!(log.deliveries.get(12).unwrap(), None);
        log.fail(id, 1, Some(9_000));
        log.fail(id, 1, Some(9_000));
        let d = log.deliveries.get(id).unwrap().unwrap();
        assert_eq!(
            (
                d.status,
                d.next_retry_at,
                d.response_status(),
                d.attempts.len()
            ),
            (DeliveryStatus::Pending, Some(9_000), Some(503), 1),
            "a repeated attempt is recorded once"
        );
        assert_eq!(
            (d.error_message(), d.duration_ms(), d.event_type.as_str()),
            (Some("HTTP 503"), Some(7), "build.done")
        );
        succeed(&mut log, id, 2);
        let d = log.deliveries.get(id).unwrap().unwrap();
        assert_eq!(
            (
                d.status,
                d.next_retry_at,
                d.delivered_at(),
                d.error_message()
            ),
            (DeliveryStatus::Delivered, None, Some(12_000), None)
        );
    }

    #[test]
    fn dead_letters_and_disabling_end_deliveries() {
        let mut log = Log::new();
        let dead = log.schedule(3);
        let other = log.schedule(4);
        log.fail(dead, 1, None);
        log.push(
            DeliveryDeadLettered {
                endpoint: 1,
                organization: 1,
                delivery: dead,
                webhook_id: "msg_3".into(),
                event_type: "build.done".into(),
                attempts: 1,
                last_status: Some(503),
                last_error: "HTTP 503".into(),
            }
            .into(),
        );
        let status = |log: &Log, id| log.deliveries.get(id).unwrap().unwrap().status;
        assert_eq!(status(&log, dead), DeliveryStatus::Dead);
        log.push(
            EndpointDisabled {
                id: 1,
                organization: 1,
                name: "ci".into(),
                reason: "endpoint answered 410".into(),
                failing_since: None,
            }
            .into(),
        );
        let d = log.deliveries.get(other).unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert!(d.error_message().unwrap().contains("410"));
        assert_eq!(log.outbound.pending_count(1), 0);
        let late = log.schedule(5);
        assert_eq!(status(&log, late), DeliveryStatus::Failed);
        assert_eq!(
            listed(&log, DeliveryFilter::default()),
            (3, vec![late, other, dead]),
            "newest first"
        );
    }

    #[test]
    fn lists_filter_by_status_event_type_and_time_with_exact_counts() {
        let mut log = Log::new();
        let first = log.schedule(1);
        succeed(&mut log, first, 1);
        log.at = 5_000;
        let second = log.schedule(2);
        let third = log.schedule(3);
        log.fail(third, 1, None);
        let only = |status| DeliveryFilter {
            status: Some(status),
            ..DeliveryFilter::default()
        };
        assert_eq!(
            listed(&log, only(DeliveryStatus::Pending)),
            (1, vec![second])
        );
        assert_eq!(
            listed(&log, only(DeliveryStatus::Delivered)),
            (1, vec![first])
        );
        assert_eq!(listed(&log, only(DeliveryStatus::Failed)), (1, vec![third]));
        let since = DeliveryFilter {
            since: Some(5_000),
            ..DeliveryFilter::default()
        };
        assert_eq!(listed(&log, since), (2, vec![third, second]));
        let typed = |t: &str| DeliveryFilter {
            event_type: Some(t.into()),
            ..DeliveryFilter::default()
        };
        assert_eq!(listed(&log, typed("build.done")).0, 3);
        assert_eq!(listed(&log, typed("other")), (0, vec![]));
        let page = log
            .deliveries
            .list(1, &DeliveryFilter::default(), 1, 1)
            .unwrap();
        assert_eq!(ids(page), (3, vec![second]));
        assert_eq!(
            log.deliveries
                .list(2, &DeliveryFilter::default(), 0, 9)
                .unwrap()
                .count,
            0
        );
    }

    #[test]
    fn recovery_takes_failed_and_dead_deliveries_oldest_first_once() {
        let mut log = Log::new();
        let failed: Vec<u64> = (1..=3).map(|s| log.schedule(s)).collect();
        for id in &failed {
            log.fail(*id, 1, None);
        }
        // The middle one is dead-lettered: the two status indexes merge in creation order.
        log.push(
            DeliveryDeadLettered {
                endpoint: 1,
                organization: 1,
                delivery: failed[1],
                webhook_id: "msg_2".into(),
                event_type: "build.done".into(),
                attempts: 1,
                last_status: Some(503),
                last_error: "HTTP 503".into(),
            }
            .into(),
        );
        let (found, more) = log.deliveries.recoverable(1, 0, 2).unwrap();
        assert_eq!(
            (found.iter().map(|d| d.id).collect::<Vec<_>>(), more),
            (failed[..2].to_vec(), true)
        );
        let redelivery = log.push(
            DeliveryScheduled {
                endpoint: 1,
                organization: 1,
                webhook_id: "msg_again".into(),
                event_type: "build.done".into(),
                kind: DeliveryKind::Redelivery { of: failed[0] },
                source: found[0].source.clone(),
            }
            .into(),
        );
        let original = log.deliveries.get(failed[0]).unwrap().unwrap();
        assert_eq!(original.redelivered_by, Some(redelivery));
        let (found, more) = log.deliveries.recoverable(1, 0, 5).unwrap();
        assert_eq!(
            (found.iter().map(|d| d.id).collect::<Vec<_>>(), more),
            (failed[1..].to_vec(), false),
            "a redelivered one is not recovered again"
        );
    }

    #[test]
    fn retention_drops_finished_deliveries_of_its_organization_only() {
        let mut log = Log::new();
        let (old, pending) = (log.schedule(1), log.schedule(2));
        succeed(&mut log, old, 1);
        log.at = 5_000;
        let young = log.schedule(3);
        assert_eq!(log.deliveries.oldest_finished(1, 5).unwrap(), [1_000]);
        let within = |since, until| TimeRange {
            since: Some(since),
            until: Some(until),
        };
        assert!(
            log.deliveries
                .any_finished_within(1, within(0, 4_999))
                .unwrap()
        );
        assert!(
            !log.deliveries
                .any_finished_within(1, within(1_001, 9_999))
                .unwrap()
        );
        let expiry = |organization| {
            RetentionExpired {
                organization,
                kind: Expiring::Deliveries,
                before: 5_000,
            }
            .into()
        };
        log.push(expiry(2));
        assert!(
            log.deliveries.get(old).unwrap().is_some(),
            "another organization's expiry"
        );
        log.push(expiry(1));
        assert_eq!(log.deliveries.get(old).unwrap(), None);
        assert_eq!(
            listed(&log, DeliveryFilter::default()),
            (2, vec![young, pending]),
            "pending deliveries never expire"
        );
    }

    #[test]
    fn deleting_an_endpoint_ends_its_pending_deliveries_and_leaves_its_history_to_retention() {
        let mut log = Log::new();
        let id = log.schedule(1);
        succeed(&mut log, id, 1);
        let pending = log.schedule(2);
        log.push(
            EndpointDeleted {
                id: 1,
                organization: 1,
            }
            .into(),
        );
        let ended = log.deliveries.get(pending).unwrap().unwrap();
        assert_eq!(
            (ended.status, ended.error_message()),
            (
                DeliveryStatus::Failed,
                Some("not delivered: the endpoint was deleted")
            )
        );
        let late = log.schedule(3);
        assert_eq!(
            log.deliveries.get(late).unwrap(),
            None,
            "nothing new is recorded"
        );
        log.push(
            RetentionExpired {
                organization: 1,
                kind: Expiring::Deliveries,
                before: i64::MAX,
            }
            .into(),
        );
        assert_eq!(listed(&log, DeliveryFilter::default()), (0, vec![]));
        assert_eq!(log.deliveries.get(id).unwrap(), None);
    }
}
