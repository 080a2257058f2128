//! The dispatcher's index: which enabled endpoints subscribe to which event types, per
//! organization. A pure fold of endpoint lifecycle events.
//!
//! Matching an event costs a fixed number of hash lookups (its exact type, one per dot-prefix
//! for `prefix.*` subscriptions, and `*`), whatever the number of endpoints: endpoints
//! subscribed to other types, or belonging to other organizations, are never looked at.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::Event;
use crate::journal::RecordedEvent;

/// What the index remembers about one endpoint (also its snapshot form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedEndpoint {
    /// Endpoint id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// Subscribed patterns.
    pub events: Vec<String>,
    /// CEL filter source.
    pub filter: Option<String>,
    /// Only enabled endpoints are matched.
    pub enabled: bool,
}

#[derive(Debug, Default)]
struct OrgIndex {
    exact: HashMap<String, BTreeSet<u64>>,
    prefix: HashMap<String, BTreeSet<u64>>,
    any: BTreeSet<u64>,
}

impl OrgIndex {
    fn slot(&mut self, pattern: &str) -> &mut BTreeSet<u64> {
        if pattern == "*" {
            return &mut self.any;
        }
        match pattern.strip_suffix(".*") {
            Some(prefix) => self.prefix.entry(prefix.to_owned()).or_default(),
            None => self.exact.entry(pattern.to_owned()).or_default(),
        }
    }

    fn remove(&mut self, pattern: &str, id: u64) {
        if pattern == "*" {
            self.any.remove(&id);
            return;
        }
        let (map, key) = match pattern.strip_suffix(".*") {
            Some(prefix) => (&mut self.prefix, prefix),
            None => (&mut self.exact, pattern),
        };
        if let Some(set) = map.get_mut(key) {
            set.remove(&id);
            if set.is_empty() {
                map.remove(key);
            }
        }
    }
}

/// Work done to match events, for the "cost per event" metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchStats {
    /// Hash lookups made.
    pub lookups: u64,
    /// Endpoint ids found by those lookups (before de-duplication and filters).
    pub candidates: u64,
}

/// Enabled endpoints by organization and subscribed pattern.
#[derive(Debug, Default)]
pub struct DispatchIndex {
    endpoints: HashMap<u64, IndexedEndpoint>,
    orgs: HashMap<u64, OrgIndex>,
}

impl DispatchIndex {
    /// Rebuilds an index from its snapshot form.
    pub fn from_snapshot(endpoints: Vec<IndexedEndpoint>) -> Self {
        let mut index = Self::default();
        for endpoint in endpoints {
            index.upsert(endpoint);
        }
        index
    }

    /// The snapshot form: every known endpoint, ascending by id.
    pub fn snapshot(&self) -> Vec<IndexedEndpoint> {
        let mut all: Vec<IndexedEndpoint> = self.endpoints.values().cloned().collect();
        all.sort_by_key(|e| e.id);
        all
    }

    /// Number of known endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    fn unlink(&mut self, id: u64) -> Option<IndexedEndpoint> {
        let old = self.endpoints.remove(&id)?;
        if old.enabled
            && let Some(org) = self.orgs.get_mut(&old.organization)
        {
            for pattern in &old.events {
                org.remove(pattern, id);
            }
        }
        Some(old)
    }

    fn upsert(&mut self, endpoint: IndexedEndpoint) {
        self.unlink(endpoint.id);
        if endpoint.enabled {
            let org = self.orgs.entry(endpoint.organization).or_default();
            for pattern in &endpoint.events {
                org.slot(pattern).insert(endpoint.id);
            }
        }
        self.endpoints.insert(endpoint.id, endpoint);
    }

    /// Folds an endpoint lifecycle event; returns whether the index changed.
    pub fn apply(&mut self, record: &RecordedEvent) -> bool {
        if !record.event_type.starts_with("endpoint.") {
            return false;
        }
        let Ok(Some(event)) = Event::decode(record) else {
            return false;
        };
        let set_enabled = |index: &mut Self, id: u64, enabled: bool| {
            if let Some(current) = index.endpoints.get(&id) {
                let mut updated = current.clone();
                updated.enabled = enabled;
                index.upsert(updated);
            }
        };
        match event {
            Event::EndpointCreated(e) => self.upsert(IndexedEndpoint {
                id: e.id,
                organization: e.organization,
                events: e.settings.events,
                filter: e.settings.filter,
                enabled: e.enabled,
            }),
            Event::EndpointUpdated(e) => {
                let enabled = self.endpoints.get(&e.id).is_some_and(|c| c.enabled);
                self.upsert(IndexedEndpoint {
                    id: e.id,
                    organization: e.organization,
                    events: e.settings.events,
                    filter: e.settings.filter,
                    enabled,
                });
            }
            Event::EndpointEnabled(e) => set_enabled(self, e.id, true),
            Event::EndpointDisabled(e) => set_enabled(self, e.id, false),
            Event::EndpointDeleted(e) => {
                self.unlink(e.id);
            }
            _ => return false,
        }
        true
    }

    /// Enabled endpoints of `organization` subscribed to `event_type`, ascending and unique.
    pub fn candidates(
        &self,
        organization: u64,
        event_type: &str,
        stats: &mut MatchStats,
    ) -> Vec<u64> {
        stats.lookups += 1;
        let Some(org) = self.orgs.get(&organization) else {
            return Vec::new();
        };
        let mut found: Vec<u64> = Vec::new();
        let mut take = |set: Option<&BTreeSet<u64>>, stats: &mut MatchStats| {
            stats.lookups += 1;
            if let Some(set) = set {
                stats.candidates += set.len() as u64;
                found.extend(set);
            }
        };
        take(org.exact.get(event_type), stats);
        for (i, _) in event_type.match_indices('.') {
            take(org.prefix.get(&event_type[..i]), stats);
        }
        take(Some(&org.any).filter(|s| !s.is_empty()), stats);
        found.sort_unstable();
        found.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Sealed;
    use crate::domain::endpoint::{
        EndpointCreated, EndpointDeleted, EndpointDisabled, EndpointEnabled, EndpointSettings,
        EndpointUpdated,
    };
    use crate::journal::Metadata;

    fn record(event: Event) -> RecordedEvent {
        let new = event.encode(Metadata::default());
        RecordedEvent {
            position: 0,
            stream: "endpoint-1".into(),
            revision: 0,
            event_type: new.event_type,
            schema_version: new.schema_version,
            recorded_at: 0,
            metadata: new.metadata,
            data: new.data.into(),
            compacted: false,
        }
    }

    fn settings(events: &[&str], filter: Option<&str>) -> EndpointSettings {
        EndpointSettings {
            name: "e".into(),
            url: "https://example.com".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            filter: filter.map(str::to_owned),
            ..EndpointSettings::default()
        }
    }

    fn create(index: &mut DispatchIndex, id: u64, org: u64, events: &[&str]) {
        let e = EndpointCreated {
            id,
            organization: org,
            settings: settings(events, None),
            enabled: true,
            secret: Sealed::default(),
        };
        assert!(index.apply(&record(e.into())));
    }

    fn matches(index: &DispatchIndex, org: u64, event_type: &str) -> Vec<u64> {
        index.candidates(org, event_type, &mut MatchStats::default())
    }

    #[test]
    fn exact_prefix_and_star_subscriptions_match_once_each() {
        let mut index = DispatchIndex::default();
        create(&mut index, 1, 1, &["job.failed"]);
        create(&mut index, 2, 1, &["job.*", "job.failed"]);
        create(&mut index, 3, 1, &["*"]);
        create(&mut index, 4, 1, &["workflow.*"]);
        create(&mut index, 5, 2, &["*"]);
        assert_eq!(matches(&index, 1, "job.failed"), [1, 2, 3]);
        assert_eq!(matches(&index, 1, "job.started"), [2, 3]);
        assert_eq!(matches(&index, 1, "job"), [3]);
        assert_eq!(matches(&index, 1, "workflow.node.completed"), [3, 4]);
        assert_eq!(
            matches(&index, 2, "job.failed"),
            [5],
            "organizations are isolated"
        );
        assert_eq!(matches(&index, 3, "job.failed"), Vec::<u64>::new());
    }

    #[test]
    fn the_work_per_event_does_not_grow_with_unrelated_endpoints() {
        let mut index = DispatchIndex::default();
        create(&mut index, 1, 1, &["build.done"]);
        let mut before = MatchStats::default();
        index.candidates(1, "build.done", &mut before);
        for id in 2..10_002 {
            create(&mut index, id, 1, &[&format!("other.type{id}")]);
        }
        for id in 10_002..10_100 {
            create(&mut index, id, 2, &["*"]);
        }
        let mut after = MatchStats::default();
        assert_eq!(index.candidates(1, "build.done", &mut after), [1]);
        assert_eq!(after, before);
        assert_eq!(
            after,
            MatchStats {
                lookups: 4,
                candidates: 1
            }
        );
    }

    #[test]
    fn updates_disables_and_deletes_move_endpoints_in_and_out() {
        let mut index = DispatchIndex::default();
        create(&mut index, 1, 1, &["a.b"]);
        index.apply(&record(
            EndpointUpdated {
                id: 1,
                organization: 1,
                settings: settings(&["c.*"], Some("event.x == 1")),
            }
            .into(),
        ));
        assert_eq!(matches(&index, 1, "a.b"), Vec::<u64>::new());
        assert_eq!(matches(&index, 1, "c.d"), [1]);
        assert_eq!(
            index.snapshot()[0].filter.as_deref(),
            Some("event.x == 1"),
            "the index keeps the filter source for its snapshot; endpoints evaluate it"
        );
        index.apply(&record(
            EndpointDisabled {
                id: 1,
                organization: 1,
                name: "e".into(),
                reason: "r".into(),
                failing_since: None,
            }
            .into(),
        ));
        assert_eq!(matches(&index, 1, "c.d"), Vec::<u64>::new());
        index.apply(&record(
            EndpointEnabled {
                id: 1,
                organization: 1,
            }
            .into(),
        ));
        assert_eq!(matches(&index, 1, "c.d"), [1]);
        let restored = DispatchIndex::from_snapshot(index.snapshot());
        assert_eq!(matches(&restored, 1, "c.d"), [1]);
        assert_eq!(restored.snapshot(), index.snapshot());
        index.apply(&record(
            EndpointDeleted {
                id: 1,
                organization: 1,
            }
            .into(),
        ));
        assert_eq!(matches(&index, 1, "c.d"), Vec::<u64>::new());
        assert!(index.is_empty());
    }
}
