//! A rule's state as a fold of its stream, and the pure decision it makes for each webhook.
//!
//! Decisions depend only on the log: duplicates and throttle windows are measured between the
//! events' recorded times, never the wall clock, so a replay after a crash reaches exactly the
//! state the rule had, and an undecided webhook found on replay is decided as it would have been.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// The delivery ids and replay keys a rule accepted within its dedup window, with the event log
/// each first created. It grows with traffic, so the actor keeps it on disk (written with the
/// rule's state); tests use [`MemorySeen`].
pub trait SeenSet {
    /// When `key` was accepted (its event log and time), if it is still remembered.
    fn first(&self, key: &str) -> Option<(Position, i64)>;
    /// Remembers `key`, accepted at `at` as event log `position`; keys accepted before
    /// `horizon` may be forgotten.
    fn remember(&mut self, key: &str, position: Position, at: i64, horizon: i64);
}

/// A [`SeenSet`] in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemorySeen {
    first: HashMap<String, (Position, i64)>,
    order: VecDeque<(i64, String)>,
}

impl SeenSet for MemorySeen {
    fn first(&self, key: &str) -> Option<(Position, i64)> {
        self.first.get(key).copied()
    }

    fn remember(&mut self, key: &str, position: Position, at: i64, horizon: i64) {
        self.first.insert(key.to_owned(), (position, at));
        self.order.push_back((at, key.to_owned()));
        while let Some((oldest, _)) = self.order.front() {
            if *oldest >= horizon {
                break;
            }
            let (when, key) = self.order.pop_front().expect("front exists");
            if self.first.get(&key).is_some_and(|(_, t)| *t == when) {
                self.first.remove(&key);
            }
        }
    }
}

use serde::{Deserialize, Serialize};

use super::Event;
use super::rule::RuleConfig;
use super::webhook::{EventEvaluated, Outcome, WebhookReceived};
use crate::conditions::{ConditionResult, RuleEvaluation, ThrottleKey};
use crate::journal::{Position, RecordedEvent};

/// A webhook the rule has not decided yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Its event log id (position).
    pub event_log_id: Position,
    /// Its revision in the rule's stream (where its payload is).
    pub revision: u64,
    /// When it was recorded (µs).
    pub received_at: i64,
    /// Its delivery id.
    pub event_guid: Option<String>,
    /// The digest of what its signature covers, when the rule de-duplicates on it.
    pub replay_key: Option<String>,
}

/// Where a parked webhook was when it was set aside, so that a retry resumes it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParkedStage {
    /// Not decided yet.
    Undecided(Pending),
    /// Decided `fire`, actions not fired (the decision's time, µs).
    Unfired(i64),
}

/// Everything a rule needs to decide: a fold of its stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleState {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Current configuration (`None` before creation or after deletion).
    pub config: Option<RuleConfig>,
    /// Last firing time per throttle key (µs), within the throttle window.
    last_fired: HashMap<String, i64>,
    /// Firings so far.
    pub fire_count: u64,
    /// Time of the last firing (µs).
    pub last_fired_at: Option<i64>,
    /// Received, not yet decided, in order.
    pub undecided: BTreeMap<Position, Pending>,
    /// Decided `fire`, actions not yet recorded as fired, in order.
    pub unfired: BTreeMap<Position, i64>,
    /// Set aside because the rule could not process them, until an operator retries them.
    pub parked: BTreeMap<Position, ParkedStage>,
    /// The next revision of the stream to fold.
    pub next_revision: u64,
    /// The position just after the last folded event.
    pub next_position: Position,
}

impl RuleState {
    /// A state for rule `id` that has folded nothing yet.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            ..Self::default()
        }
    }

    /// Folds one event of the rule's stream. Idempotent for decisions the rule already applied
    /// (its own appends come back through the subscription).
    pub fn apply(&mut self, record: &RecordedEvent, seen: &mut impl SeenSet) {
        if record.revision < self.next_revision {
            return;
        }
        self.next_revision = record.revision + 1;
        self.next_position = record.position + 1;
        let event = match Event::decode(record) {
            Ok(Some(event)) => event,
            // A webhook whose record does not decode is still one to decide: the actor, unable
            // to read it, parks it with the reason.
            Err(_) if record.event_type == <WebhookReceived as crate::codec::EventBody>::TYPE => {
                self.undecided
                    .insert(record.position, pending(record, None, None));
                return;
            }
            _ => return,
        };
        match event {
            Event::RuleCreated(e) => {
                self.organization = e.organization;
                self.config = Some(e.config);
            }
            Event::RuleUpdated(e) => self.config = Some(e.config),
            Event::RuleEnabledChanged(e) => {
                if let Some(config) = &mut self.config {
                    config.enabled = e.enabled;
                }
            }
            Event::RuleDeleted(_) => self.config = None,
            Event::WebhookReceived(e) => {
                self.undecided
                    .insert(record.position, pending(record, e.event_guid, e.replay_key));
            }
            Event::WebhookParked(e) => self.park(e.event_log_id),
            Event::WebhookRetryRequested(e) => match self.parked.remove(&e.event_log_id) {
                Some(ParkedStage::Undecided(p)) => {
                    self.undecided.insert(e.event_log_id, p);
                }
                Some(ParkedStage::Unfired(at)) => {
                    self.unfired.insert(e.event_log_id, at);
                }
                None => {}
            },
            Event::EventEvaluated(e) => self.apply_decision(&e, seen),
            Event::ActionsFired(e) => {
                self.unfired.remove(&e.event_log_id);
            }
            _ => {}
        }
    }

    /// Sets a webhook aside (made now, or read back from the log): it is neither decided nor
    /// fired until retried.
    pub fn park(&mut self, event_log_id: Position) {
        if let Some(p) = self.undecided.remove(&event_log_id) {
            self.parked.insert(event_log_id, ParkedStage::Undecided(p));
        } else if let Some(at) = self.unfired.remove(&event_log_id) {
            self.parked.insert(event_log_id, ParkedStage::Unfired(at));
        }
    }

    /// Applies a decision (made now, or read back from the log).
    pub fn apply_decision(&mut self, decision: &EventEvaluated, seen: &mut impl SeenSet) {
        let Some(pending) = self.undecided.remove(&decision.event_log_id) else {
            return;
        };
        let at = pending.received_at;
        match decision.outcome {
            Outcome::Duplicate => return,
            Outcome::Fire | Outcome::Matched => {
                self.fire_count += 1;
                self.last_fired_at = Some(at);
                self.last_fired
                    .insert(decision.throttle_key.clone().unwrap_or_default(), at);
                self.forget_old_firings(at);
                if decision.outcome == Outcome::Fire {
                    self.unfired.insert(decision.event_log_id, at);
                }
            }
            _ => {}
        }
        let window = self.window_micros();
        if window > 0 {
            for key in pending.event_guid.iter().chain(&pending.replay_key) {
                seen.remember(key, pending.event_log_id, at, at - window);
            }
        }
    }

    fn window_micros(&self) -> i64 {
        self.config
            .as_ref()
            .map_or(0, |c| c.dedup_window_seconds as i64 * 1_000_000)
    }

    /// Throttle keys that last fired longer ago than the window can never throttle again.
    fn forget_old_firings(&mut self, now: i64) {
        let seconds = self.config.as_ref().map_or(0, |c| c.throttle_seconds) as i64;
        if self.last_fired.len() > 1024 {
            self.last_fired
                .retain(|_, last| now - *last < seconds * 1_000_000);
        }
    }

    /// Whether a delivery id (or replay key) seen at `at` repeats one accepted within the dedup
    /// window.
    pub fn is_duplicate(&self, key: Option<&str>, at: i64, seen: &impl SeenSet) -> bool {
        let window = self.window_micros();
        match key.and_then(|k| seen.first(k)) {
            Some((_, first)) => window > 0 && at - first < window,
            None => false,
        }
    }

    /// Whether `pending` repeats a webhook accepted within the window, by delivery id or by
    /// replay key.
    fn repeats(&self, pending: &Pending, seen: &impl SeenSet) -> bool {
        self.is_duplicate(pending.event_guid.as_deref(), pending.received_at, seen)
            || self.is_duplicate(pending.replay_key.as_deref(), pending.received_at, seen)
    }

    /// Whether firing at `at` for `key` falls inside the throttle window.
    pub fn is_throttled(&self, key: &str, at: i64) -> bool {
        let seconds = self.config.as_ref().map_or(0, |c| c.throttle_seconds) as i64;
        seconds > 0
            && self
                .last_fired
                .get(key)
                .is_some_and(|last| at - last < seconds * 1_000_000)
    }

    /// Decides a pending webhook from its condition results (`None` when it is a duplicate and
    /// was therefore not evaluated).
    pub fn decide(
        &self,
        pending: &Pending,
        evaluation: Option<RuleEvaluation>,
        seen: &impl SeenSet,
    ) -> EventEvaluated {
        let decision = |outcome, condition_results, throttle_key, error| EventEvaluated {
            event_log_id: pending.event_log_id,
            outcome,
            condition_results,
            throttle_key,
            error,
        };
        let evaluation = match evaluation {
            Some(evaluation) if !self.repeats(pending, seen) => evaluation,
            _ => return decision(Outcome::Duplicate, Vec::new(), None, None),
        };
        let errors: Vec<String> = evaluation
            .conditions
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                ConditionResult::Error(e) => Some(format!("conditions[{i}]: {e}")),
                _ => None,
            })
            .collect();
        if !errors.is_empty() {
            return decision(
                Outcome::Error,
                evaluation.conditions,
                None,
                Some(errors.join("; ")),
            );
        }
        if !evaluation.matched() {
            return decision(Outcome::Unmatched, evaluation.conditions, None, None);
        }
        let key = match evaluation.throttle_key {
            Some(ThrottleKey::Error(e)) => {
                return decision(
                    Outcome::Error,
                    evaluation.conditions,
                    None,
                    Some(format!("throttle_key: {e}")),
                );
            }
            Some(ThrottleKey::Key(key)) => Some(key),
            None => None,
        };
        if self.is_throttled(key.as_deref().unwrap_or_default(), pending.received_at) {
            return decision(Outcome::Throttled, evaluation.conditions, key, None);
        }
        let has_actions = self.config.as_ref().is_some_and(|c| !c.actions.is_empty());
        let outcome = if has_actions {
            Outcome::Fire
        } else {
            Outcome::Matched
        };
        decision(outcome, evaluation.conditions, key, None)
    }

    /// Whether `pending` needs its conditions evaluated (duplicates do not).
    pub fn needs_evaluation(&self, pending: &Pending, seen: &impl SeenSet) -> bool {
        !self.repeats(pending, seen)
    }
}

fn pending(
    record: &RecordedEvent,
    event_guid: Option<String>,
    replay_key: Option<String>,
) -> Pending {
    Pending {
        event_log_id: record.position,
        revision: record.revision,
        received_at: record.recorded_at,
        event_guid,
        replay_key,
    }
}

/// The webhook body of a received event, for the actor to evaluate, or why it cannot be read.
pub fn received(record: &RecordedEvent) -> Result<WebhookReceived, String> {
    match Event::decode(record) {
        Ok(Some(Event::WebhookReceived(e))) => Ok(e),
        Ok(_) => Err(format!(
            "the record at position {} is a {}, not a received webhook",
            record.position, record.event_type
        )),
        Err(e) => Err(format!("the received webhook does not decode: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{RawJson, Sealed, encode};
    use crate::domain::rule::{Action, ActionType, RuleCreated, defaults};
    use crate::domain::webhook::ActionsFired;
    use crate::journal::Metadata;
    use crate::verify::SourceType;

    const SECOND: i64 = 1_000_000;

    struct Log {
        state: RuleState,
        seen: MemorySeen,
        revision: u64,
    }

    impl Log {
        fn new(throttle_seconds: u64, dedup_window_seconds: u64, with_action: bool) -> Self {
            let mut config = defaults("p".into());
            config.name = "rule".into();
            config.throttle_seconds = throttle_seconds;
            config.dedup_window_seconds = dedup_window_seconds;
            if with_action {
                config.actions.push(Action {
                    action_type: ActionType::LaunchJobTemplate,
                    target_id: 1,
                    extra_vars: RawJson::from_value(&serde_json::json!({})),
                    description: String::new(),
                });
            }
            let mut log = Self {
                state: RuleState::new(1),
                seen: MemorySeen::default(),
                revision: 0,
            };
            log.push(
                0,
                RuleCreated {
                    id: 1,
                    organization: 1,
                    config,
                    webhook_key: Sealed::default(),
                }
                .into(),
            );
            log
        }

        fn push(&mut self, at: i64, event: Event) -> Position {
            let position = self.revision;
            let new = event.encode(Metadata::default());
            let record = RecordedEvent {
                position,
                stream: "rule-1".into(),
                revision: self.revision,
                event_type: new.event_type,
                schema_version: new.schema_version,
                recorded_at: at,
                metadata: Metadata::default(),
                data: new.data.into(),
                compacted: false,
            };
            self.revision += 1;
            self.state.apply(&record, &mut self.seen);
            position
        }

        /// Given a webhook at `at` with `guid`, when the rule decides with `matched` conditions
        /// and `key`, then the outcome is returned (and recorded, as the actor does).
        fn receive(
            &mut self,
            at: i64,
            guid: Option<&str>,
            matched: bool,
            key: Option<&str>,
        ) -> Outcome {
            let received = WebhookReceived {
                rule: 1,
                organization: 1,
                source_type: SourceType::WebhookGeneric,
                event_type: None,
                event_guid: guid.map(str::to_owned),
                source_ip: None,
                content: crate::codec::Protected::default(),
                form_encoded: false,
                replay_key: None,
            };
            let position = self.push(at, received.into());
            let pending = self.state.undecided[&position].clone();
            let evaluation =
                self.state
                    .needs_evaluation(&pending, &self.seen)
                    .then(|| RuleEvaluation {
                        conditions: vec![if matched {
                            ConditionResult::True
                        } else {
                            ConditionResult::False
                        }],
                        throttle_key: key.map(|k| ThrottleKey::Key(k.into())),
                        internal_error: None,
                    });
            let decision = self.state.decide(&pending, evaluation, &self.seen);
            let outcome = decision.outcome;
            self.push(at, decision.into());
            outcome
        }
    }

    #[test]
    fn duplicates_within_the_window_only() {
        let mut log = Log::new(0, 60, false);
        assert_eq!(log.receive(0, Some("a"), true, None), Outcome::Matched);
        assert_eq!(
            log.receive(10 * SECOND, Some("a"), true, None),
            Outcome::Duplicate
        );
        assert_eq!(
            log.receive(61 * SECOND, Some("a"), true, None),
            Outcome::Matched,
            "window passed"
        );
        assert_eq!(
            log.receive(62 * SECOND, None, true, None),
            Outcome::Matched,
            "no guid, no dedup"
        );
        assert_eq!(log.receive(63 * SECOND, None, true, None), Outcome::Matched);
    }

    #[test]
    fn an_unmatched_event_still_claims_its_delivery_id() {
        let mut log = Log::new(0, 60, false);
        assert_eq!(log.receive(0, Some("x"), false, None), Outcome::Unmatched);
        assert_eq!(
            log.receive(SECOND, Some("x"), true, None),
            Outcome::Duplicate
        );
    }

    #[test]
    fn throttle_per_key() {
        let mut log = Log::new(30, 0, true);
        assert_eq!(log.receive(0, None, true, Some("disk")), Outcome::Fire);
        assert_eq!(
            log.receive(10 * SECOND, None, true, Some("disk")),
            Outcome::Throttled
        );
        assert_eq!(
            log.receive(11 * SECOND, None, true, Some("cpu")),
            Outcome::Fire,
            "another key"
        );
        assert_eq!(
            log.receive(31 * SECOND, None, true, Some("disk")),
            Outcome::Fire,
            "window over"
        );
        assert_eq!(log.state.fire_count, 3);
        assert_eq!(log.state.last_fired_at, Some(31 * SECOND));
        assert_eq!(
            log.state.unfired.len(),
            3,
            "fired actions await their results"
        );
        let first = *log.state.unfired.keys().next().unwrap();
        log.push(
            32 * SECOND,
            ActionsFired {
                event_log_id: first,
                rule: 1,
                organization: 1,
                results: vec![],
            }
            .into(),
        );
        assert_eq!(log.state.unfired.len(), 2);
    }

    #[test]
    fn errors_and_unmatched_do_not_fire() {
        let mut log = Log::new(0, 0, true);
        let at = 5 * SECOND;
        let received = WebhookReceived {
            rule: 1,
            organization: 1,
            source_type: SourceType::WebhookGeneric,
            event_type: None,
            event_guid: None,
            source_ip: None,
            content: crate::codec::Protected::default(),
            form_encoded: false,
            replay_key: None,
        };
        let position = log.push(at, received.into());
        let pending = log.state.undecided[&position].clone();
        let evaluation = RuleEvaluation {
            conditions: vec![
                ConditionResult::True,
                ConditionResult::Error("no such key: x".into()),
            ],
            throttle_key: None,
            internal_error: None,
        };
        let decision = log.state.decide(&pending, Some(evaluation), &log.seen);
        assert_eq!(decision.outcome, Outcome::Error);
        assert!(
            decision
                .error
                .unwrap()
                .contains("conditions[1]: no such key")
        );
        assert_eq!(
            log.receive(6 * SECOND, None, false, None),
            Outcome::Unmatched
        );
        assert_eq!(log.state.fire_count, 0);
    }

    #[test]
    fn a_replayed_log_reaches_the_same_state_and_decisions_apply_once() {
        let mut log = Log::new(30, 60, true);
        log.receive(0, Some("a"), true, Some("k"));
        log.receive(SECOND, Some("b"), true, Some("k"));
        // Replay every record into a fresh state: identical outcome.
        let mut replayed = Log::new(30, 60, true);
        replayed.receive(0, Some("a"), true, Some("k"));
        replayed.receive(SECOND, Some("b"), true, Some("k"));
        assert_eq!(replayed.state.fire_count, log.state.fire_count);
        assert!(
            replayed
                .state
                .is_duplicate(Some("b"), 2 * SECOND, &replayed.seen)
        );
        assert!(replayed.state.is_throttled("k", 2 * SECOND));
        // An undecided event survives a "crash": it stays pending until decided.
        let received = WebhookReceived {
            rule: 1,
            organization: 1,
            source_type: SourceType::WebhookGeneric,
            event_type: None,
            event_guid: Some("c".into()),
            source_ip: None,
            content: crate::codec::Protected::default(),
            form_encoded: false,
            replay_key: None,
        };
        let position = log.push(3 * SECOND, received.into());
        assert!(log.state.undecided.contains_key(&position));
        let snapshot = postcard::to_stdvec(&log.state).unwrap();
        let restored: RuleState = postcard::from_bytes(&snapshot).unwrap();
        assert_eq!(restored.undecided.len(), 1);
        assert!(restored.is_duplicate(Some("a"), 4 * SECOND, &log.seen));
        let _ = encode::<RuleCreated>;
    }
}
