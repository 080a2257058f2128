//! Retention: how long an organization's history is kept, and the facts that expire it.
//!
//! Expiry is itself an event (`retention.expired`): the sweeper decides a cut-off and records it,
//! and every read model folds it by dropping that organization's rows created before it. A
//! rebuild from the journal therefore lands exactly where the live views are.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{AuditInfo, Audited};
use super::{DomainError, FieldErrors};
use crate::codec::EventBody;

/// Longest retention, in days (ten years).
pub const MAX_DAYS: u32 = 3650;

const DAY_MICROS: i64 = 86_400_000_000;

/// An organization's own retention settings; `None` falls back to the system default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Days event logs are kept.
    pub event_logs_days: Option<u32>,
    /// Days outbound deliveries (with their attempts) are kept.
    pub deliveries_days: Option<u32>,
    /// Days webhook payloads are kept (at most as long as their event logs).
    pub payload_days: Option<u32>,
    /// Days audit entries are kept.
    pub audit_days: Option<u32>,
}

/// The settings in force: an organization's own, else the system defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Effective {
    /// Days event logs are kept.
    pub event_logs_days: u32,
    /// Days deliveries are kept.
    pub deliveries_days: u32,
    /// Days payloads are kept.
    pub payload_days: u32,
    /// Days audit entries are kept.
    pub audit_days: u32,
}

impl Retention {
    /// The settings in force under `defaults` (whose `payload_days`, if unset, follows the
    /// event logs). A payload never outlives its event log.
    pub fn effective(&self, defaults: &Retention) -> Effective {
        let pick = |own: Option<u32>, default: Option<u32>, fallback: u32| {
            own.or(default).unwrap_or(fallback)
        };
        let event_logs_days = pick(self.event_logs_days, defaults.event_logs_days, 30);
        Effective {
            event_logs_days,
            deliveries_days: pick(self.deliveries_days, defaults.deliveries_days, 30),
            payload_days: pick(self.payload_days, defaults.payload_days, event_logs_days)
                .min(event_logs_days),
            audit_days: pick(self.audit_days, defaults.audit_days, 365),
        }
    }

    /// Applies a client's `retention` object to these settings: each named field is set to its
    /// integer number of days, or back to the default with `null`; others are left alone.
    pub fn patched(&self, input: &Value) -> Result<Self, DomainError> {
        let Value::Object(fields) = input else {
            return Err(FieldErrors::one(
                "retention",
                "Expected an object such as {\"event_logs_days\": 30}.",
            ));
        };
        let mut errors = FieldErrors::default();
        let mut next = *self;
        for (name, value) in fields {
            let slot = match name.as_str() {
                "event_logs_days" => &mut next.event_logs_days,
                "deliveries_days" => &mut next.deliveries_days,
                "payload_days" => &mut next.payload_days,
                "audit_days" => &mut next.audit_days,
                _ => {
                    errors.add(
                        format!("retention.{name}"),
                        "Unknown setting; expected event_logs_days, deliveries_days, payload_days or audit_days.",
                    );
                    continue;
                }
            };
            match value {
                Value::Null => *slot = None,
                Value::Number(n) => match n.as_u64() {
                    Some(days @ 1..) if days <= u64::from(MAX_DAYS) => *slot = Some(days as u32),
                    _ => errors.add(
                        format!("retention.{name}"),
                        format!("Must be a whole number of days from 1 to {MAX_DAYS}, or null for the system default."),
                    ),
                },
                _ => errors.add(
                    format!("retention.{name}"),
                    format!("Must be a whole number of days from 1 to {MAX_DAYS}, or null for the system default."),
                ),
            }
        }
        errors.into_result()?;
        Ok(next)
    }
}

/// An organization's retention settings changed (the full new settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationRetentionSet {
    /// The organization.
    pub id: u64,
    /// Its settings.
    pub retention: Retention,
}

impl EventBody for OrganizationRetentionSet {
    const TYPE: &'static str = "organization.retention_set";
}

impl Audited for OrganizationRetentionSet {
    fn audit(&self) -> Option<AuditInfo> {
        Some(AuditInfo {
            organization: Some(self.id),
            resource_type: "organization",
            resource_id: self.id.to_string(),
            details: serde_json::json!({ "retention": self.retention }),
        })
    }
}

/// The kinds of history retention expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expiring {
    /// Inbound event logs.
    EventLogs,
    /// Outbound deliveries and their attempts.
    Deliveries,
    /// Audit entries.
    Audit,
    /// Webhook payloads (body and headers): the API shows them as expired, and compaction
    /// cuts them out of the journal's closed segments.
    Payloads,
}

impl Expiring {
    /// Every kind, in sweep order.
    pub const ALL: [Expiring; 4] = [
        Self::Payloads,
        Self::EventLogs,
        Self::Deliveries,
        Self::Audit,
    ];

    /// The name metrics and docs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::EventLogs => "event_logs",
            Self::Deliveries => "deliveries",
            Self::Audit => "audit",
            Self::Payloads => "payloads",
        }
    }

    /// How many days this kind is kept under `policy`.
    pub fn days(self, policy: &Effective) -> u32 {
        match self {
            Self::EventLogs => policy.event_logs_days,
            Self::Deliveries => policy.deliveries_days,
            Self::Audit => policy.audit_days,
            Self::Payloads => policy.payload_days,
        }
    }
}

/// Stream of one organization's expiries.
pub fn stream(organization: u64) -> String {
    format!("retention-{organization}")
}

/// An organization's rows of one kind created before `before` (µs) are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionExpired {
    /// The organization.
    pub organization: u64,
    /// What expired.
    pub kind: Expiring,
    /// Rows created strictly before this time are dropped.
    pub before: i64,
}

impl EventBody for RetentionExpired {
    const TYPE: &'static str = "retention.expired";
}

impl Audited for RetentionExpired {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

/// The creation time before which rows kept `days` days have expired at `now` (µs).
pub fn cutoff(now: i64, days: u32) -> i64 {
    now.saturating_sub(i64::from(days) * DAY_MICROS)
}

/// Where the next expiry cuts, given the creation times of the oldest rows (ascending, at least
/// `max + 1` of them when there are that many): at `cutoff` if at most `max` rows are older, else
/// early enough that one expiry drops at most `max` rows, so that a sweep proceeds in bounded
/// batches. Rows created at the very same microsecond are never split, so a batch may exceed
/// `max` only by such ties. `None` when nothing has expired.
pub fn next_cut(oldest: &[i64], cutoff: i64, max: usize) -> Option<i64> {
    let expired = oldest.iter().take_while(|t| **t < cutoff).count();
    if expired == 0 {
        return None;
    }
    if expired <= max {
        return Some(cutoff);
    }
    let boundary = oldest[max.max(1)];
    if boundary > oldest[0] {
        Some(boundary)
    } else {
        Some(oldest[0] + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invalid_fields(result: Result<Retention, DomainError>) -> Vec<String> {
        match result {
            Err(DomainError::Invalid(f)) => f.0.keys().cloned().collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn patches_set_reset_and_validate_each_field() {
        let set = Retention::default()
            .patched(&json!({"event_logs_days": 7, "audit_days": 3650}))
            .unwrap();
        assert_eq!(set.event_logs_days, Some(7));
        assert_eq!(set.audit_days, Some(3650));
        let reset = set.patched(&json!({"event_logs_days": null})).unwrap();
        assert_eq!(reset.event_logs_days, None);
        assert_eq!(reset.audit_days, Some(3650));

        for bad in [
            json!(-1),
            json!(0),
            json!(3651),
            json!(1.5),
            json!("30"),
            json!([]),
        ] {
            assert_eq!(
                invalid_fields(Retention::default().patched(&json!({"deliveries_days": bad}))),
                ["retention.deliveries_days"]
            );
        }
        assert_eq!(
            invalid_fields(Retention::default().patched(&json!({"forever": 1}))),
            ["retention.forever"]
        );
        assert_eq!(
            invalid_fields(Retention::default().patched(&json!(30))),
            ["retention"]
        );
    }

    #[test]
    fn effective_settings_fall_back_and_payloads_never_outlive_logs() {
        let defaults = Retention {
            event_logs_days: Some(30),
            deliveries_days: Some(30),
            payload_days: None,
            audit_days: Some(365),
        };
        let none = Retention::default().effective(&defaults);
        assert_eq!(
            (none.event_logs_days, none.payload_days, none.audit_days),
            (30, 30, 365)
        );
        let own = Retention {
            event_logs_days: Some(7),
            payload_days: Some(90),
            ..Retention::default()
        }
        .effective(&defaults);
        assert_eq!((own.event_logs_days, own.payload_days), (7, 7));
    }

    #[test]
    fn cuts_proceed_in_bounded_batches_and_never_split_a_microsecond() {
        let day = DAY_MICROS;
        assert_eq!(cutoff(10 * day, 3), 7 * day);
        // Nothing older than the cut-off.
        assert_eq!(next_cut(&[8, 9], 8, 10), None);
        assert_eq!(next_cut(&[], 8, 10), None);
        // Few enough: cut at the cut-off itself.
        assert_eq!(next_cut(&[1, 2, 9], 8, 10), Some(8));
        // Too many: cut at the (max+1)-th row, which drops exactly `max`.
        assert_eq!(next_cut(&[1, 2, 3, 4, 5], 100, 3), Some(4));
        // All tied: cut just past the tie.
        assert_eq!(next_cut(&[5, 5, 5, 5], 100, 2), Some(6));
    }
}
