//! The outbound read model behind the admin API: endpoints with their counters, the delivery
//! history with every attempt, publication idempotency keys and the custom event types seen.
//!
//! History is bounded: each endpoint keeps its latest [`MAX_HISTORY_PER_ENDPOINT`] deliveries
//! (pending ones are never dropped); older ones remain in the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::View;
use super::compact::{SourceRef, Symbols, Text, WebhookId};
use crate::codec::Sealed;
use crate::domain::Event;
use crate::domain::delivery::{DeliveryKind, DeliverySource};
use crate::domain::endpoint::EndpointSettings;
use crate::domain::published::IDEMPOTENCY_WINDOW_SECONDS;
use crate::domain::retention::Expiring;
use crate::journal::{EventFilter, Position, RecordedEvent};

/// Deliveries kept per endpoint in the read model.
pub const MAX_HISTORY_PER_ENDPOINT: usize = 10_000;

/// An endpoint as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// Settings.
    pub settings: EndpointSettings,
    /// Enabled or not.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// The sealed signing secret.
    pub secret: Sealed,
    /// The previous secret and until when (µs) it still signs, after a rotation.
    pub previous_secret: Option<(Sealed, i64)>,
    /// Creation time (µs).
    pub created: i64,
    /// Last configuration change (µs).
    pub modified: i64,
    /// Deliveries made to it (test pings included).
    pub delivery_count: u64,
    /// Failed attempts (test pings excluded).
    pub failure_count: u64,
    /// Last successful delivery (µs).
    pub last_delivery_at: Option<i64>,
    last_dispatched: Option<Position>,
    pending: BTreeSet<u64>,
    history: BTreeSet<u64>,
}

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
    /// Error, if it failed (see [`OutboundView::attempt_error`]).
    pub error: Option<Text>,
}

/// A delivery's attempts, oldest first. Most deliveries make exactly one, kept inline; more
/// spill to the heap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attempts {
    /// Not attempted yet.
    #[default]
    None,
    /// One attempt.
    One(AttemptRecord),
    /// Several.
    Many(Vec<AttemptRecord>),
}

impl Attempts {
    /// Every attempt, oldest first.
    pub fn as_slice(&self) -> &[AttemptRecord] {
        match self {
            Self::None => &[],
            Self::One(a) => std::slice::from_ref(a),
            Self::Many(all) => all,
        }
    }

    /// Number of attempts.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether none was made.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }

    /// The latest attempt.
    pub fn last(&self) -> Option<&AttemptRecord> {
        self.as_slice().last()
    }

    fn push(&mut self, attempt: AttemptRecord) {
        *self = match std::mem::take(self) {
            Self::None => Self::One(attempt),
            Self::One(first) => Self::Many(vec![first, attempt]),
            Self::Many(mut all) => {
                all.push(attempt);
                Self::Many(all)
            }
        };
    }
}

/// One delivery with its attempts, compact: the "last response" fields are those of its last
/// attempt, derived rather than stored twice.
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
    event_type: u32,
    /// Why it exists.
    pub kind: DeliveryKind,
    /// What it sends (redeliveries reuse it).
    pub source: SourceRef,
    /// State.
    pub status: DeliveryStatus,
    /// Last response body, first 4 KiB.
    pub response_snippet: Box<str>,
    /// Every attempt, oldest first.
    pub attempts: Attempts,
    /// When the next retry is due (µs).
    pub next_retry_at: Option<i64>,
    /// When it was scheduled (µs).
    pub created_at: i64,
    /// The latest redelivery of this delivery, if any.
    pub redelivered_by: Option<u64>,
    abandoned: Option<Box<str>>,
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
}

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

/// A custom event type an organization has published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomType {
    /// Organization.
    pub organization: u64,
    /// Type name.
    pub name: String,
    /// First publication (µs).
    pub first_seen: i64,
    /// Last publication (µs).
    pub last_seen: i64,
    /// Publications.
    pub count: u64,
}

/// Outbound endpoints, deliveries, idempotency keys and custom event types.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OutboundView {
    endpoints: BTreeMap<u64, EndpointRecord>,
    /// Highest endpoint id ever used.
    pub max_endpoint_id: u64,
    deliveries: HashMap<u64, DeliveryRecord>,
    idempotency: HashMap<(u64, String), PublishedRecord>,
    idempotency_order: VecDeque<(i64, u64, String)>,
    keyed_sources: HashMap<Position, (u64, String)>,
    custom_types: BTreeMap<(u64, String), CustomType>,
    symbols: Symbols,
}

impl OutboundView {
    /// The endpoint with `id`.
    pub fn endpoint(&self, id: u64) -> Option<&EndpointRecord> {
        self.endpoints.get(&id)
    }

    /// All endpoints, ascending by id.
    pub fn endpoints(&self) -> impl DoubleEndedIterator<Item = &EndpointRecord> {
        self.endpoints.values()
    }

    /// The delivery with `id`.
    pub fn delivery(&self, id: u64) -> Option<&DeliveryRecord> {
        self.deliveries.get(&id)
    }

    /// Why a delivery is not delivered (yet): its last attempt's error, or why it was abandoned.
    pub fn error_message<'a>(&'a self, delivery: &'a DeliveryRecord) -> Option<&'a str> {
        delivery
            .abandoned
            .as_deref()
            .or_else(|| delivery.attempts.last().and_then(|a| self.attempt_error(a)))
    }

    /// An attempt's error.
    pub fn attempt_error<'a>(&'a self, attempt: &'a AttemptRecord) -> Option<&'a str> {
        attempt.error.as_ref().map(|e| self.symbols.resolve(e))
    }

    /// What a delivery sends.
    pub fn source(&self, delivery: &DeliveryRecord) -> DeliverySource {
        delivery.source.to_source(&self.symbols)
    }

    /// A delivery's event type.
    pub fn event_type(&self, delivery: &DeliveryRecord) -> &str {
        self.symbols.name(delivery.event_type)
    }

    /// An endpoint's deliveries, newest first.
    pub fn deliveries_of(&self, endpoint: u64) -> impl Iterator<Item = &DeliveryRecord> {
        self.endpoints
            .get(&endpoint)
            .into_iter()
            .flat_map(|e| e.history.iter().rev())
            .filter_map(|id| self.deliveries.get(id))
    }

    /// Pending deliveries of every endpoint (asleep ones included).
    pub fn pending_total(&self) -> usize {
        self.endpoints.values().map(|e| e.pending.len()).sum()
    }

    /// Pending deliveries of an endpoint.
    pub fn pending_count(&self, endpoint: u64) -> usize {
        self.endpoints.get(&endpoint).map_or(0, |e| e.pending.len())
    }

    /// The first answer under `(organization, key)`, if it was given within the window before `now`.
    pub fn idempotent(&self, organization: u64, key: &str, now: i64) -> Option<&PublishedRecord> {
        self.idempotency
            .get(&(organization, key.to_owned()))
            .filter(|r| now - r.at < IDEMPOTENCY_WINDOW_SECONDS * 1_000_000)
    }

    /// Custom event types published, by organization and name.
    pub fn custom_types(&self) -> impl Iterator<Item = &CustomType> {
        self.custom_types.values()
    }

    /// How many of an organization's finished deliveries were created before `before`.
    pub fn expirable(&self, organization: u64, before: i64) -> usize {
        self.endpoints
            .values()
            .filter(|e| e.organization == organization)
            .map(|e| self.expired_of(e, before).count())
            .sum()
    }

    /// Whether `organization` has a delivery created in `since..until` (µs; from the start if
    /// `since` is `None`): then a published payload of that time is still in the journal.
    pub fn any_created_within(&self, organization: u64, since: Option<i64>, until: i64) -> bool {
        let since = since.unwrap_or(i64::MIN);
        self.endpoints
            .values()
            .filter(|e| e.organization == organization)
            .any(|e| {
                e.history
                    .iter()
                    .filter_map(|id| self.deliveries.get(id))
                    .find(|d| d.created_at >= since)
                    .is_some_and(|d| d.created_at < until)
            })
    }

    /// An endpoint's finished deliveries created before `before`, oldest first. History is in
    /// journal order, hence in creation order.
    fn expired_of<'a>(
        &'a self,
        endpoint: &'a EndpointRecord,
        before: i64,
    ) -> impl Iterator<Item = u64> + 'a {
        endpoint
            .history
            .iter()
            .filter(|id| !endpoint.pending.contains(id))
            .take_while(move |id| {
                self.deliveries
                    .get(id)
                    .is_none_or(|d| d.created_at < before)
            })
            .copied()
    }

    /// Drops an organization's finished deliveries created before `before`.
    fn expire(&mut self, organization: u64, before: i64) {
        let expired: Vec<(u64, u64)> = self
            .endpoints
            .values()
            .filter(|e| e.organization == organization)
            .flat_map(|e| self.expired_of(e, before).map(move |id| (e.id, id)))
            .collect();
        for (endpoint, id) in expired {
            if let Some(e) = self.endpoints.get_mut(&endpoint) {
                e.history.remove(&id);
            }
            self.deliveries.remove(&id);
        }
    }

    fn touch(&mut self, id: u64, at: i64, change: impl FnOnce(&mut EndpointRecord)) {
        if let Some(e) = self.endpoints.get_mut(&id) {
            change(e);
            e.modified = at;
        }
    }

    fn abandon_pending(&mut self, endpoint: u64, reason: &str) {
        let Some(e) = self.endpoints.get_mut(&endpoint) else {
            return;
        };
        for id in std::mem::take(&mut e.pending) {
            if let Some(d) = self.deliveries.get_mut(&id) {
                d.status = DeliveryStatus::Failed;
                d.next_retry_at = None;
                d.abandoned =
                    Some(format!("not delivered: the endpoint was disabled ({reason})").into());
            }
        }
    }

    /// A filter that failed on a dispatched event: a delivery that ends at once.
    fn filter_failed(
        &mut self,
        record: &RecordedEvent,
        e: crate::domain::delivery::DeliveryFilterFailed,
    ) {
        let scheduled = crate::domain::delivery::DeliveryScheduled {
            endpoint: e.endpoint,
            organization: e.organization,
            webhook_id: e.webhook_id,
            event_type: e.event_type,
            kind: DeliveryKind::Dispatched,
            source: e.source,
        };
        self.schedule(record, scheduled);
        let id = record.position;
        if let Some(endpoint) = self.endpoints.get_mut(&e.endpoint) {
            endpoint.pending.remove(&id);
        }
        if let Some(d) = self.deliveries.get_mut(&id) {
            d.status = DeliveryStatus::FilterError;
            d.abandoned = Some(format!("filter_error: {}", e.error).into());
        }
    }

    fn schedule(&mut self, record: &RecordedEvent, e: crate::domain::delivery::DeliveryScheduled) {
        let Some(endpoint) = self.endpoints.get_mut(&e.endpoint) else {
            return;
        };
        if e.kind == DeliveryKind::Dispatched
            && let Some(p) = e.source.position()
        {
            if endpoint.last_dispatched.is_some_and(|last| p <= last) {
                return;
            }
            endpoint.last_dispatched = Some(p);
            if let Some(key) = self.keyed_sources.get(&p)
                && let Some(published) = self.idempotency.get_mut(key)
            {
                published.deliveries += 1;
            }
        }
        let id = record.position;
        if let DeliveryKind::Redelivery { of } = e.kind
            && let Some(original) = self.deliveries.get_mut(&of)
        {
            original.redelivered_by = Some(id);
        }
        let Some(endpoint) = self.endpoints.get_mut(&e.endpoint) else {
            return;
        };
        let inactive = !endpoint.enabled && e.kind != DeliveryKind::Test;
        let (status, abandoned): (_, Option<Box<str>>) = if inactive {
            (
                DeliveryStatus::Failed,
                Some("not delivered: the endpoint is disabled".into()),
            )
        } else {
            endpoint.pending.insert(id);
            (DeliveryStatus::Pending, None)
        };
        endpoint.delivery_count += 1;
        endpoint.history.insert(id);
        if endpoint.history.len() > MAX_HISTORY_PER_ENDPOINT
            && let Some(oldest) = endpoint
                .history
                .iter()
                .find(|id| !endpoint.pending.contains(id))
                .copied()
        {
            endpoint.history.remove(&oldest);
            self.deliveries.remove(&oldest);
        }
        self.deliveries.insert(
            id,
            DeliveryRecord {
                id,
                endpoint: e.endpoint,
                organization: e.organization,
                webhook_id: WebhookId::parse(&e.webhook_id),
                event_type: self.symbols.intern(&e.event_type),
                kind: e.kind,
                source: SourceRef::new(e.source, &mut self.symbols),
                status,
                response_snippet: Box::default(),
                attempts: Attempts::None,
                next_retry_at: None,
                created_at: record.recorded_at,
                redelivered_by: None,
                abandoned,
            },
        );
    }

    /// Records an attempt on delivery `id` if it is the next one; returns the record if so.
    fn attempt(
        &mut self,
        id: u64,
        attempt: AttemptRecord,
        snippet: String,
    ) -> Option<&mut DeliveryRecord> {
        let d = self.deliveries.get_mut(&id)?;
        if attempt.attempt as usize != d.attempts.len() + 1 || d.status != DeliveryStatus::Pending {
            return None;
        }
        d.response_snippet = snippet.into_boxed_str();
        d.attempts.push(attempt);
        Some(d)
    }

    fn published(&mut self, record: &RecordedEvent, e: crate::domain::published::EventPublished) {
        let at = record.recorded_at;
        let seen = self
            .custom_types
            .entry((e.organization, e.event_type.clone()))
            .or_insert_with(|| CustomType {
                organization: e.organization,
                name: e.event_type.clone(),
                first_seen: at,
                last_seen: at,
                count: 0,
            });
        seen.last_seen = at;
        seen.count += 1;
        let horizon = at - IDEMPOTENCY_WINDOW_SECONDS * 1_000_000;
        while let Some((first, org, key)) = self.idempotency_order.front().cloned() {
            if first >= horizon {
                break;
            }
            self.idempotency_order.pop_front();
            let map_key = (org, key);
            if let Some(r) = self.idempotency.get(&map_key)
                && r.at == first
            {
                self.keyed_sources.remove(&r.id);
                self.idempotency.remove(&map_key);
            }
        }
        if let Some(key) = e.idempotency_key {
            let map_key = (e.organization, key.clone());
            if self
                .idempotency
                .get(&map_key)
                .is_none_or(|r| r.at < horizon)
            {
                self.idempotency.insert(
                    map_key.clone(),
                    PublishedRecord {
                        id: record.position,
                        event_type: e.event_type,
                        at,
                        deliveries: 0,
                    },
                );
                self.keyed_sources.insert(record.position, map_key);
                self.idempotency_order.push_back((at, e.organization, key));
            }
        }
    }
}

fn millis(duration_ms: u64) -> u32 {
    u32::try_from(duration_ms).unwrap_or(u32::MAX)
}

impl View for OutboundView {
    const NAME: &'static str = "outbound";

    fn filter() -> EventFilter {
        EventFilter::Categories(vec![
            "endpoint".into(),
            "published".into(),
            "retention".into(),
        ])
    }

    fn apply(&mut self, record: &RecordedEvent) {
        let Ok(Some(event)) = Event::decode(record) else {
            return;
        };
        let at = record.recorded_at;
        match event {
            Event::RetentionExpired(e) if e.kind == Expiring::Deliveries => {
                self.expire(e.organization, e.before);
            }
            Event::EndpointCreated(e) => {
                self.max_endpoint_id = self.max_endpoint_id.max(e.id);
                self.endpoints.insert(
                    e.id,
                    EndpointRecord {
                        id: e.id,
                        organization: e.organization,
                        settings: e.settings,
                        enabled: e.enabled,
                        disabled_reason: None,
                        secret: e.secret,
                        previous_secret: None,
                        created: at,
                        modified: at,
                        delivery_count: 0,
                        failure_count: 0,
                        last_delivery_at: None,
                        last_dispatched: None,
                        pending: BTreeSet::new(),
                        history: BTreeSet::new(),
                    },
                );
            }
            Event::EndpointUpdated(e) => self.touch(e.id, at, |r| r.settings = e.settings),
            Event::EndpointSecretRotated(e) => self.touch(e.id, at, |r| {
                let previous = std::mem::replace(&mut r.secret, e.secret);
                r.previous_secret = Some((previous, e.previous_expires_at));
            }),
            Event::EndpointEnabled(e) => self.touch(e.id, at, |r| {
                r.enabled = true;
                r.disabled_reason = None;
            }),
            Event::EndpointDisabled(e) => {
                self.abandon_pending(e.id, &e.reason);
                self.touch(e.id, at, |r| {
                    r.enabled = false;
                    r.disabled_reason = Some(e.reason);
                });
            }
            Event::EndpointDeleted(e) => {
                if let Some(endpoint) = self.endpoints.remove(&e.id) {
                    for id in endpoint.history {
                        self.deliveries.remove(&id);
                    }
                }
            }
            Event::DeliveryScheduled(e) => self.schedule(record, e),
            Event::DeliveryFilterFailed(e) => self.filter_failed(record, e),
            Event::AttemptSucceeded(e) => {
                let attempt = AttemptRecord {
                    attempt: e.attempt,
                    at: e.at,
                    status: Some(e.status),
                    duration_ms: millis(e.duration_ms),
                    error: None,
                };
                let done = self.attempt(e.delivery, attempt, e.snippet).map(|d| {
                    d.status = DeliveryStatus::Delivered;
                    d.next_retry_at = None;
                });
                if done.is_some()
                    && let Some(endpoint) = self.endpoints.get_mut(&e.endpoint)
                {
                    endpoint.pending.remove(&e.delivery);
                    endpoint.last_delivery_at = Some(e.at);
                }
            }
            Event::AttemptFailed(e) => {
                let error = if e.error.is_empty() {
                    None
                } else {
                    Some(self.symbols.text(&e.error))
                };
                let attempt = AttemptRecord {
                    attempt: e.attempt,
                    at: e.at,
                    status: e.status,
                    duration_ms: millis(e.duration_ms),
                    error,
                };
                let mut test = false;
                let recorded = self.attempt(e.delivery, attempt, e.snippet).map(|d| {
                    test = d.kind == DeliveryKind::Test;
                    d.next_retry_at = e.next_attempt_at;
                    if e.next_attempt_at.is_none() {
                        d.status = DeliveryStatus::Failed;
                    }
                });
                if recorded.is_some()
                    && let Some(endpoint) = self.endpoints.get_mut(&e.endpoint)
                {
                    if !test {
                        endpoint.failure_count += 1;
                    }
                    if e.next_attempt_at.is_none() {
                        endpoint.pending.remove(&e.delivery);
                    }
                }
            }
            Event::DeliveryDeadLettered(e) => {
                if let Some(d) = self.deliveries.get_mut(&e.delivery) {
                    d.status = DeliveryStatus::Dead;
                }
            }
            Event::EventPublished(e) => self.published(record, e),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RawJson;
    use crate::domain::delivery::{
        AttemptFailed, AttemptSucceeded, DeliveryDeadLettered, DeliveryScheduled, DeliverySource,
        EventRef,
    };
    use crate::domain::endpoint::{EndpointCreated, EndpointDisabled, RetrySettings};
    use crate::domain::published::EventPublished;
    use crate::journal::Metadata;

    struct Log {
        view: OutboundView,
        position: u64,
        at: i64,
    }

    impl Log {
        fn push(&mut self, event: Event) -> u64 {
            let new = event.encode(Metadata::default());
            let position = self.position;
            self.view.apply(&RecordedEvent {
                position,
                stream: "endpoint-1".into(),
                revision: 0,
                event_type: new.event_type,
                schema_version: new.schema_version,
                recorded_at: self.at,
                metadata: new.metadata,
                data: new.data.into(),
                compacted: false,
            });
            self.position += 1;
            position
        }

        fn schedule(&mut self, source: u64) -> u64 {
            self.push(
                DeliveryScheduled {
                    endpoint: 1,
                    organization: 1,
                    webhook_id: format!("msg_{source}"),
                    event_type: "build.done".into(),
                    kind: DeliveryKind::Dispatched,
                    source: DeliverySource::Journal(EventRef {
                        position: source,
                        stream: "published-1".into(),
                        revision: 0,
                    }),
                }
                .into(),
            )
        }

        fn fail(&mut self, delivery: u64, attempt: u32, next: Option<i64>) {
            self.push(
                AttemptFailed {
                    endpoint: 1,
                    delivery,
                    attempt,
                    at: 50,
                    status: Some(503),
                    duration_ms: 7,
                    snippet: "busy".into(),
                    error: "HTTP 503".into(),
                    error_kind: "http_status".into(),
                    next_attempt_at: next,
                }
                .into(),
            );
        }
    }

    fn log() -> Log {
        let mut log = Log {
            view: OutboundView::default(),
            position: 10,
            at: 1_000,
        };
        let settings = EndpointSettings {
            name: "ci".into(),
            url: "https://example.com".into(),
            events: vec!["*".into()],
            filter: None,
            custom_headers: None,
            ssl_verify: true,
            timeout_seconds: 10,
            retry: RetrySettings::default(),
            rate_limit_per_second: None,
            max_in_flight: 4,
            ordered: false,
        };
        log.push(
            EndpointCreated {
                id: 1,
                organization: 1,
                settings,
                enabled: true,
                secret: Sealed::default(),
            }
            .into(),
        );
        log
    }

    #[test]
    fn a_delivery_goes_from_pending_through_retries_to_delivered() {
        let mut log = log();
        let id = log.schedule(3);
        assert_eq!(log.schedule(3), 12, "a repeat is ignored");
        assert_eq!(log.view.delivery(12), None);
        log.fail(id, 1, Some(9_000));
        let d = log.view.delivery(id).unwrap();
        assert_eq!(
            (
                d.status,
                d.next_retry_at,
                d.response_status(),
                d.attempts.len()
            ),
            (DeliveryStatus::Pending, Some(9_000), Some(503), 1)
        );
        assert_eq!(log.view.error_message(d), Some("HTTP 503"));
        assert_eq!(
            (d.duration_ms(), log.view.event_type(d)),
            (Some(7), "build.done")
        );
        log.push(
            AttemptSucceeded {
                endpoint: 1,
                delivery: id,
                attempt: 2,
                at: 9_000,
                status: 204,
                duration_ms: 3,
                snippet: String::new(),
            }
            .into(),
        );
        let d = log.view.delivery(id).unwrap();
        assert_eq!(
            (
                d.status,
                d.next_retry_at,
                d.delivered_at(),
                log.view.error_message(d)
            ),
            (DeliveryStatus::Delivered, None, Some(12_000), None)
        );
        let e = log.view.endpoint(1).unwrap();
        assert_eq!(
            (e.delivery_count, e.failure_count, e.last_delivery_at),
            (1, 1, Some(9_000))
        );
        assert_eq!(log.view.pending_count(1), 0);
    }

    #[test]
    fn dead_letters_and_disabling_end_deliveries() {
        let mut log = log();
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
        assert_eq!(
            log.view.delivery(dead).unwrap().status,
            DeliveryStatus::Dead
        );
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
        let d = log.view.delivery(other).unwrap();
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert!(log.view.error_message(d).unwrap().contains("410"));
        let late = log.schedule(5);
        assert_eq!(
            log.view.delivery(late).unwrap().status,
            DeliveryStatus::Failed
        );
        let ids: Vec<u64> = log.view.deliveries_of(1).map(|d| d.id).collect();
        assert_eq!(ids, [late, other, dead], "newest first");
    }

    #[test]
    fn idempotency_keys_expire_after_24_hours_and_count_deliveries() {
        let mut log = log();
        let publish = |key: &str| EventPublished {
            organization: 1,
            event_type: "build.done".into(),
            resource_type: String::new(),
            resource_id: String::new(),
            payload: crate::codec::Protected::Clear(RawJson(b"{}".to_vec())),
            idempotency_key: Some(key.into()),
        };
        let first = log.push(publish("k").into());
        log.schedule(first);
        let record = log.view.idempotent(1, "k", log.at).unwrap();
        assert_eq!((record.id, record.deliveries), (first, 1));
        assert_eq!(
            log.view.idempotent(2, "k", log.at),
            None,
            "keys are per organization"
        );
        let day = IDEMPOTENCY_WINDOW_SECONDS * 1_000_000;
        assert_eq!(log.view.idempotent(1, "k", log.at + day), None);
        log.at += day + 1;
        let second = log.push(publish("k").into());
        assert_eq!(log.view.idempotent(1, "k", log.at).unwrap().id, second);
        let types: Vec<(String, u64)> = log
            .view
            .custom_types()
            .map(|t| (t.name.clone(), t.count))
            .collect();
        assert_eq!(types, [("build.done".to_owned(), 2)]);
    }

    #[test]
    fn history_is_bounded_per_endpoint_but_keeps_pending_deliveries() {
        let mut log = log();
        let first = log.schedule(1);
        let second = log.schedule(2);
        log.push(
            AttemptSucceeded {
                endpoint: 1,
                delivery: second,
                attempt: 1,
                at: 1,
                status: 200,
                duration_ms: 1,
                snippet: String::new(),
            }
            .into(),
        );
        for source in 3..(MAX_HISTORY_PER_ENDPOINT as u64 + 2) {
            log.schedule(source);
        }
        assert!(log.view.delivery(first).is_some(), "still pending");
        assert_eq!(
            log.view.delivery(second),
            None,
            "oldest finished delivery dropped"
        );
        assert_eq!(log.view.deliveries_of(1).count(), MAX_HISTORY_PER_ENDPOINT);
    }

    #[test]
    fn retention_drops_finished_deliveries_of_its_organization_only() {
        let mut log = log();
        let (old, pending) = (log.schedule(1), log.schedule(2));
        log.push(
            AttemptSucceeded {
                endpoint: 1,
                delivery: old,
                attempt: 1,
                at: 1_000,
                status: 204,
                duration_ms: 3,
                snippet: String::new(),
            }
            .into(),
        );
        log.at = 5_000;
        let young = log.schedule(3);
        assert_eq!(log.view.expirable(1, 5_000), 1, "pending ones never expire");
        assert_eq!(log.view.expirable(2, 5_000), 0);
        let expiry = |organization| {
            crate::domain::retention::RetentionExpired {
                organization,
                kind: Expiring::Deliveries,
                before: 5_000,
            }
            .into()
        };
        log.push(expiry(2));
        assert!(
            log.view.delivery(old).is_some(),
            "another organization's expiry"
        );
        log.push(expiry(1));
        assert_eq!(log.view.delivery(old), None);
        let kept: Vec<u64> = log.view.deliveries_of(1).map(|d| d.id).collect();
        assert_eq!(kept, [young, pending]);
    }
}
