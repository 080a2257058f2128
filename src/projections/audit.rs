//! The audit trail: every audited state change, with who, when and under which request.

use serde::{Deserialize, Serialize};

use super::View;
use crate::domain::Event;
use crate::domain::retention::Expiring;
use crate::journal::{Position, RecordedEvent};

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

/// Audited changes in journal order.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuditView {
    entries: Vec<AuditEntry>,
}

impl AuditView {
    /// How many of an organization's entries were recorded before `before`.
    pub fn expirable(&self, organization: u64, before: i64) -> usize {
        self.entries
            .iter()
            .take_while(|e| e.timestamp < before)
            .filter(|e| e.organization == Some(organization))
            .count()
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> &[AuditEntry] {
        &self.entries
    }
}

impl View for AuditView {
    const NAME: &'static str = "audit";

    fn apply(&mut self, event: &RecordedEvent) {
        // The high-volume event types are never audited: skip them without decoding.
        if NEVER_AUDITED.contains(&event.event_type.as_str()) {
            return;
        }
        let Ok(Some(decoded)) = Event::decode(event) else {
            return;
        };
        if let Event::RetentionExpired(e) = &decoded {
            if e.kind == Expiring::Audit {
                self.entries
                    .retain(|a| a.organization != Some(e.organization) || a.timestamp >= e.before);
            }
            return;
        }
        let Some(info) = decoded.audit() else { return };
        self.entries.push(AuditEntry {
            id: event.position,
            timestamp: event.recorded_at,
            actor: event.metadata.actor.clone(),
            action: event.event_type.clone(),
            organization: info.organization,
            resource_type: info.resource_type.to_owned(),
            resource_id: info.resource_id,
            correlation_id: event.metadata.correlation_id.clone(),
            details: info.details.to_string(),
        });
    }
}
