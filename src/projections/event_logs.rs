//! Event logs: one entry per inbound webhook (received or rejected), with what the rule made of
//! it. Payloads and headers stay in the journal; an entry knows where to find them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::StoredView;
use crate::conditions::ConditionResult;
use crate::domain::Event;
use crate::domain::retention::Expiring;
use crate::domain::webhook::{ActionResult, Outcome, WebhookMeta, WebhookReceived};
use crate::journal::{EventFilter, Position, RecordedEvent};
use crate::store::{
    IndexKey, Indexed, Key, Query, QueryPage, StoreError, Table, TimeRange, Writes,
};
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

/// What the view remembers of a rule to describe its event logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RuleInfo {
    organization: u64,
    name: String,
    conditions: Vec<String>,
}

/// The filters of an event-log list, as the API names them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventLogFilter {
    /// Only this organization's logs (the caller's scope, or a filter).
    pub organization: Option<u64>,
    /// `event_rule`.
    pub rule: Option<u64>,
    /// `status`.
    pub status: Option<Status>,
    /// `source_type`.
    pub source_type: Option<SourceType>,
    /// `event_type`.
    pub event_type: Option<String>,
    /// `event_guid`.
    pub event_guid: Option<String>,
    /// `since` / `until` on creation.
    pub range: TimeRange,
}

/// Every event log on disk, indexed for the API's filters, newest first; the rule names and
/// conditions it needs to describe them are cached.
pub struct EventLogsView {
    logs: Indexed<EventLogEntry>,
    rules: HashMap<u64, RuleInfo>,
}

/// The indexes of a log: by organization and by rule, and, once decided, by status within each.
/// `received` is a passing state (milliseconds under load): not indexing it saves moving every
/// log between status indexes; `status=received` is answered from the rule or organization index.
fn indexes(e: &EventLogEntry) -> Vec<IndexKey> {
    let mut keys = vec![
        Key::new(b'O').u64(e.organization),
        Key::new(b'R').u64(e.rule),
    ];
    if e.status != Status::Received {
        let status = e.status as u8;
        keys.push(Key::new(b'S').u64(e.organization).byte(status));
        keys.push(Key::new(b'T').u64(e.rule).byte(status));
    }
    keys
}

fn rule_key(id: u64) -> Vec<u8> {
    Key::new(b'Q').u64(id).into_bytes()
}

impl EventLogsView {
    /// The entry with `id`.
    pub fn get(&self, id: Position) -> Result<Option<EventLogEntry>, StoreError> {
        self.logs.get(id)
    }

    /// Creation times of an organization's `n` oldest logs, ascending.
    pub fn oldest(&self, organization: u64, n: usize) -> Result<Vec<i64>, StoreError> {
        self.logs.oldest_times(&Key::new(b'O').u64(organization), n)
    }

    /// Whether `organization` has event logs created within `range`.
    pub fn any_within(&self, organization: u64, range: TimeRange) -> Result<bool, StoreError> {
        Ok(self
            .logs
            .ids_rev(&Key::new(b'O').u64(organization), range)
            .next()
            .transpose()?
            .is_some())
    }

    /// How many event logs there are.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.logs.count(
            &Key::new(Indexed::<EventLogEntry>::ALL),
            TimeRange::default(),
        )
    }

    /// The page `offset..offset + limit` of the logs matching `filter`, newest first, with
    /// their count. The narrowest index the filters allow is read; filters it does not cover
    /// are checked on its rows.
    pub fn list(
        &self,
        filter: &EventLogFilter,
        offset: usize,
        limit: usize,
    ) -> Result<QueryPage<EventLogEntry>, StoreError> {
        let empty = || QueryPage {
            count: 0,
            rows: Vec::new(),
        };
        // A rule belongs to one organization: naming it makes the organization filter exact.
        let rule_org = filter
            .rule
            .map(|r| self.rules.get(&r).map(|i| i.organization));
        if let (Some(Some(rule_org)), Some(org)) = (rule_org, filter.organization)
            && rule_org != org
        {
            return Ok(empty());
        }
        let org_implied = filter.rule.is_some() && matches!(rule_org, Some(Some(_)));
        let mut covered = Covered::default();
        let decided = filter.status.filter(|s| *s != Status::Received);
        let index = if let (Some(rule), Some(status)) = (filter.rule, decided) {
            covered = Covered {
                rule: true,
                status: true,
                organization: org_implied,
                ..covered
            };
            Key::new(b'T').u64(rule).byte(status as u8)
        } else if let Some(rule) = filter.rule {
            covered = Covered {
                rule: true,
                organization: org_implied,
                ..covered
            };
            Key::new(b'R').u64(rule)
        } else if let (Some(org), Some(status)) = (filter.organization, decided) {
            covered = Covered {
                organization: true,
                status: true,
                ..covered
            };
            Key::new(b'S').u64(org).byte(status as u8)
        } else if let Some(org) = filter.organization {
            covered.organization = true;
            Key::new(b'O').u64(org)
        } else {
            Key::new(Indexed::<EventLogEntry>::ALL)
        };
        let rest = |e: &EventLogEntry| {
            (covered.organization || filter.organization.is_none_or(|o| e.organization == o))
                && (covered.rule || filter.rule.is_none_or(|r| e.rule == r))
                && (covered.status || filter.status.is_none_or(|s| e.status == s))
                && (covered.source_type || filter.source_type.is_none_or(|s| e.source_type == s))
                && (covered.event_type
                    || filter
                        .event_type
                        .as_deref()
                        .is_none_or(|t| e.event_type.as_deref() == Some(t)))
                && (covered.guid
                    || filter
                        .event_guid
                        .as_deref()
                        .is_none_or(|g| e.event_guid.as_deref() == Some(g)))
        };
        let exact = covered.all_of(filter);
        self.logs.query(&Query {
            index,
            range: filter.range,
            filter: if exact { None } else { Some(&rest) },
            offset,
            limit,
        })
    }

    fn rule_name(&self, rule: u64) -> String {
        self.rules
            .get(&rule)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    }

    fn remember_rule(
        &mut self,
        writes: &mut Writes,
        id: u64,
        organization: u64,
        config: &crate::domain::rule::RuleConfig,
    ) {
        let info = RuleInfo {
            organization,
            name: config.name.clone(),
            conditions: config
                .conditions
                .iter()
                .map(|c| c.expression.clone())
                .collect(),
        };
        writes.put(rule_key(id), &info);
        self.rules.insert(id, info);
    }
}

/// Which filters the chosen index already applies.
#[derive(Debug, Default, Clone, Copy)]
struct Covered {
    organization: bool,
    rule: bool,
    status: bool,
    source_type: bool,
    event_type: bool,
    guid: bool,
}

impl Covered {
    fn all_of(&self, f: &EventLogFilter) -> bool {
        (self.organization || f.organization.is_none())
            && (self.rule || f.rule.is_none())
            && (self.status || f.status.is_none())
            && (self.source_type || f.source_type.is_none())
            && (self.event_type || f.event_type.is_none())
            && (self.guid || f.event_guid.is_none())
    }
}

impl StoredView for EventLogsView {
    const NAME: &'static str = "event_logs";
    const SCHEMA: u32 = 1;

    fn filter() -> EventFilter {
        EventFilter::Categories(vec!["rule".into(), "retention".into()])
    }

    fn open(table: Table) -> Result<Self, StoreError> {
        let mut rules = HashMap::new();
        for item in table.scan_prefix(b"Q") {
            let (key, value) = item?;
            let info: RuleInfo = postcard::from_bytes(&value).map_err(|e| StoreError::Decode {
                tree: "event_logs".into(),
                message: e.to_string(),
            })?;
            rules.insert(crate::store::u64_at(&key, 1), info);
        }
        Ok(Self {
            logs: Indexed::new(table, indexes, |e| e.created),
            rules,
        })
    }

    fn table(&self) -> &Table {
        self.logs.table()
    }

    fn apply(&mut self, record: &RecordedEvent, writes: &mut Writes) -> Result<(), StoreError> {
        let at = record.recorded_at;
        // Received webhooks are the bulk: read their leading fields, never the payload.
        if record.event_type == <WebhookReceived as crate::codec::EventBody>::TYPE {
            if let Ok(e) = WebhookMeta::decode(record) {
                let log = EventLogEntry {
                    source_ip: e.source_ip,
                    event_type: e.event_type,
                    event_guid: e.event_guid,
                    ..EventLogEntry::new(
                        record,
                        e.rule,
                        self.rule_name(e.rule),
                        e.organization,
                        e.source_type,
                    )
                };
                self.logs.put(writes, record.position, &log)?;
            }
            return Ok(());
        }
        let Ok(Some(event)) = Event::decode(record) else {
            return Ok(());
        };
        match event {
            Event::RetentionExpired(e) if e.kind == Expiring::EventLogs => {
                self.logs
                    .remove_before(writes, &Key::new(b'O').u64(e.organization), e.before)?;
            }
            Event::RuleCreated(e) => self.remember_rule(writes, e.id, e.organization, &e.config),
            Event::RuleUpdated(e) => self.remember_rule(writes, e.id, e.organization, &e.config),
            Event::WebhookRejected(e) => {
                let log = EventLogEntry {
                    source_ip: e.source_ip,
                    status: Status::SignatureFailed,
                    error: Some(e.reason),
                    ..EventLogEntry::new(
                        record,
                        e.rule,
                        self.rule_name(e.rule),
                        e.organization,
                        e.source_type,
                    )
                };
                self.logs.put(writes, record.position, &log)?;
            }
            Event::EventEvaluated(e) => {
                let expressions = |rule: u64| {
                    self.rules
                        .get(&rule)
                        .map(|r| r.conditions.clone())
                        .unwrap_or_default()
                };
                self.logs.update(writes, e.event_log_id, |log| {
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
                    log.condition_results = expressions(log.rule)
                        .into_iter()
                        .zip(e.condition_results)
                        .collect();
                    log.throttle_key = e.throttle_key;
                    log.error = e.error;
                    log.modified = at;
                })?;
            }
            Event::WebhookParked(e) => {
                // Created here if the received record itself could not be folded.
                let log = match self.logs.get_in(writes, e.event_log_id)? {
                    Some(log) => log,
                    None => EventLogEntry {
                        id: e.event_log_id,
                        revision: u64::MAX,
                        ..EventLogEntry::new(
                            record,
                            e.rule,
                            self.rule_name(e.rule),
                            e.organization,
                            SourceType::WebhookGeneric,
                        )
                    },
                };
                let log = EventLogEntry {
                    status: Status::Parked,
                    error: Some(e.reason),
                    modified: at,
                    ..log
                };
                self.logs.put(writes, e.event_log_id, &log)?;
            }
            Event::WebhookRetryRequested(e) => self.logs.update(writes, e.event_log_id, |log| {
                if log.status == Status::Parked {
                    log.status = Status::Received;
                    log.error = None;
                    log.modified = at;
                }
            })?,
            Event::ActionsFired(e) => self.logs.update(writes, e.event_log_id, |log| {
                log.status = if e.all_fired() {
                    Status::ActionFired
                } else {
                    Status::ActionFailed
                };
                log.job_id = e.results.iter().find_map(|r| r.job_id);
                log.actions_triggered = e.results;
                log.modified = at;
            })?,
            _ => {}
        }
        Ok(())
    }
}
