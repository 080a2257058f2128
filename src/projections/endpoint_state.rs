//! The state of one endpoint as its actor needs it: a pure fold of the `endpoint-<id>` stream.
//!
//! Pending deliveries and their retry times live here and nowhere else: after a crash the actor
//! replays the stream (snapshot plus tail) and every pending retry resumes at its
//! `next_attempt_at`. There is no separate queue that could be lost or get stuck.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::compact::{SourceRef, Symbols, WebhookId};
use crate::codec::Sealed;
use crate::domain::Event;
use crate::domain::delivery::{DeliveryKind, DeliverySource};
use crate::domain::endpoint::EndpointSettings;
use crate::journal::{Position, RecordedEvent, Revision};

/// A delivery not yet delivered, dead-lettered or abandoned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDelivery {
    /// `webhook-id` of every attempt.
    pub webhook_id: WebhookId,
    /// Event type (a symbol of [`EndpointState::event_type`]).
    pub event_type: u32,
    /// Why it exists.
    pub kind: DeliveryKind,
    /// What it sends.
    pub source: SourceRef,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (µs since the epoch; the scheduling time at first).
    pub next_attempt_at: i64,
}

/// What folding one event changed, for the actor's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing the actor tracks.
    None,
    /// Delivery `id` became pending (dispatched from `source` if it is a journal event).
    Scheduled {
        /// The delivery.
        id: u64,
        /// Its source position, for dispatched deliveries.
        source: Option<Position>,
    },
    /// A dispatched delivery was recorded but is not pending (duplicate, or endpoint inactive).
    Skipped {
        /// Its source position.
        source: Option<Position>,
    },
    /// An attempt of delivery `id` was recorded.
    Attempted {
        /// The delivery.
        id: u64,
    },
    /// Settings, secrets or the enabled state changed.
    Config,
    /// The record does not decode (the actor parks it).
    Undecodable(String),
}

/// The fold of an endpoint's stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointState {
    /// The endpoint's id (0 until created).
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// Whether it was deleted.
    pub deleted: bool,
    /// Current settings (`None` until created).
    pub settings: Option<EndpointSettings>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// The current signing secret, sealed.
    pub secret: Sealed,
    /// The previous secret and until when it still signs (µs).
    pub previous_secret: Option<(Sealed, i64)>,
    /// Highest source position of a dispatched delivery recorded so far.
    pub last_dispatched: Option<Position>,
    /// Pending deliveries by id (journal order).
    pub pending: BTreeMap<u64, PendingDelivery>,
    /// Pending deliveries by due time.
    schedule: BTreeSet<(i64, u64)>,
    /// First failure since the last success (µs), `None` while healthy.
    pub failing_since: Option<i64>,
    /// Event types and source streams of pending deliveries, interned.
    symbols: Symbols,
    /// The next stream revision to fold.
    pub next_revision: Revision,
}

impl EndpointState {
    /// Whether new deliveries are scheduled and sent.
    pub fn is_active(&self) -> bool {
        self.settings.is_some() && self.enabled && !self.deleted
    }

    /// What a pending delivery sends.
    pub fn source(&self, pending: &PendingDelivery) -> DeliverySource {
        pending.source.to_source(&self.symbols)
    }

    /// The event type of a pending delivery.
    pub fn event_type(&self, pending: &PendingDelivery) -> &str {
        self.symbols.name(pending.event_type)
    }

    /// Whether ordering is strict.
    pub fn ordered(&self) -> bool {
        self.settings.as_ref().is_some_and(|s| s.ordered)
    }

    /// Whether a dispatched event at `source` was already recorded.
    pub fn already_dispatched(&self, source: Position) -> bool {
        self.last_dispatched.is_some_and(|last| source <= last)
    }

    /// The secrets that sign at `now`: the current one, then the previous one within its grace.
    pub fn signing_secrets(&self, now: i64) -> Vec<&Sealed> {
        let mut secrets = vec![&self.secret];
        if let Some((previous, until)) = &self.previous_secret
            && now < *until
        {
            secrets.push(previous);
        }
        secrets
    }

    /// Folds one event of the stream.
    pub fn apply(&mut self, record: &RecordedEvent) -> Change {
        self.next_revision = record.revision + 1;
        let event = match Event::decode(record) {
            Ok(Some(event)) => event,
            Ok(None) => return Change::None,
            Err(e) => return Change::Undecodable(e.to_string()),
        };
        match event {
            Event::EndpointCreated(e) => {
                self.id = e.id;
                self.organization = e.organization;
                self.settings = Some(e.settings);
                self.enabled = e.enabled;
                self.secret = e.secret;
                Change::Config
            }
            Event::EndpointUpdated(e) => {
                self.settings = Some(e.settings);
                Change::Config
            }
            Event::EndpointSecretRotated(e) => {
                let previous = std::mem::replace(&mut self.secret, e.secret);
                self.previous_secret = Some((previous, e.previous_expires_at));
                Change::Config
            }
            Event::EndpointEnabled(_) => {
                self.enabled = true;
                self.disabled_reason = None;
                self.failing_since = None;
                Change::Config
            }
            Event::EndpointDisabled(e) => {
                self.enabled = false;
                self.disabled_reason = Some(e.reason);
                self.abandon_pending();
                Change::Config
            }
            Event::EndpointDeleted(_) => {
                self.deleted = true;
                self.abandon_pending();
                Change::Config
            }
            Event::DeliveryScheduled(e) => {
                let source = match e.kind {
                    DeliveryKind::Test => return Change::None,
                    DeliveryKind::Dispatched => {
                        let position = e.source.position();
                        if let Some(p) = position {
                            if self.already_dispatched(p) {
                                return Change::Skipped { source: position };
                            }
                            self.last_dispatched = Some(p);
                        }
                        position
                    }
                    DeliveryKind::Redelivery { .. } => None,
                };
                if !self.is_active() {
                    return Change::Skipped { source };
                }
                let id = record.position;
                // Due from the moment it was recorded: new deliveries and due retries are served in
                // the order they became due, so a flood of new events cannot starve retries.
                let due = record.recorded_at;
                self.schedule.insert((due, id));
                let pending = PendingDelivery {
                    webhook_id: WebhookId::parse(&e.webhook_id),
                    event_type: self.symbols.intern(&e.event_type),
                    kind: e.kind,
                    source: SourceRef::new(e.source, &mut self.symbols),
                    attempts: 0,
                    next_attempt_at: due,
                };
                self.pending.insert(id, pending);
                Change::Scheduled { id, source }
            }
            Event::DeliveryFilterFailed(e) => {
                let source = e.source.position();
                if let Some(p) = source
                    && !self.already_dispatched(p)
                {
                    self.last_dispatched = Some(p);
                }
                Change::Skipped { source }
            }
            Event::AttemptSucceeded(e) => {
                if self.take_attempt(e.delivery, e.attempt).is_some() {
                    self.remove(e.delivery);
                    self.failing_since = None;
                }
                Change::Attempted { id: e.delivery }
            }
            Event::AttemptFailed(e) => {
                if self.take_attempt(e.delivery, e.attempt).is_some() {
                    self.failing_since.get_or_insert(e.at);
                    match e.next_attempt_at {
                        Some(at) => {
                            if let Some(p) = self.pending.get_mut(&e.delivery) {
                                self.schedule.remove(&(p.next_attempt_at, e.delivery));
                                p.next_attempt_at = at;
                                self.schedule.insert((at, e.delivery));
                            }
                        }
                        None => self.remove(e.delivery),
                    }
                }
                Change::Attempted { id: e.delivery }
            }
            _ => Change::None,
        }
    }

    /// Counts attempt `attempt` of `id` if it is the next one expected; `None` for a repeat.
    fn take_attempt(&mut self, id: u64, attempt: u32) -> Option<()> {
        let pending = self.pending.get_mut(&id)?;
        (attempt == pending.attempts + 1).then(|| pending.attempts = attempt)
    }

    fn remove(&mut self, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            self.schedule.remove(&(p.next_attempt_at, id));
        }
    }

    fn abandon_pending(&mut self) {
        self.pending.clear();
        self.schedule.clear();
    }

    /// Deliveries due at `now` that are not `busy`, at most `limit`, in the order to start them.
    /// An ordered endpoint only ever offers its oldest pending delivery, and only when nothing of
    /// it is busy.
    pub fn due(&self, now: i64, busy: impl Fn(u64) -> bool, limit: usize) -> Vec<u64> {
        if limit == 0 || !self.is_active() {
            return Vec::new();
        }
        if self.ordered() {
            return match self.pending.iter().next() {
                Some((id, p)) if !busy(*id) && p.next_attempt_at <= now => vec![*id],
                _ => Vec::new(),
            };
        }
        self.schedule
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter(|(_, id)| !busy(*id))
            .map(|(_, id)| *id)
            .take(limit)
            .collect()
    }

    /// When the next delivery that is not `busy` becomes due, if any.
    pub fn next_due(&self, busy: impl Fn(u64) -> bool) -> Option<i64> {
        if !self.is_active() {
            return None;
        }
        if self.ordered() {
            return self
                .pending
                .iter()
                .next()
                .filter(|(id, _)| !busy(**id))
                .map(|(_, p)| p.next_attempt_at);
        }
        self.schedule
            .iter()
            .find(|(_, id)| !busy(*id))
            .map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::{
        AttemptFailed, AttemptSucceeded, DeliveryScheduled, DeliverySource, EventRef,
    };
    use crate::domain::endpoint::{
        EndpointCreated, EndpointDisabled, EndpointEnabled, EndpointSecretRotated,
    };
    use crate::journal::Metadata;

    struct Stream {
        state: EndpointState,
        position: u64,
        revision: u64,
        at: i64,
    }

    fn settings(ordered: bool) -> EndpointSettings {
        EndpointSettings {
            name: "ci".into(),
            url: "https://example.com/hook".into(),
            events: vec!["*".into()],
            ordered,
            ..EndpointSettings::default()
        }
    }

    impl Stream {
        fn new(ordered: bool) -> Self {
            let mut s = Stream {
                state: EndpointState::default(),
                position: 100,
                revision: 0,
                at: 0,
            };
            s.push(
                EndpointCreated {
                    id: 7,
                    organization: 1,
                    settings: settings(ordered),
                    enabled: true,
                    secret: Sealed(vec![1]),
                }
                .into(),
            );
            s
        }

        fn push(&mut self, event: Event) -> Change {
            let new = event.encode(Metadata::default());
            let record = RecordedEvent {
                position: self.position,
                stream: "endpoint-7".into(),
                revision: self.revision,
                event_type: new.event_type,
                schema_version: new.schema_version,
                recorded_at: self.at,
                metadata: new.metadata,
                data: new.data.into(),
                compacted: false,
            };
            self.position += 1;
            self.revision += 1;
            self.state.apply(&record)
        }

        fn dispatch(&mut self, source: u64) -> Change {
            self.push(
                DeliveryScheduled {
                    endpoint: 7,
                    organization: 1,
                    webhook_id: format!("msg_{source}"),
                    event_type: "build.done".into(),
                    kind: DeliveryKind::Dispatched,
                    source: DeliverySource::Journal(EventRef {
                        position: source,
                        stream: "published-1".into(),
                        revision: source,
                    }),
                }
                .into(),
            )
        }

        fn fail(&mut self, delivery: u64, attempt: u32, at: i64, next: Option<i64>) -> Change {
            self.push(
                AttemptFailed {
                    endpoint: 7,
                    delivery,
                    attempt,
                    at,
                    status: Some(500),
                    duration_ms: 1,
                    snippet: String::new(),
                    error: "HTTP 500".into(),
                    error_kind: "http_status".into(),
                    next_attempt_at: next,
                }
                .into(),
            )
        }

        fn succeed(&mut self, delivery: u64, attempt: u32) -> Change {
            self.push(
                AttemptSucceeded {
                    endpoint: 7,
                    delivery,
                    attempt,
                    at: 0,
                    status: 200,
                    duration_ms: 1,
                    snippet: String::new(),
                }
                .into(),
            )
        }
    }

    #[test]
    fn dispatched_deliveries_are_recorded_once_per_source_position() {
        let mut s = Stream::new(false);
        assert_eq!(
            s.dispatch(10),
            Change::Scheduled {
                id: 101,
                source: Some(10)
            }
        );
        assert_eq!(
            s.dispatch(10),
            Change::Skipped { source: Some(10) },
            "a repeat is ignored"
        );
        assert_eq!(
            s.dispatch(9),
            Change::Skipped { source: Some(9) },
            "so is anything older"
        );
        assert_eq!(
            s.dispatch(11),
            Change::Scheduled {
                id: 104,
                source: Some(11)
            }
        );
        assert_eq!(
            s.state.pending.keys().copied().collect::<Vec<_>>(),
            [101, 104]
        );
        assert_eq!(s.state.next_revision, 5);
    }

    #[test]
    fn retries_are_due_at_their_time_and_attempts_count_once() {
        let mut s = Stream::new(false);
        s.dispatch(10);
        s.dispatch(11);
        assert_eq!(s.state.due(0, |_| false, 10), [101, 102]);
        assert_eq!(s.state.due(0, |id| id == 101, 10), [102]);
        assert_eq!(s.state.due(0, |_| false, 1), [101]);
        s.fail(101, 1, 5, Some(1_000));
        s.fail(101, 1, 5, Some(9_999)); // a repeat of attempt 1 changes nothing
        assert_eq!(s.state.pending[&101].attempts, 1);
        assert_eq!(s.state.failing_since, Some(5));
        assert_eq!(s.state.due(999, |_| false, 10), [102]);
        assert_eq!(s.state.due(1_000, |_| false, 10), [102, 101]);
        assert_eq!(s.state.next_due(|id| id == 102), Some(1_000));
        s.succeed(102, 1);
        assert_eq!(
            s.state.failing_since, None,
            "a success ends the failure streak"
        );
        s.fail(101, 2, 2_000, None);
        assert!(s.state.pending.is_empty());
        assert_eq!(s.state.next_due(|_| false), None);
    }

    #[test]
    fn new_deliveries_and_due_retries_are_served_in_the_order_they_became_due() {
        let mut s = Stream::new(false);
        s.dispatch(10);
        s.fail(101, 1, 0, Some(1_000));
        s.at = 2_000;
        s.dispatch(11);
        assert_eq!(s.state.pending[&103].next_attempt_at, 2_000);
        assert_eq!(s.state.due(1_500, |_| false, 10), [101]);
        assert_eq!(s.state.due(5_000, |_| false, 10), [101, 103]);
    }

    #[test]
    fn ordered_endpoints_offer_only_their_oldest_delivery() {
        let mut s = Stream::new(true);
        s.dispatch(10);
        s.dispatch(11);
        assert_eq!(s.state.due(0, |_| false, 4), [101]);
        assert_eq!(
            s.state.due(0, |id| id == 101, 4),
            Vec::<u64>::new(),
            "the head in flight holds the rest back"
        );
        s.fail(101, 1, 0, Some(500));
        assert_eq!(
            s.state.due(100, |_| false, 4),
            Vec::<u64>::new(),
            "a failing head holds the rest back"
        );
        assert_eq!(s.state.next_due(|_| false), Some(500));
        assert_eq!(s.state.due(500, |_| false, 4), [101]);
        s.succeed(101, 2);
        assert_eq!(s.state.due(500, |_| false, 4), [102]);
    }

    #[test]
    fn disabling_abandons_pending_deliveries_and_inactive_endpoints_schedule_nothing() {
        let mut s = Stream::new(false);
        s.dispatch(10);
        s.push(
            EndpointDisabled {
                id: 7,
                organization: 1,
                name: "ci".into(),
                reason: "gone".into(),
                failing_since: None,
            }
            .into(),
        );
        assert!(s.state.pending.is_empty() && !s.state.is_active());
        assert_eq!(s.state.disabled_reason.as_deref(), Some("gone"));
        assert_eq!(s.dispatch(11), Change::Skipped { source: Some(11) });
        assert_eq!(s.state.due(0, |_| false, 4), Vec::<u64>::new());
        s.push(
            EndpointEnabled {
                id: 7,
                organization: 1,
            }
            .into(),
        );
        assert_eq!(
            s.dispatch(11),
            Change::Skipped { source: Some(11) },
            "still a repeat"
        );
        assert!(matches!(s.dispatch(12), Change::Scheduled { .. }));
    }

    #[test]
    fn the_previous_secret_signs_until_its_grace_ends() {
        let mut s = Stream::new(false);
        s.push(
            EndpointSecretRotated {
                id: 7,
                organization: 1,
                secret: Sealed(vec![2]),
                previous_expires_at: 1_000,
            }
            .into(),
        );
        assert_eq!(
            s.state.signing_secrets(999),
            [&Sealed(vec![2]), &Sealed(vec![1])]
        );
        assert_eq!(s.state.signing_secrets(1_000), [&Sealed(vec![2])]);
    }

    #[test]
    fn the_state_survives_a_snapshot_round_trip() {
        let mut s = Stream::new(false);
        s.dispatch(10);
        s.fail(101, 1, 5, Some(1_000));
        let bytes = postcard::to_stdvec(&s.state).unwrap();
        let back: EndpointState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, s.state);
        assert_eq!(back.due(1_000, |_| false, 4), [101]);
    }
}
