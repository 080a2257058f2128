//! Which records carry a tenant's payload, when it has expired, and what is left once it is cut:
//! the policy journal compaction follows (see [`crate::journal::CompactionPolicy`]).
//!
//! A webhook's body and headers are its payload. What remains after compaction (rule,
//! organization, source, event type, delivery id, replay key, peer address) is what event logs
//! and de-duplication need, so a dedup window longer than the payload's retention still holds.
//!
//! Copies of payloads are cut under the same policy: a published event's payload, and a job's
//! or workflow job's `extra_vars` (which carry `forge_eda_payload`). Readers see the record's
//! `compacted` flag and say so (a redelivery of a compacted event fails with that reason; it
//! never sends an empty payload).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::job::JobLaunched;
use super::published::EventPublished;
use super::retention::{Expiring, RetentionExpired};
use super::webhook::{WebhookReceived, WebhookReceivedV2, WebhookRejected, WebhookRejectedV1};
use super::workflow::WorkflowLaunched;
use crate::codec::{self, EventBody, Protected, RawJson};
use crate::journal::{CompactionPolicy, RecordedEvent};

/// Per organization, the time before which its payloads have expired (µs), folded from
/// `retention.expired` events of kind `payloads`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadExpiry {
    before: BTreeMap<u64, i64>,
}

impl PayloadExpiry {
    /// Folds one expiry (cuts only move forward).
    pub fn expire(&mut self, organization: u64, before: i64) {
        let at = self.before.entry(organization).or_insert(before);
        *at = (*at).max(before);
    }

    /// Folds `event` if it is a payload expiry.
    pub fn apply(&mut self, event: &RecordedEvent) {
        if event.event_type != RetentionExpired::TYPE {
            return;
        }
        if let Ok(e) = codec::decode::<RetentionExpired>(event)
            && e.kind == Expiring::Payloads
        {
            self.expire(e.organization, e.before);
        }
    }

    /// Whether a payload of `organization` created at `created` (µs) has expired.
    pub fn is_expired(&self, organization: u64, created: i64) -> bool {
        self.before
            .get(&organization)
            .is_some_and(|before| created < *before)
    }

    /// Where `organization`'s payloads were last cut, if they ever were.
    pub fn cut(&self, organization: u64) -> Option<i64> {
        self.before.get(&organization).copied()
    }
}

/// The organization owning a payload-bearing record, read from the head of its data: webhooks
/// start with `rule, organization`, jobs and workflow jobs with `id, organization`, published
/// events with `organization`.
fn payload_organization(event: &RecordedEvent) -> Option<u64> {
    let second = |data: &[u8]| {
        postcard::take_from_bytes::<(u64, u64)>(data)
            .ok()
            .map(|((_, organization), _)| organization)
    };
    match event.event_type.as_str() {
        WebhookReceived::TYPE | WebhookRejected::TYPE => second(&event.data),
        JobLaunched::TYPE | WorkflowLaunched::TYPE => second(&event.data),
        EventPublished::TYPE => postcard::take_from_bytes::<u64>(&event.data)
            .ok()
            .map(|(organization, _)| organization),
        _ => None,
    }
}

/// `event`'s data with body and headers removed, in its own schema version (the oldest
/// versions are left whole: re-encoding them would need their old shapes).
pub fn strip(event: &RecordedEvent) -> Option<Vec<u8>> {
    let cut = |encoded: Result<Vec<u8>, postcard::Error>| encoded.ok();
    match (event.event_type.as_str(), event.schema_version) {
        (WebhookReceived::TYPE, WebhookReceived::VERSION) => {
            let mut e: WebhookReceived = codec::decode(event).ok()?;
            e.content = Protected::default();
            e.form_encoded = false;
            cut(postcard::to_stdvec(&e))
        }
        (WebhookReceived::TYPE, 2) => {
            let mut e: WebhookReceivedV2 = postcard::from_bytes(&event.data).ok()?;
            e.headers.clear();
            e.body = RawJson(Vec::new());
            cut(postcard::to_stdvec(&e))
        }
        (WebhookRejected::TYPE, WebhookRejected::VERSION) => {
            let mut e: WebhookRejected = codec::decode(event).ok()?;
            e.content = Protected::default();
            cut(postcard::to_stdvec(&e))
        }
        (WebhookRejected::TYPE, 1) => {
            let mut e: WebhookRejectedV1 = postcard::from_bytes(&event.data).ok()?;
            e.headers.clear();
            e.body = RawJson(Vec::new());
            cut(postcard::to_stdvec(&e))
        }
        (EventPublished::TYPE, EventPublished::VERSION) => {
            let mut e: EventPublished = codec::decode(event).ok()?;
            e.payload = Protected::default();
            cut(postcard::to_stdvec(&e))
        }
        (JobLaunched::TYPE, JobLaunched::VERSION) => {
            let mut e: JobLaunched = codec::decode(event).ok()?;
            e.extra_vars = Protected::default();
            cut(postcard::to_stdvec(&e))
        }
        (WorkflowLaunched::TYPE, WorkflowLaunched::VERSION) => {
            let mut e: WorkflowLaunched = codec::decode(event).ok()?;
            e.extra_vars = Protected::default();
            cut(postcard::to_stdvec(&e))
        }
        _ => None,
    }
}

impl CompactionPolicy for PayloadExpiry {
    fn payload_owner(&self, event: &RecordedEvent) -> Option<u64> {
        payload_organization(event)
    }

    fn expired_before(&self, owner: u64) -> Option<i64> {
        self.cut(owner)
    }

    fn strip(&self, event: &RecordedEvent) -> Option<Vec<u8>> {
        strip(event)
    }

    fn observe(&mut self, event: &RecordedEvent) {
        self.apply(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Event;
    use crate::journal::Metadata;
    use crate::verify::SourceType;

    fn record(event: Event, recorded_at: i64) -> RecordedEvent {
        let new = event.encode(Metadata::default());
        RecordedEvent {
            position: 0,
            stream: "rule-1".into(),
            revision: 0,
            event_type: new.event_type,
            schema_version: new.schema_version,
            recorded_at,
            metadata: new.metadata,
            data: new.data.into(),
            compacted: false,
        }
    }

    fn received() -> WebhookReceived {
        WebhookReceived {
            rule: 1,
            organization: 7,
            source_type: SourceType::WebhookGithub,
            event_type: Some("push".into()),
            event_guid: Some("d-1".into()),
            replay_key: Some("sha256:ab".into()),
            source_ip: Some("10.0.0.1".into()),
            content: Protected::Sealed {
                generation: 1,
                bytes: codec::Sealed(vec![9; 96]),
            },
            form_encoded: false,
        }
    }

    #[test]
    fn stripping_keeps_what_logs_and_dedup_need() {
        let r = record(Event::WebhookReceived(received()), 5);
        let policy = PayloadExpiry::default();
        assert_eq!(policy.payload_owner(&r), Some(7));
        let data = policy.strip(&r).unwrap();
        assert!(data.len() < r.data.len());
        let stripped = RecordedEvent {
            data: data.into(),
            ..r
        };
        let e: WebhookReceived = codec::decode(&stripped).unwrap();
        assert_eq!(
            e,
            WebhookReceived {
                content: Protected::default(),
                ..received()
            }
        );
    }

    #[test]
    fn records_from_before_sealing_are_stripped_in_their_own_version() {
        let v2 = WebhookReceivedV2 {
            rule: 1,
            organization: 7,
            source_type: SourceType::WebhookGithub,
            event_type: Some("push".into()),
            event_guid: Some("d-1".into()),
            replay_key: None,
            source_ip: None,
            headers: vec![("x-github-event".into(), "push".into())],
            body: RawJson(br#"{"secret":"payload"}"#.to_vec()),
            form_encoded: false,
        };
        let r = RecordedEvent {
            schema_version: 2,
            data: postcard::to_stdvec(&v2).unwrap().into(),
            ..record(Event::WebhookReceived(received()), 5)
        };
        let stripped = RecordedEvent {
            data: strip(&r).unwrap().into(),
            ..r.clone()
        };
        let e: WebhookReceived = codec::decode(&stripped).unwrap();
        assert_eq!(e.content, Protected::default());
        assert_eq!(e.event_guid.as_deref(), Some("d-1"));
        let whole: WebhookReceived = codec::decode(&r).unwrap();
        assert_eq!(whole.content.clear().unwrap().body.0, v2.body.0);
    }

    #[test]
    fn copies_of_payloads_are_cut_under_the_same_policy() {
        let sealed = || Protected::Sealed {
            generation: 1,
            bytes: codec::Sealed(vec![7; 200]),
        };
        let published = EventPublished {
            organization: 9,
            event_type: "build.done".into(),
            resource_type: "build".into(),
            resource_id: "42".into(),
            payload: sealed(),
            idempotency_key: Some("k".into()),
        };
        let r = record(Event::EventPublished(published.clone()), 5);
        let policy = PayloadExpiry::default();
        assert_eq!(policy.payload_owner(&r), Some(9));
        let cut = RecordedEvent {
            data: policy.strip(&r).unwrap().into(),
            ..r
        };
        let e: EventPublished = codec::decode(&cut).unwrap();
        assert_eq!(
            e,
            EventPublished {
                payload: Protected::default(),
                ..published
            }
        );

        let job = JobLaunched {
            id: 3,
            organization: 11,
            template: 2,
            template_name: "deploy".into(),
            kind: crate::domain::job_template::JobKind::Command(
                crate::domain::job_template::CommandSpec {
                    argv: vec!["true".into()],
                    env: BTreeMap::new(),
                    working_dir: None,
                },
            ),
            timeout_seconds: 60,
            alert_after_seconds: None,
            concurrency: 1,
            extra_vars: sealed(),
            launched_by: crate::domain::job::LaunchedBy::User("admin".into()),
        };
        let r = record(Event::JobLaunched(job.clone()), 5);
        assert_eq!(policy.payload_owner(&r), Some(11));
        let cut = RecordedEvent {
            data: policy.strip(&r).unwrap().into(),
            ..r
        };
        let e: JobLaunched = codec::decode(&cut).unwrap();
        assert_eq!(
            e,
            JobLaunched {
                extra_vars: Protected::default(),
                ..job
            }
        );
    }

    #[test]
    fn expiry_folds_forward_per_organization() {
        let mut policy = PayloadExpiry::default();
        let cut = |organization, before| {
            record(
                Event::RetentionExpired(RetentionExpired {
                    organization,
                    kind: Expiring::Payloads,
                    before,
                }),
                0,
            )
        };
        policy.observe(&cut(7, 100));
        policy.observe(&cut(7, 50));
        policy.observe(&record(
            Event::RetentionExpired(RetentionExpired {
                organization: 8,
                kind: Expiring::EventLogs,
                before: 100,
            }),
            0,
        ));
        assert_eq!(policy.expired_before(7), Some(100));
        assert_eq!(policy.expired_before(8), None);
        assert!(policy.is_expired(7, 99));
        assert!(!policy.is_expired(7, 100));
        assert!(!policy.is_expired(8, 1));
    }

    #[test]
    fn other_records_carry_no_payload() {
        let r = record(
            Event::RetentionExpired(RetentionExpired {
                organization: 7,
                kind: Expiring::Payloads,
                before: 1,
            }),
            0,
        );
        assert_eq!(PayloadExpiry::default().payload_owner(&r), None);
        assert_eq!(strip(&r), None);
    }
}
