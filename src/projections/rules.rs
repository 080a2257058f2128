//! Event rules: configuration, routing by webhook path, sealed keys, firing statistics.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::View;
use crate::codec::{EventBody, Sealed};
use crate::domain::Event;
use crate::domain::rule::RuleConfig;
use crate::domain::webhook::{Outcome, WebhookReceived, WebhookRejected};
use crate::journal::{EventFilter, RecordedEvent};

/// A rule as the API and the ingress see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Configuration.
    pub config: RuleConfig,
    /// The current webhook key (sealed).
    pub key: Sealed,
    /// The previous key and until when (µs) it still verifies.
    pub previous_key: Option<(Sealed, i64)>,
    /// Creation time (µs).
    pub created: i64,
    /// Last configuration change (µs).
    pub modified: i64,
    /// Firings.
    pub fire_count: u64,
    /// Last firing (µs).
    pub last_fired_at: Option<i64>,
}

/// Live rules.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RulesView {
    by_id: BTreeMap<u64, RuleRecord>,
    by_path: HashMap<String, u64>,
    names: HashSet<(u64, String)>,
    /// Highest id ever used.
    pub max_id: u64,
}

impl RulesView {
    /// The rule with `id`.
    pub fn get(&self, id: u64) -> Option<&RuleRecord> {
        self.by_id.get(&id)
    }

    /// The rule listening on `path`.
    pub fn by_path(&self, path: &str) -> Option<&RuleRecord> {
        self.by_path.get(path).and_then(|id| self.by_id.get(id))
    }

    /// Whether `organization` has a rule named `name` other than `except`.
    pub fn name_taken(&self, organization: u64, name: &str, except: Option<u64>) -> bool {
        self.names.contains(&(organization, name.to_owned()))
            && except.is_none_or(|id| self.by_id.get(&id).is_none_or(|r| r.config.name != name))
    }

    /// Whether a rule other than `except` uses `path`.
    pub fn path_taken(&self, path: &str, except: Option<u64>) -> bool {
        self.by_path.get(path).is_some_and(|id| Some(*id) != except)
    }

    /// All rules, ascending by id.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &RuleRecord> {
        self.by_id.values()
    }

    /// How many rules an organization has.
    pub fn count_in(&self, organization: u64) -> usize {
        self.by_id
            .values()
            .filter(|r| r.organization == organization)
            .count()
    }

    fn reindex(&mut self, old: Option<&RuleConfig>, id: u64, organization: u64, new: &RuleConfig) {
        if let Some(old) = old {
            self.by_path.remove(&old.webhook_path);
            self.names.remove(&(organization, old.name.clone()));
        }
        self.by_path.insert(new.webhook_path.clone(), id);
        self.names.insert((organization, new.name.clone()));
    }
}

impl View for RulesView {
    const NAME: &'static str = "rules";

    fn filter() -> EventFilter {
        EventFilter::category("rule")
    }

    fn apply(&mut self, event: &RecordedEvent) {
        // Webhook bodies are large and irrelevant here: skip them undecoded.
        if event.event_type == WebhookReceived::TYPE || event.event_type == WebhookRejected::TYPE {
            return;
        }
        let Ok(Some(decoded)) = Event::decode(event) else {
            return;
        };
        let at = event.recorded_at;
        match decoded {
            Event::RuleCreated(e) => {
                self.max_id = self.max_id.max(e.id);
                self.reindex(None, e.id, e.organization, &e.config);
                let record = RuleRecord {
                    id: e.id,
                    organization: e.organization,
                    config: e.config,
                    key: e.webhook_key,
                    previous_key: None,
                    created: at,
                    modified: at,
                    fire_count: 0,
                    last_fired_at: None,
                };
                self.by_id.insert(e.id, record);
            }
            Event::RuleUpdated(e) => {
                let Some(mut record) = self.by_id.remove(&e.id) else {
                    return;
                };
                self.reindex(Some(&record.config), e.id, record.organization, &e.config);
                record.config = e.config;
                record.modified = at;
                self.by_id.insert(e.id, record);
            }
            Event::RuleEnabledChanged(e) => {
                if let Some(record) = self.by_id.get_mut(&e.id) {
                    record.config.enabled = e.enabled;
                    record.modified = at;
                }
            }
            Event::RuleKeyRotated(e) => {
                if let Some(record) = self.by_id.get_mut(&e.id) {
                    let old = std::mem::replace(&mut record.key, e.webhook_key);
                    record.previous_key = Some((old, e.previous_valid_until));
                    record.modified = at;
                }
            }
            Event::RuleDeleted(e) => {
                if let Some(record) = self.by_id.remove(&e.id) {
                    self.by_path.remove(&record.config.webhook_path);
                    self.names
                        .remove(&(record.organization, record.config.name));
                }
            }
            Event::EventEvaluated(e) => {
                let Some(id) = crate::domain::rule::id_of_stream(&event.stream) else {
                    return;
                };
                if matches!(e.outcome, Outcome::Fire | Outcome::Matched)
                    && let Some(record) = self.by_id.get_mut(&id)
                {
                    record.fire_count += 1;
                    record.last_fired_at = Some(at);
                }
            }
            _ => {}
        }
    }
}
