//! The audit trail: every audited state change, with who, when and under which request, on
//! disk (it grows with every configuration change), indexed by organization, newest first.

use serde::{Deserialize, Serialize};

use super::StoredView;
use crate::domain::Event;
use crate::domain::retention::Expiring;
use crate::journal::{EventFilter, Position, RecordedEvent};
use crate::store::{
    IndexKey, Indexed, Key, Query, QueryPage, StoreError, Table, TimeRange, Writes,
};

/// One audited change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The event's journal position (also the entry's id).
    pub id: Position,
    /// When it was recorded (µs since the epoch).
    pub timestamp: i64,
    /// `token:<id>`, `admin` or `system`.
    pub actor: String,
    /// The event type, e.g. `organization.created`.
    pub action: String,
    /// The organization concerned.
    pub organization: Option<u64>,
    /// The kind of resource.
    pub resource_type: String,
    /// Its id.
    pub resource_id: String,
    /// Groups the entries of one request.
    pub correlation_id: String,
    /// What changed (secrets masked), as JSON text.
    pub details: String,
}

/// Frequent event types that are data, not state changes by a principal.
const NEVER_AUDITED: &[&str] = &[
    "webhook.received",
    "webhook.rejected",
    "webhook.evaluated",
    "event.published",
    "delivery.scheduled",
    "delivery.attempt_succeeded",
    "delivery.attempt_failed",
    "notification.requested",
    "notification.sent",
    "job.started",
    "job.finished",
];

/// The filters of the audit list, as the API names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this organization's entries (the caller's scope, or `organization`).
    pub organization: Option<u64>,
    /// `actor`.
    pub actor: Option<String>,
    /// `resource_type`.
    pub resource_type: Option<String>,
    /// `resource_id`.
    pub resource_id: Option<String>,
    /// `action`.
    pub action: Option<String>,
    /// `since` / `until`, both inclusive.
    pub range: TimeRange,
}

impl AuditFilter {
    fn matches(&self, e: &AuditEntry) -> bool {
        let same =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        same(&self.actor, &e.actor)
            && same(&self.resource_type, &e.resource_type)
            && same(&self.resource_id, &e.resource_id)
            && same(&self.action, &e.action)
    }

    fn is_index_only(&self) -> bool {
        self.actor.is_none()
            && self.resource_type.is_none()
            && self.resource_id.is_none()
            && self.action.is_none()
    }
}

fn organization_index(organization: u64) -> IndexKey {
    Key::new(b'O').u64(organization)
}

/// Every audited change on disk.
pub struct AuditView {
    rows: Indexed<AuditEntry>,
}

impl AuditView {
    /// How many of an organization's entries were recorded before `before`.
    pub fn expirable(&self, organization: u64, before: i64) -> Result<u64, StoreError> {
        let range = TimeRange {
            since: None,
            until: Some(before - 1),
        };
        self.rows.count(&organization_index(organization), range)
    }

    /// The page `offset..offset + limit` of the entries matching `filter`, newest first, with
    /// their exact count.
    pub fn list(
        &self,
        filter: &AuditFilter,
        offset: usize,
        limit: usize,
    ) -> Result<QueryPage<AuditEntry>, StoreError> {
        let index = filter
            .organization
            .map_or(Key::new(Indexed::<AuditEntry>::ALL), organization_index);
        let rest = |e: &AuditEntry| filter.matches(e);
        self.rows.query(&Query {
            index,
            range: filter.range,
            filter: if filter.is_index_only() {
                None
            } else {
                Some(&rest)
            },
            offset,
            limit,
        })
    }
}

impl StoredView for AuditView {
    const NAME: &'static str = "audit";
    const SCHEMA: u32 = 1;

    fn filter() -> EventFilter {
        EventFilter::All
    }

    fn open(table: Table) -> Result<Self, StoreError> {
        Ok(Self {
            rows: Indexed::new(
                table,
                |e: &AuditEntry| e.organization.map(organization_index).into_iter().collect(),
                |e: &AuditEntry| e.timestamp,
            ),
        })
    }

    fn table(&self) -> &Table {
        self.rows.table()
    }

    fn apply(&mut self, event: &RecordedEvent, writes: &mut Writes) -> Result<(), StoreError> {
        // The high-volume event types are never audited: skip them without decoding.
        if NEVER_AUDITED.contains(&event.event_type.as_str()) {
            return Ok(());
        }
        let Ok(Some(decoded)) = Event::decode(event) else {
            return Ok(());
        };
        if let Event::RetentionExpired(e) = &decoded {
            if e.kind == Expiring::Audit {
                self.rows
                    .remove_before(writes, &organization_index(e.organization), e.before)?;
            }
            return Ok(());
        }
        let Some(info) = decoded.audit() else {
            return Ok(());
        };
        let entry = AuditEntry {
            id: event.position,
            timestamp: event.recorded_at,
            actor: event.metadata.actor.clone(),
            action: event.event_type.clone(),
            organization: info.organization,
            resource_type: info.resource_type.to_owned(),
            resource_id: info.resource_id,
            correlation_id: event.metadata.correlation_id.clone(),
            details: info.details.to_string(),
        };
        self.rows.put(writes, event.position, &entry)
    }
}
