//! Notification templates and their recent sends.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::View;
use super::catalog::{Catalog, Catalogued};
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

impl Catalogued for NotificationRecord {
    fn id(&self) -> u64 {
        self.id
    }
    fn organization(&self) -> u64 {
        self.organization
    }
    fn name(&self) -> &str {
        &self.config.name
    }
}

impl NotificationsView {
    /// The id the next template gets.
    pub fn next_id(&self) -> u64 {
        self.templates.next_id()
    }
}

/// Notification templates.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NotificationsView {
    templates: Catalog<NotificationRecord>,
}

impl NotificationsView {
    /// A template.
    pub fn get(&self, id: u64) -> Option<&NotificationRecord> {
        self.templates.get(id)
    }

    /// All templates.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &NotificationRecord> {
        self.templates.all()
    }

    /// Whether `organization` has a template named `name`.
    pub fn name_taken(&self, organization: u64, name: &str) -> bool {
        self.templates.name_taken(organization, name)
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
            Event::NotificationTemplateCreated(e) => self.templates.insert(NotificationRecord {
                id: e.id,
                organization: e.organization,
                config: e.config,
                recent: VecDeque::new(),
                created: at,
                modified: at,
            }),
            Event::NotificationTemplateUpdated(e) => self.templates.update(e.id, |t| {
                t.config = e.config;
                t.modified = at;
            }),
            Event::NotificationTemplateDeleted(e) => {
                self.templates.remove(e.id);
            }
            Event::NotificationSent(e) => {
                self.templates.update(e.template, |t| {
                    t.recent.push_back((at, e));
                    while t.recent.len() > RECENT {
                        t.recent.pop_front();
                    }
                });
            }
            _ => {}
        }
    }
}
