//! Event logs: one entry per inbound webhook (received or rejected), with what the rule made of
//! it. Payloads and headers stay in the journal; an entry knows where to find them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::View;
use crate::conditions::ConditionResult;
use crate::domain::Event;
use crate::domain::webhook::{ActionResult, Outcome, WebhookMeta, WebhookReceived};
use crate::journal::{EventFilter, Position, RecordedEvent};
use crate::verify::SourceType;

/// Where an event log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted, not yet decided.
    Received,
    /// Conditions held; nothing to fire (or firing pending).
    Matched,
    /// A condition did not hold.
    Unmatched,
    /// Conditions held, but the rule fired too recently.
    Throttled,
    /// Its delivery id was already received.
    Duplicate,
    /// Every action fired.
    ActionFired,
    /// At least one action failed.
    ActionFailed,
    /// A condition could not be evaluated.
    Error,
    /// Verification failed.
    SignatureFailed,
    /// The rule could not process it (see `error`); an operator can retry it after an upgrade.
    Parked,
}

impl Status {
    /// Every status, as the API names them.
    pub const NAMES: &'static str = "received, matched, unmatched, throttled, duplicate, action_fired, action_failed, error, signature_failed, parked";

    /// Parses the API name.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
}

/// One event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLogEntry {
    /// Id: the journal position of the webhook.
    pub id: Position,
    /// The rule (it may since have been deleted).
    pub rule: u64,
    /// The rule's name when the webhook arrived.
    pub rule_name: String,
    /// The rule's organization.
    pub organization: u64,
    /// Source type.
    pub source_type: SourceType,
    /// Peer address.
    pub source_ip: Option<String>,
    /// Provider event type.
    pub event_type: Option<String>,
    /// Provider delivery id.
    pub event_guid: Option<String>,
    /// Status.
    pub status: Status,
    /// Whether the conditions held (`None` until decided, or when not evaluated).
    pub conditions_matched: Option<bool>,
    /// Each condition's expression and result.
    pub condition_results: Vec<(String, ConditionResult)>,
    /// Actions fired and how.
    pub actions_triggered: Vec<ActionResult>,
    /// The first job launched.
    pub job_id: Option<u64>,
    /// The throttle key the webhook fell under.
    pub throttle_key: Option<String>,
    /// Why it failed (verification or evaluation).
    pub error: Option<String>,
    /// The webhook's revision in `rule-<rule>`, where its payload and headers are.
    pub revision: u64,
    /// Creation time (µs).
    pub created: i64,
    /// Last change (µs).
    pub modified: i64,
}

impl EventLogEntry {
    /// A new entry, `received`, for the webhook (or rejection) at `record`.
    fn new(
        record: &RecordedEvent,
        rule: u64,
        rule_name: String,
        organization: u64,
        source_type: SourceType,
    ) -> Self {
        Self {
            id: record.position,
            rule,
            rule_name,
            organization,
            source_type,
            source_ip: None,
            event_type: None,
            event_guid: None,
            status: Status::Received,
            conditions_matched: None,
            condition_results: Vec::new(),
            actions_triggered: Vec::new(),
            job_id: None,
            throttle_key: None,
            error: None,
            revision: record.revision,
            created: record.recorded_at,
            modified: record.recorded_at,
        }
    }
}

/// Every event log, with the rule names and conditions needed to describe them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EventLogsView {
    entries: BTreeMap<Position, EventLogEntry>,
    rules: HashMap<u64, (String, Vec<String>)>,
}

impl EventLogsView {
    /// The entry with `id`.
    pub fn get(&self, id: Position) -> Option<&EventLogEntry> {
        self.entries.get(&id)
    }

    /// All entries, oldest first.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &EventLogEntry> {
        self.entries.values()
    }
}

impl View for EventLogsView {
    const NAME: &'static str = "event_logs";

    fn filter() -> EventFilter {
        EventFilter::category("rule")
    }

    fn apply(&mut self, record: &RecordedEvent) {
        let at = record.recorded_at;
        // Received webhooks are the bulk: read their leading fields, never the payload.
        if record.event_type == <WebhookReceived as crate::codec::EventBody>::TYPE {
            if let Ok(e) = WebhookMeta::decode(record) {
                let rule_name = self.rules.get(&e.rule).map(|r| r.0.clone()).unwrap_or_default();
                self.entries.insert(
                    record.position,
                    EventLogEntry {
                        source_ip: e.source_ip,
                        event_type: e.event_type,
                        event_guid: e.event_guid,
                        ..EventLogEntry::new(record, e.rule, rule_name, e.organization, e.source_type)
                    },
                );
            }
            return;
        }
        let Ok(Some(event)) = Event::decode(record) else {
            return;
        };
        let rules = &self.rules;
        let entry = |rule: u64, organization: u64, source_type: SourceType| {
            let name = rules.get(&rule).map(|r| r.0.clone()).unwrap_or_default();
            EventLogEntry::new(record, rule, name, organization, source_type)
        };
        match event {
            Event::RuleCreated(e) => {
                let conditions = e
                    .config
                    .conditions
                    .iter()
                    .map(|c| c.expression.clone())
                    .collect();
                self.rules.insert(e.id, (e.config.name, conditions));
            }
            Event::RuleUpdated(e) => {
                let conditions = e
                    .config
                    .conditions
                    .iter()
                    .map(|c| c.expression.clone())
                    .collect();
                self.rules.insert(e.id, (e.config.name, conditions));
            }
            Event::WebhookRejected(e) => {
                let mut log = entry(e.rule, e.organization, e.source_type);
                log.source_ip = e.source_ip;
                log.status = Status::SignatureFailed;
                log.error = Some(e.reason);
                self.entries.insert(record.position, log);
            }
            Event::EventEvaluated(e) => {
                let Some(log) = self.entries.get_mut(&e.event_log_id) else {
                    return;
                };
                let expressions = self
                    .rules
                    .get(&log.rule)
                    .map(|r| r.1.clone())
                    .unwrap_or_default();
                log.status = match e.outcome {
                    Outcome::Duplicate => Status::Duplicate,
                    Outcome::Unmatched => Status::Unmatched,
                    Outcome::Matched | Outcome::Fire => Status::Matched,
                    Outcome::Throttled => Status::Throttled,
                    Outcome::Error => Status::Error,
                };
                if e.outcome != Outcome::Duplicate {
                    log.conditions_matched = Some(
                        e.condition_results
                            .iter()
                            .all(|c| *c == ConditionResult::True),
                    );
                }
                log.condition_results = expressions.into_iter().zip(e.condition_results).collect();
                log.throttle_key = e.throttle_key;
                log.error = e.error;
                log.modified = at;
            }
            Event::WebhookParked(e) => {
                // Created here if the received record itself could not be folded.
                let fresh = EventLogEntry {
                    id: e.event_log_id,
                    revision: u64::MAX,
                    ..entry(e.rule, e.organization, SourceType::WebhookGeneric)
                };
                let log = self.entries.entry(e.event_log_id).or_insert(fresh);
                log.status = Status::Parked;
                log.error = Some(e.reason);
                log.modified = at;
            }
            Event::WebhookRetryRequested(e) => {
                if let Some(log) = self.entries.get_mut(&e.event_log_id)
                    && log.status == Status::Parked
                {
                    log.status = Status::Received;
                    log.error = None;
                    log.modified = at;
                }
            }
            Event::ActionsFired(e) => {
                let Some(log) = self.entries.get_mut(&e.event_log_id) else {
                    return;
                };
                log.status = if e.all_fired() {
                    Status::ActionFired
                } else {
                    Status::ActionFailed
                };
                log.job_id = e.results.iter().find_map(|r| r.job_id);
                log.actions_triggered = e.results;
                log.modified = at;
            }
            _ => {}
        }
    }
}
