//! Deliveries: the events an endpoint actor records in its stream, and the pure decision of what
//! to record after each attempt.
//!
//! A delivery's id is the journal position of its [`DeliveryScheduled`] event: unique, ordered
//! like the journal (which is what `ordered` endpoints follow), and known to every fold without
//! a counter. Its `webhook_id` (`msg_…`) is what receivers see in `webhook-id` and
//! `X-Forge-Delivery`, the same on every attempt.

use serde::{Deserialize, Serialize};

use super::endpoint::EndpointDisabled;
use super::event::{AuditInfo, Audited, Event};
use crate::codec::{EventBody, RawJson};
use crate::delivery::{AttemptOutcome, Decision, RetryPolicy, decide};
use crate::journal::{Position, Revision};

/// How a delivery came to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryKind {
    /// The dispatcher matched a journal event to the endpoint.
    Dispatched,
    /// An admin asked to send delivery `of` again (`redeliver/` or `recover/`).
    Redelivery {
        /// The delivery sent again.
        of: u64,
    },
    /// A synchronous `test/` ping; never retried, never affects the endpoint's health.
    Test,
}

/// Where a journal event lives, so it can be read back when a delivery is (re)sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// Its global position (the published event's id).
    pub position: Position,
    /// Its stream.
    pub stream: String,
    /// Its revision in that stream.
    pub revision: Revision,
}

/// An event carried inside the delivery itself (test pings, which are not journal events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InlineEvent {
    /// Envelope `resource_type`.
    pub resource_type: String,
    /// Envelope `resource_id`.
    pub resource_id: String,
    /// Envelope `payload`.
    pub payload: RawJson,
    /// Envelope `occurred_at` (µs since the epoch).
    pub occurred_at: i64,
}

/// What a delivery sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeliverySource {
    /// A journal event, read back by reference (payloads are not copied per endpoint).
    Journal(EventRef),
    /// A small event carried in the delivery.
    Inline(InlineEvent),
}

impl DeliverySource {
    /// The journal position of the source event, if it is one.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Journal(r) => Some(r.position),
            Self::Inline(_) => None,
        }
    }
}

/// A delivery of one event to one endpoint was scheduled. For dispatched deliveries the
/// endpoint actor records it at most once per source position (the fold ignores repeats too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryScheduled {
    /// The endpoint.
    pub endpoint: u64,
    /// Its organization.
    pub organization: u64,
    /// `webhook-id` / `X-Forge-Delivery` of every attempt.
    pub webhook_id: String,
    /// The event type delivered.
    pub event_type: String,
    /// Why it exists.
    pub kind: DeliveryKind,
    /// What it sends.
    pub source: DeliverySource,
}

impl EventBody for DeliveryScheduled {
    const TYPE: &'static str = "delivery.scheduled";
}

/// An attempt was answered with a 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptSucceeded {
    /// The endpoint.
    pub endpoint: u64,
    /// The delivery.
    pub delivery: u64,
    /// 1-based attempt number.
    pub attempt: u32,
    /// When the attempt started (µs since the epoch).
    pub at: i64,
    /// Response status.
    pub status: u16,
    /// Attempt duration.
    pub duration_ms: u64,
    /// First 4 KiB of the response body.
    pub snippet: String,
}

impl EventBody for AttemptSucceeded {
    const TYPE: &'static str = "delivery.attempt_succeeded";
}

/// An attempt failed; `next_attempt_at` says when the next one is due, `None` if none follows
/// (dead-lettered, endpoint disabled, or a test delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptFailed {
    /// The endpoint.
    pub endpoint: u64,
    /// The delivery.
    pub delivery: u64,
    /// 1-based attempt number.
    pub attempt: u32,
    /// When the attempt started (µs since the epoch).
    pub at: i64,
    /// Response status, if the receiver answered.
    pub status: Option<u16>,
    /// Attempt duration.
    pub duration_ms: u64,
    /// First 4 KiB of the response body.
    pub snippet: String,
    /// What went wrong.
    pub error: String,
    /// Failure class (`http_status`, `timeout`, `connect`, `tls`, `blocked_by_ssrf`, ...).
    pub error_kind: String,
    /// When the next attempt is due (µs since the epoch), if one follows.
    pub next_attempt_at: Option<i64>,
}

impl EventBody for AttemptFailed {
    const TYPE: &'static str = "delivery.attempt_failed";
}

/// A delivery failed `max_attempts` times and was given up ("dead-lettered"); it can be sent
/// again with `redeliver/` or `recover/`.
///
/// Also a deliverable event type (`delivery.dead_lettered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryDeadLettered {
    /// The endpoint.
    pub endpoint: u64,
    /// Its organization.
    pub organization: u64,
    /// The delivery.
    pub delivery: u64,
    /// Its `webhook-id`.
    pub webhook_id: String,
    /// The event type it carried.
    pub event_type: String,
    /// Attempts made.
    pub attempts: u32,
    /// Status of the last attempt, if answered.
    pub last_status: Option<u16>,
    /// Error of the last attempt.
    pub last_error: String,
}

impl EventBody for DeliveryDeadLettered {
    const TYPE: &'static str = "delivery.dead_lettered";
}

/// A dispatched event's filter could not be evaluated for this endpoint (over its evaluation
/// budget, or an interpreter failure): recorded as a delivery with status `filter_error` and
/// the reason, never sent. Recorded at most once per source position, like
/// [`DeliveryScheduled`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryFilterFailed {
    /// The endpoint.
    pub endpoint: u64,
    /// Its organization.
    pub organization: u64,
    /// The `webhook-id` the delivery would have had.
    pub webhook_id: String,
    /// The event type.
    pub event_type: String,
    /// The event.
    pub source: DeliverySource,
    /// Why the filter failed.
    pub error: String,
}

impl EventBody for DeliveryFilterFailed {
    const TYPE: &'static str = "delivery.filter_failed";
}

impl DeliveryFilterFailed {
    /// The dispatched delivery it stands for (it ends at once), and why the filter failed.
    pub fn into_scheduled(self) -> (DeliveryScheduled, String) {
        let scheduled = DeliveryScheduled {
            endpoint: self.endpoint,
            organization: self.organization,
            webhook_id: self.webhook_id,
            event_type: self.event_type,
            kind: DeliveryKind::Dispatched,
            source: self.source,
        };
        (scheduled, self.error)
    }
}

macro_rules! not_audited {
    ($($ty:ty),*) => {$(
        impl Audited for $ty {
            fn audit(&self) -> Option<AuditInfo> {
                None
            }
        }
    )*};
}

not_audited!(
    DeliveryScheduled,
    DeliveryFilterFailed,
    AttemptSucceeded,
    AttemptFailed,
    DeliveryDeadLettered
);

/// A fresh `webhook-id`: `msg_` and 32 hex digits of a random UUID.
pub fn new_webhook_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// What the endpoint knows when an attempt of one of its deliveries ends.
#[derive(Debug, Clone)]
pub struct AttemptContext<'a> {
    /// The endpoint.
    pub endpoint: u64,
    /// Its organization.
    pub organization: u64,
    /// Its name (for `endpoint.disabled`).
    pub endpoint_name: &'a str,
    /// The delivery.
    pub delivery: u64,
    /// Its `webhook-id`.
    pub webhook_id: &'a str,
    /// Its event type.
    pub event_type: &'a str,
    /// This attempt's number, 1-based.
    pub attempt: u32,
    /// When this attempt started (µs since the epoch).
    pub started_at: i64,
    /// Start of the endpoint's current failure streak, `None` while healthy.
    pub failing_since: Option<i64>,
    /// The endpoint's retry policy.
    pub policy: &'a RetryPolicy,
    /// A uniform draw from `[0, 1)` scaling the backoff (full jitter).
    pub jitter: f64,
}

/// Decides the events to record after an attempt of a regular (non-test) delivery:
///
/// - 2xx → `AttemptSucceeded` (and the endpoint's failure streak ends when it is folded);
/// - a retryable failure → `AttemptFailed` with `next_attempt_at`, unless the endpoint has now
///   failed continuously for `policy.disable_after_failing`, which disables it;
/// - out of attempts → `AttemptFailed` + `DeliveryDeadLettered`;
/// - 404, 410 or an SSRF refusal → `AttemptFailed` + `EndpointDisabled`.
pub fn record_attempt(ctx: &AttemptContext<'_>, outcome: &AttemptOutcome) -> Vec<Event> {
    let decision = decide(
        ctx.policy,
        ctx.attempt,
        outcome.class(),
        outcome.retry_after,
        ctx.jitter,
    );
    if decision == Decision::Delivered {
        return vec![succeeded(ctx, outcome).into()];
    }
    let streak_start = ctx.failing_since.unwrap_or(ctx.started_at);
    let now = ctx.started_at.saturating_add(
        i64::try_from(outcome.duration_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000),
    );
    let failing_too_long = ctx.policy.failing_too_long(
        chrono::DateTime::from_timestamp_micros(streak_start),
        chrono::DateTime::from_timestamp_micros(now).unwrap_or_default(),
    );
    let disable = |reason: String| -> Event {
        EndpointDisabled {
            id: ctx.endpoint,
            organization: ctx.organization,
            name: ctx.endpoint_name.to_owned(),
            reason,
            failing_since: Some(streak_start),
        }
        .into()
    };
    let too_long_reason = || {
        let hours = ctx.policy.disable_after_failing.as_secs_f64() / 3600.0;
        format!("failed continuously for {hours} hours without a successful delivery")
    };
    match decision {
        Decision::Delivered => unreachable!("handled above"),
        Decision::RetryAfter(delay) if !failing_too_long => {
            let next = now.saturating_add(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX));
            vec![failed(ctx, outcome, Some(next)).into()]
        }
        Decision::RetryAfter(_) => vec![
            failed(ctx, outcome, None).into(),
            disable(too_long_reason()),
        ],
        Decision::DeadLetter => {
            let mut events = vec![
                failed(ctx, outcome, None).into(),
                dead_lettered(ctx, outcome).into(),
            ];
            if failing_too_long {
                events.push(disable(too_long_reason()));
            }
            events
        }
        Decision::DisableEndpoint { reason } => {
            vec![failed(ctx, outcome, None).into(), disable(reason)]
        }
    }
}

/// The event recording an attempt of a test delivery: success or a final failure, nothing else.
pub fn record_test_attempt(ctx: &AttemptContext<'_>, outcome: &AttemptOutcome) -> Event {
    if outcome.is_success() {
        succeeded(ctx, outcome).into()
    } else {
        failed(ctx, outcome, None).into()
    }
}

fn succeeded(ctx: &AttemptContext<'_>, outcome: &AttemptOutcome) -> AttemptSucceeded {
    AttemptSucceeded {
        endpoint: ctx.endpoint,
        delivery: ctx.delivery,
        attempt: ctx.attempt,
        at: ctx.started_at,
        status: outcome.status.unwrap_or(200),
        duration_ms: outcome.duration_ms,
        snippet: outcome.response_snippet.clone(),
    }
}

fn failed(
    ctx: &AttemptContext<'_>,
    outcome: &AttemptOutcome,
    next_attempt_at: Option<i64>,
) -> AttemptFailed {
    let (error, error_kind) = match &outcome.error {
        Some(e) => (e.message.clone(), e.kind.as_str().to_owned()),
        None => (String::new(), String::new()),
    };
    AttemptFailed {
        endpoint: ctx.endpoint,
        delivery: ctx.delivery,
        attempt: ctx.attempt,
        at: ctx.started_at,
        status: outcome.status,
        duration_ms: outcome.duration_ms,
        snippet: outcome.response_snippet.clone(),
        error,
        error_kind,
        next_attempt_at,
    }
}

fn dead_lettered(ctx: &AttemptContext<'_>, outcome: &AttemptOutcome) -> DeliveryDeadLettered {
    DeliveryDeadLettered {
        endpoint: ctx.endpoint,
        organization: ctx.organization,
        delivery: ctx.delivery,
        webhook_id: ctx.webhook_id.to_owned(),
        event_type: ctx.event_type.to_owned(),
        attempts: ctx.attempt,
        last_status: outcome.status,
        last_error: outcome
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::delivery::{AttemptError, FailureKind};

    const HOUR: i64 = 3_600_000_000;

    fn outcome(
        status: Option<u16>,
        kind: Option<FailureKind>,
        retry_after: Option<u64>,
    ) -> AttemptOutcome {
        AttemptOutcome {
            status,
            duration_ms: 20,
            response_snippet: "body".into(),
            retry_after: retry_after.map(Duration::from_secs),
            error: kind.map(|kind| AttemptError {
                kind,
                message: format!("failed: {kind}"),
            }),
        }
    }

    fn ctx(policy: &RetryPolicy, attempt: u32, failing_since: Option<i64>) -> AttemptContext<'_> {
        AttemptContext {
            endpoint: 7,
            organization: 1,
            endpoint_name: "ci",
            delivery: 100,
            webhook_id: "msg_x",
            event_type: "build.done",
            attempt,
            started_at: 10 * HOUR,
            failing_since,
            policy,
            jitter: 1.0,
        }
    }

    fn types(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::event_type).collect()
    }

    #[test]
    fn given_a_2xx_when_recorded_then_the_attempt_succeeds() {
        let policy = RetryPolicy::default();
        let events = record_attempt(
            &ctx(&policy, 3, Some(HOUR)),
            &outcome(Some(204), None, None),
        );
        assert_eq!(
            events,
            vec![Event::from(AttemptSucceeded {
                endpoint: 7,
                delivery: 100,
                attempt: 3,
                at: 10 * HOUR,
                status: 204,
                duration_ms: 20,
                snippet: "body".into()
            })]
        );
    }

    #[test]
    fn given_a_500_then_the_next_attempt_is_due_after_the_backoff_from_the_end_of_this_one() {
        let policy = RetryPolicy::default();
        let events = record_attempt(
            &ctx(&policy, 2, None),
            &outcome(Some(500), Some(FailureKind::HttpStatus), None),
        );
        let [Event::AttemptFailed(f)] = events.as_slice() else {
            panic!("{events:?}")
        };
        // Attempt 2, jitter 1.0: the full ceiling of 10 s after the attempt ended (20 ms later).
        assert_eq!(f.next_attempt_at, Some(10 * HOUR + 20_000 + 10_000_000));
        assert_eq!(
            (f.status, f.error.as_str(), f.error_kind.as_str()),
            (Some(500), "failed: http_status", "http_status")
        );
    }

    #[test]
    fn given_retry_after_on_a_429_then_the_retry_waits_at_least_that_long() {
        let policy = RetryPolicy::default();
        let events = record_attempt(
            &ctx(&policy, 1, None),
            &outcome(Some(429), Some(FailureKind::HttpStatus), Some(120)),
        );
        let [Event::AttemptFailed(f)] = events.as_slice() else {
            panic!()
        };
        assert_eq!(f.next_attempt_at, Some(10 * HOUR + 20_000 + 120_000_000));
    }

    #[test]
    fn given_the_last_attempt_fails_then_the_delivery_is_dead_lettered() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let events = record_attempt(
            &ctx(&policy, 3, None),
            &outcome(None, Some(FailureKind::Timeout), None),
        );
        assert_eq!(
            types(&events),
            ["delivery.attempt_failed", "delivery.dead_lettered"]
        );
        let Event::DeliveryDeadLettered(d) = &events[1] else {
            panic!()
        };
        assert_eq!(
            (d.attempts, d.last_status, d.event_type.as_str()),
            (3, None, "build.done")
        );
        let Event::AttemptFailed(f) = &events[0] else {
            panic!()
        };
        assert_eq!(f.next_attempt_at, None);
    }

    #[test]
    fn given_410_404_or_ssrf_then_the_endpoint_is_disabled_at_once() {
        let policy = RetryPolicy::default();
        for (status, kind) in [
            (Some(410), FailureKind::HttpStatus),
            (Some(404), FailureKind::HttpStatus),
            (None, FailureKind::BlockedBySsrf),
        ] {
            let events = record_attempt(&ctx(&policy, 1, None), &outcome(status, Some(kind), None));
            assert_eq!(
                types(&events),
                ["delivery.attempt_failed", "endpoint.disabled"],
                "{status:?}"
            );
            let Event::EndpointDisabled(d) = &events[1] else {
                panic!()
            };
            assert_eq!(
                (d.id, d.organization, d.name.as_str(), d.failing_since),
                (7, 1, "ci", Some(10 * HOUR))
            );
        }
    }

    #[test]
    fn given_failures_for_the_configured_hours_then_the_endpoint_is_disabled() {
        let policy = RetryPolicy {
            disable_after_failing: Duration::from_secs(5 * 3600),
            ..RetryPolicy::default()
        };
        let fail = outcome(Some(503), Some(FailureKind::HttpStatus), None);
        // Failing since 5h before this attempt started: disabled.
        let events = record_attempt(&ctx(&policy, 2, Some(5 * HOUR)), &fail);
        assert_eq!(
            types(&events),
            ["delivery.attempt_failed", "endpoint.disabled"]
        );
        let Event::EndpointDisabled(d) = &events[1] else {
            panic!()
        };
        assert_eq!(
            d.reason,
            "failed continuously for 5 hours without a successful delivery"
        );
        // Failing for just under 5h: retried.
        let events = record_attempt(&ctx(&policy, 2, Some(5 * HOUR + 1_000_000)), &fail);
        assert_eq!(types(&events), ["delivery.attempt_failed"]);
        // No streak yet: this failure starts one.
        assert_eq!(
            types(&record_attempt(&ctx(&policy, 1, None), &fail)),
            ["delivery.attempt_failed"]
        );
    }

    #[test]
    fn test_deliveries_never_retry_or_disable() {
        let policy = RetryPolicy::default();
        let Event::AttemptFailed(f) = record_test_attempt(
            &ctx(&policy, 1, None),
            &outcome(Some(410), Some(FailureKind::HttpStatus), None),
        ) else {
            panic!()
        };
        assert_eq!(f.next_attempt_at, None);
        assert!(matches!(
            record_test_attempt(&ctx(&policy, 1, None), &outcome(Some(200), None, None)),
            Event::AttemptSucceeded(_)
        ));
    }

    #[test]
    fn webhook_ids_are_unique_msg_ids() {
        let (a, b) = (new_webhook_id(), new_webhook_id());
        assert!(a.starts_with("msg_") && a.len() == 36);
        assert_ne!(a, b);
    }
}
