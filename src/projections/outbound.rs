//! The outbound read model behind the admin API: endpoints with their counters and pending
//! deliveries, and the custom event types seen. It holds configuration and live work only: the
//! delivery history and idempotency keys are on disk ([`super::DeliveriesView`],
//! [`super::PublicationsView`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::View;
use super::deliveries::is_repeat_dispatch;
use crate::codec::Sealed;
use crate::domain::Event;
use crate::domain::delivery::DeliveryKind;
use crate::domain::endpoint::EndpointSettings;
use crate::journal::{EventFilter, Position, RecordedEvent};

/// A delivery still waiting for an attempt: what the counters need of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    attempts: u32,
    test: bool,
}

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
    pending: BTreeMap<u64, Pending>,
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

/// Outbound endpoints and custom event types.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OutboundView {
    endpoints: BTreeMap<u64, EndpointRecord>,
    /// Highest endpoint id ever used.
    pub max_endpoint_id: u64,
    custom_types: BTreeMap<(u64, String), CustomType>,
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

    /// Pending deliveries of every endpoint (asleep ones included).
    pub fn pending_total(&self) -> usize {
        self.endpoints.values().map(|e| e.pending.len()).sum()
    }

    /// Pending deliveries of an endpoint.
    pub fn pending_count(&self, endpoint: u64) -> usize {
        self.endpoints.get(&endpoint).map_or(0, |e| e.pending.len())
    }

    /// Custom event types published, by organization and name.
    pub fn custom_types(&self) -> impl Iterator<Item = &CustomType> {
        self.custom_types.values()
    }

    fn touch(&mut self, id: u64, at: i64, change: impl FnOnce(&mut EndpointRecord)) {
        if let Some(e) = self.endpoints.get_mut(&id) {
            change(e);
            e.modified = at;
        }
    }

    /// Counts a scheduled delivery (`filtered`: its filter failed, so it ended at once).
    fn schedule(
        &mut self,
        id: Position,
        e: &crate::domain::delivery::DeliveryScheduled,
        filtered: bool,
    ) {
        let Some(endpoint) = self.endpoints.get_mut(&e.endpoint) else {
            return;
        };
        if is_repeat_dispatch(&mut endpoint.last_dispatched, e) {
            return;
        }
        endpoint.delivery_count += 1;
        let test = e.kind == DeliveryKind::Test;
        if !filtered && (endpoint.enabled || test) {
            endpoint.pending.insert(id, Pending { attempts: 0, test });
        }
    }

    /// Counts attempt `attempt` of delivery `id` if it is the next one of a pending delivery;
    /// `last` ends it. Returns whether it was a test ping's, if counted.
    fn attempt(
        &mut self,
        endpoint: u64,
        id: u64,
        attempt: u32,
        last: bool,
    ) -> Option<(&mut EndpointRecord, bool)> {
        let e = self.endpoints.get_mut(&endpoint)?;
        let pending = e.pending.get_mut(&id)?;
        if attempt != pending.attempts + 1 {
            return None;
        }
        pending.attempts = attempt;
        let test = pending.test;
        if last {
            e.pending.remove(&id);
        }
        Some((e, test))
    }

    fn published(&mut self, at: i64, e: crate::domain::published::EventPublished) {
        let seen = self
            .custom_types
            .entry((e.organization, e.event_type.clone()))
            .or_insert_with(|| CustomType {
                organization: e.organization,
                name: e.event_type,
                first_seen: at,
                last_seen: at,
                count: 0,
            });
        seen.last_seen = at;
        seen.count += 1;
    }
}

impl View for OutboundView {
    const NAME: &'static str = "outbound";

    fn filter() -> EventFilter {
        EventFilter::Categories(vec!["endpoint".into(), "published".into()])
    }

    fn apply(&mut self, record: &RecordedEvent) {
        let Ok(Some(event)) = Event::decode(record) else {
            return;
        };
        let at = record.recorded_at;
        match event {
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
                        pending: BTreeMap::new(),
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
            Event::EndpointDisabled(e) => self.touch(e.id, at, |r| {
                r.enabled = false;
                r.disabled_reason = Some(e.reason);
                r.pending.clear();
            }),
            Event::EndpointDeleted(e) => {
                self.endpoints.remove(&e.id);
            }
            Event::DeliveryScheduled(e) => self.schedule(record.position, &e, false),
            Event::DeliveryFilterFailed(e) => {
                self.schedule(record.position, &e.into_scheduled().0, true);
            }
            Event::AttemptSucceeded(e) => {
                if let Some((endpoint, _)) = self.attempt(e.endpoint, e.delivery, e.attempt, true) {
                    endpoint.last_delivery_at = Some(e.at);
                }
            }
            Event::AttemptFailed(e) => {
                let last = e.next_attempt_at.is_none();
                if let Some((endpoint, test)) =
                    self.attempt(e.endpoint, e.delivery, e.attempt, last)
                    && !test
                {
                    endpoint.failure_count += 1;
                }
            }
            Event::EventPublished(e) => self.published(at, e),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbound_log::Log;
    use crate::codec::RawJson;
    use crate::domain::delivery::AttemptSucceeded;
    use crate::domain::published::EventPublished;

    #[test]
    fn counters_follow_attempts_and_pending_deliveries_end() {
        let mut log = Log::new();
        let id = log.schedule(3);
        log.schedule(3);
        log.fail(id, 1, Some(9_000));
        log.fail(id, 1, Some(9_000));
        assert_eq!(log.outbound.pending_count(1), 1);
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
        let e = log.outbound.endpoint(1).unwrap();
        assert_eq!(
            (e.delivery_count, e.failure_count, e.last_delivery_at),
            (1, 1, Some(9_000)),
            "a repeated dispatch and a repeated attempt are not counted twice"
        );
        assert_eq!(log.outbound.pending_total(), 0);
    }

    #[test]
    fn custom_types_count_publications() {
        let mut log = Log::new();
        let publish = || EventPublished {
            organization: 1,
            event_type: "build.done".into(),
            resource_type: String::new(),
            resource_id: String::new(),
            payload: crate::codec::Protected::Clear(RawJson(b"{}".to_vec())),
            idempotency_key: None,
        };
        log.push(publish().into());
        log.at += 5;
        log.push(publish().into());
        let types: Vec<(String, u64, i64, i64)> = log
            .outbound
            .custom_types()
            .map(|t| (t.name.clone(), t.count, t.first_seen, t.last_seen))
            .collect();
        assert_eq!(types, [("build.done".to_owned(), 2, 1_000, 1_005)]);
    }
}
