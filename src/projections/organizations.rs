//! Organizations by id and by name.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::View;
use crate::domain::Event;
use crate::domain::payloads::PayloadExpiry;
use crate::domain::retention::Retention;
use crate::journal::{EventFilter, RecordedEvent};

/// An organization as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Id.
    pub id: u64,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Creation time (µs since the epoch).
    pub created: i64,
    /// Last change (µs since the epoch).
    pub modified: i64,
    /// Its own retention settings (unset ones follow the system defaults).
    #[serde(default)]
    pub retention: Retention,
    /// Its last erasure, if it was ever erased.
    #[serde(default)]
    pub erased: Option<Erasure>,
}

/// When an organization's payloads were last erased, and which data keys went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// When (µs since the epoch).
    pub at: i64,
    /// The newest key generation destroyed.
    pub through_generation: u32,
}

/// Live organizations.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OrganizationsView {
    by_id: BTreeMap<u64, Organization>,
    by_name: HashMap<String, u64>,
    /// Highest id ever used, deleted ones included (ids are never reused).
    pub max_id: u64,
    /// Deleted organizations' retention: their history (event logs of rules deleted before
    /// them, deliveries, audit) still expires, under the settings they had.
    #[serde(default)]
    retired: BTreeMap<u64, Retention>,
    /// Where each organization's payloads were last cut.
    #[serde(default)]
    payloads: PayloadExpiry,
}

impl OrganizationsView {
    /// The organization with `id`, if it exists.
    pub fn get(&self, id: u64) -> Option<&Organization> {
        self.by_id.get(&id)
    }

    /// Whether an organization with this name exists.
    pub fn name_taken(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// All organizations, ascending by id.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &Organization> {
        self.by_id.values()
    }

    /// The retention of every organization that may still hold history, deleted ones included.
    pub fn retention(&self) -> impl Iterator<Item = (u64, &Retention)> {
        let live = self.by_id.values().map(|o| (o.id, &o.retention));
        live.chain(self.retired.iter().map(|(id, r)| (*id, r)))
    }

    /// When each organization's payloads expired: what the API hides and compaction cuts.
    pub fn payloads(&self) -> &PayloadExpiry {
        &self.payloads
    }
}

impl View for OrganizationsView {
    const NAME: &'static str = "organizations";

    fn filter() -> EventFilter {
        EventFilter::Categories(vec!["organization".into(), "retention".into()])
    }

    fn apply(&mut self, event: &RecordedEvent) {
        self.payloads.apply(event);
        let Ok(Some(decoded)) = Event::decode(event) else {
            return;
        };
        let at = event.recorded_at;
        match decoded {
            Event::OrganizationCreated(e) => {
                self.max_id = self.max_id.max(e.id);
                self.by_name.insert(e.name.clone(), e.id);
                let org = Organization {
                    id: e.id,
                    name: e.name,
                    description: e.description,
                    created: at,
                    modified: at,
                    retention: Retention::default(),
                    erased: None,
                };
                self.by_id.insert(e.id, org);
            }
            Event::OrganizationUpdated(e) => {
                if let Some(org) = self.by_id.get_mut(&e.id) {
                    self.by_name.remove(&org.name);
                    self.by_name.insert(e.name.clone(), e.id);
                    org.name = e.name;
                    org.description = e.description;
                    org.modified = at;
                }
            }
            Event::OrganizationRetentionSet(e) => {
                if let Some(org) = self.by_id.get_mut(&e.id) {
                    org.retention = e.retention;
                    org.modified = at;
                }
            }
            Event::OrganizationErased(e) => {
                if let Some(org) = self.by_id.get_mut(&e.id) {
                    org.erased = Some(Erasure {
                        at,
                        through_generation: e.through_generation,
                    });
                    org.modified = at;
                }
            }
            Event::OrganizationDeleted(e) => {
                if let Some(org) = self.by_id.remove(&e.id) {
                    self.by_name.remove(&org.name);
                    self.retired.insert(org.id, org.retention);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::organization::{OrganizationCreated, OrganizationDeleted};
    use crate::domain::retention::OrganizationRetentionSet;
    use crate::journal::Metadata;

    fn fold(view: &mut OrganizationsView, position: u64, event: Event) {
        let new = event.encode(Metadata::default());
        view.apply(&RecordedEvent {
            position,
            stream: "organization-1".into(),
            revision: 0,
            event_type: new.event_type,
            schema_version: new.schema_version,
            recorded_at: 1,
            metadata: new.metadata,
            data: new.data.into(),
            compacted: false,
        });
    }

    #[test]
    fn deleted_organizations_keep_expiring_under_their_own_retention() {
        let mut view = OrganizationsView::default();
        for id in [1, 2] {
            let created = OrganizationCreated {
                id,
                name: format!("org-{id}"),
                description: String::new(),
            };
            fold(&mut view, id, created.into());
        }
        let short = Retention {
            event_logs_days: Some(3),
            ..Retention::default()
        };
        fold(
            &mut view,
            3,
            OrganizationRetentionSet {
                id: 2,
                retention: short,
            }
            .into(),
        );
        fold(&mut view, 4, OrganizationDeleted { id: 2 }.into());
        assert!(view.get(2).is_none() && !view.name_taken("org-2"));
        let policies: Vec<(u64, Retention)> = view.retention().map(|(id, r)| (id, *r)).collect();
        assert_eq!(policies, vec![(1, Retention::default()), (2, short)]);
    }
}
