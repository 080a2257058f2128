//! Notification templates and their recent sends.

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::View;
use crate::domain::Event;
use crate::domain::notification::{NotificationConfig, NotificationSent};
use crate::journal::{EventFilter, RecordedEvent};

/// Sends remembered per template.
const RECENT: usize = 20;

/// A notification template as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Settings.
    pub config: NotificationConfig,
    /// The latest sends, newest last, with their times (µs).
    pub recent: VecDeque<(i64, NotificationSent)>,
    /// Creation (µs).
    pub created: i64,
    /// Last change (µs).
    pub modified: i64,
}

/// Notification templates.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NotificationsView {
    templates: BTreeMap<u64, NotificationRecord>,
    names: HashSet<(u64, String)>,
    /// Highest id ever used.
    pub max_id: u64,
}

impl NotificationsView {
    /// A template.
    pub fn get(&self, id: u64) -> Option<&NotificationRecord> {
        self.templates.get(&id)
    }

    /// All templates.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &NotificationRecord> {
        self.templates.values()
    }

    /// Whether `organization` has a template named `name`.
    pub fn name_taken(&self, organization: u64, name: &str) -> bool {
        self.names.contains(&(organization, name.to_owned()))
    }
}

impl View for NotificationsView {
    const NAME: &'static str = "notifications";

    fn filter() -> EventFilter {
        EventFilter::category("notification")
    }

    fn apply(&mut self, record: &RecordedEvent) {
        let Ok(Some(event)) = Event::decode(record) else {
            return;
        };
        let at = record.recorded_at;
        match event {
            Event::NotificationTemplateCreated(e) => {
                self.max_id = self.max_id.max(e.id);
                self.names.insert((e.organization, e.config.name.clone()));
                let record = NotificationRecord {
                    id: e.id,
                    organization: e.organization,
                    config: e.config,
                    recent: VecDeque::new(),
                    created: at,
                    modified: at,
                };
                self.templates.insert(e.id, record);
            }
            Event::NotificationTemplateUpdated(e) => {
                if let Some(t) = self.templates.get_mut(&e.id) {
                    self.names.remove(&(t.organization, t.config.name.clone()));
                    self.names.insert((t.organization, e.config.name.clone()));
                    t.config = e.config;
                    t.modified = at;
                }
            }
            Event::NotificationTemplateDeleted(e) => {
                if let Some(t) = self.templates.remove(&e.id) {
                    self.names.remove(&(t.organization, t.config.name));
                }
            }
            Event::NotificationSent(e) => {
                if let Some(t) = self.templates.get_mut(&e.template) {
                    t.recent.push_back((at, e));
                    while t.recent.len() > RECENT {
                        t.recent.pop_front();
                    }
                }
            }
            _ => {}
        }
    }
}
