//! What happens to one inbound webhook: received (or rejected), evaluated, acted on.
//! All of it lives in the rule's stream; the event log id is the global position of the
//! `webhook.received` (or `webhook.rejected`) event.

use serde::{Deserialize, Serialize};

use super::event::{AuditInfo, Audited};
use super::rule::ActionType;
use crate::codec::{CodecError, EventBody, Protected, RawJson, decode_as};
use crate::conditions::ConditionResult;
use crate::verify::SourceType;

/// A verified webhook, exactly as it arrived.
///
/// The fields before `content` are also [`WebhookMeta`]: read models that need no payload decode
/// just that prefix (postcard is positional), never copying the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookReceived {
    /// The rule whose path it was posted to.
    pub rule: u64,
    /// The rule's organization.
    pub organization: u64,
    /// The rule's source type at the time.
    pub source_type: SourceType,
    /// Provider event type (e.g. `push`), if known.
    pub event_type: Option<String>,
    /// Provider delivery id, for de-duplication, if known.
    pub event_guid: Option<String>,
    /// A digest of what the signature covers, when the rule also de-duplicates on it (the
    /// delivery id alone is not signed by most providers): `sha256:<hex>`.
    pub replay_key: Option<String>,
    /// The peer's address.
    pub source_ip: Option<String>,
    /// Headers and body, sealed under the organization's data key.
    pub content: Protected<WebhookContent>,
    /// Whether the body is GitHub's `application/x-www-form-urlencoded` `payload=` form.
    pub form_encoded: bool,
}

/// What a sender sent: the part of a webhook an erasure destroys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookContent {
    /// Request headers (lower-case names), credentials removed, signatures kept.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes (signatures can be re-checked against them); for a rejected
    /// webhook, its first bytes.
    pub body: RawJson,
}

impl WebhookContent {
    /// The JSON payload: the body, or the `payload` field of a form-encoded body.
    pub fn payload(&self, form_encoded: bool) -> std::borrow::Cow<'_, [u8]> {
        if form_encoded {
            form_payload(&self.body.0).into()
        } else {
            std::borrow::Cow::Borrowed(&self.body.0)
        }
    }
}

/// A received webhook with its content opened (the `content` of `received` is left empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedWebhook {
    /// Everything but the content.
    pub received: WebhookReceived,
    /// Headers and body.
    pub content: WebhookContent,
}

impl OpenedWebhook {
    /// The JSON payload (see [`WebhookContent::payload`]).
    pub fn payload(&self) -> std::borrow::Cow<'_, [u8]> {
        self.content.payload(self.received.form_encoded)
    }
}

/// The leading fields of a [`WebhookReceived`]: everything but headers and payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookMeta {
    /// The rule.
    pub rule: u64,
    /// Its organization.
    pub organization: u64,
    /// The rule's source type at the time.
    pub source_type: SourceType,
    /// Provider event type.
    pub event_type: Option<String>,
    /// Provider delivery id.
    pub event_guid: Option<String>,
    /// Replay key (see [`WebhookReceived::replay_key`]).
    pub replay_key: Option<String>,
    /// The peer's address.
    pub source_ip: Option<String>,
}

impl WebhookMeta {
    /// Decodes the leading fields of a `webhook.received` record without its payload.
    pub fn decode(record: &crate::journal::RecordedEvent) -> Result<Self, CodecError> {
        if record.schema_version >= 2 {
            return postcard::take_from_bytes::<WebhookMeta>(&record.data)
                .map(|(meta, _)| meta)
                .map_err(|source| CodecError::Malformed {
                    event_type: WebhookReceived::TYPE,
                    version: record.schema_version,
                    source,
                });
        }
        crate::codec::decode::<WebhookReceived>(record).map(|e| WebhookMeta {
            rule: e.rule,
            organization: e.organization,
            source_type: e.source_type,
            event_type: e.event_type,
            event_guid: e.event_guid,
            replay_key: e.replay_key,
            source_ip: e.source_ip,
        })
    }
}

/// [`WebhookReceived`] v2, before payloads were sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookReceivedV2 {
    /// As in v3.
    pub rule: u64,
    /// As in v3.
    pub organization: u64,
    /// As in v3.
    pub source_type: SourceType,
    /// As in v3.
    pub event_type: Option<String>,
    /// As in v3.
    pub event_guid: Option<String>,
    /// As in v3.
    pub replay_key: Option<String>,
    /// As in v3.
    pub source_ip: Option<String>,
    /// Headers in the clear.
    pub headers: Vec<(String, String)>,
    /// Body in the clear.
    pub body: RawJson,
    /// As in v3.
    pub form_encoded: bool,
}

/// [`WebhookReceived`] v1, before `replay_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WebhookReceivedV1 {
    rule: u64,
    organization: u64,
    source_type: SourceType,
    event_type: Option<String>,
    event_guid: Option<String>,
    source_ip: Option<String>,
    headers: Vec<(String, String)>,
    body: RawJson,
    form_encoded: bool,
}

impl EventBody for WebhookReceived {
    const TYPE: &'static str = "webhook.received";
    const VERSION: u16 = 3;

    fn upcast(version: u16, data: &[u8]) -> Result<Self, CodecError> {
        let clear = |headers, body| Protected::Clear(WebhookContent { headers, body });
        match version {
            1 => decode_as::<WebhookReceivedV1>(Self::TYPE, 1, data).map(|v1| Self {
                rule: v1.rule,
                organization: v1.organization,
                source_type: v1.source_type,
                event_type: v1.event_type,
                event_guid: v1.event_guid,
                replay_key: None,
                source_ip: v1.source_ip,
                content: clear(v1.headers, v1.body),
                form_encoded: v1.form_encoded,
            }),
            2 => decode_as::<WebhookReceivedV2>(Self::TYPE, 2, data).map(|v2| Self {
                rule: v2.rule,
                organization: v2.organization,
                source_type: v2.source_type,
                event_type: v2.event_type,
                event_guid: v2.event_guid,
                replay_key: v2.replay_key,
                source_ip: v2.source_ip,
                content: clear(v2.headers, v2.body),
                form_encoded: v2.form_encoded,
            }),
            _ => Err(CodecError::UnknownVersion {
                event_type: Self::TYPE,
                version,
            }),
        }
    }
}

/// The `payload` field of a form-encoded body (empty if absent).
pub fn form_payload(body: &[u8]) -> Vec<u8> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default()
}

/// A webhook that failed verification, kept (capped) for forensics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRejected {
    /// The rule whose path it was posted to.
    pub rule: u64,
    /// The rule's organization.
    pub organization: u64,
    /// The rule's source type.
    pub source_type: SourceType,
    /// Why verification failed (as told to the sender).
    pub reason: String,
    /// The peer's address.
    pub source_ip: Option<String>,
    /// Headers (credentials removed) and the first bytes of the body, sealed.
    pub content: Protected<WebhookContent>,
    /// Whether the body was cut.
    pub truncated: bool,
}

/// [`WebhookRejected`] v1, before payloads were sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRejectedV1 {
    rule: u64,
    organization: u64,
    source_type: SourceType,
    reason: String,
    source_ip: Option<String>,
    /// Headers in the clear.
    pub headers: Vec<(String, String)>,
    /// Body in the clear.
    pub body: RawJson,
    truncated: bool,
}

impl EventBody for WebhookRejected {
    const TYPE: &'static str = "webhook.rejected";
    const VERSION: u16 = 2;

    fn upcast(version: u16, data: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_as::<WebhookRejectedV1>(Self::TYPE, 1, data).map(|v1| Self {
                rule: v1.rule,
                organization: v1.organization,
                source_type: v1.source_type,
                reason: v1.reason,
                source_ip: v1.source_ip,
                content: Protected::Clear(WebhookContent {
                    headers: v1.headers,
                    body: v1.body,
                }),
                truncated: v1.truncated,
            }),
            _ => Err(CodecError::UnknownVersion {
                event_type: Self::TYPE,
                version,
            }),
        }
    }
}

/// What the rule decided about a received webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its delivery id was already received within the dedup window.
    Duplicate,
    /// A condition did not hold.
    Unmatched,
    /// Every condition held and there is nothing to fire.
    Matched,
    /// Every condition held, but the rule fired for this throttle key too recently.
    Throttled,
    /// A condition (or the throttle key) could not be evaluated.
    Error,
    /// Every condition held: the actions fire.
    Fire,
}

/// The rule's decision on one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEvaluated {
    /// Position of the `webhook.received` event.
    pub event_log_id: u64,
    /// The decision.
    pub outcome: Outcome,
    /// One result per condition (empty for duplicates: they are not evaluated).
    pub condition_results: Vec<ConditionResult>,
    /// The throttle key the event fell under, when the rule has one.
    pub throttle_key: Option<String>,
    /// Why the outcome is `error`.
    pub error: Option<String>,
}

impl EventBody for EventEvaluated {
    const TYPE: &'static str = "webhook.evaluated";
}

/// A received webhook the rule could not process (its record does not decode, or evaluating it
/// failed inside the interpreter): set aside with the reason, so the rule goes on with the next
/// one. `hookforge parked retry` asks for it to be processed again ([`WebhookRetryRequested`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookParked {
    /// Position of the `webhook.received` event.
    pub event_log_id: u64,
    /// The rule.
    pub rule: u64,
    /// Its organization.
    pub organization: u64,
    /// Why it could not be processed.
    pub reason: String,
}

impl EventBody for WebhookParked {
    const TYPE: &'static str = "webhook.parked";
}

/// An operator asked for a parked webhook to be processed again (after an upgrade).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRetryRequested {
    /// Position of the `webhook.received` event.
    pub event_log_id: u64,
}

impl EventBody for WebhookRetryRequested {
    const TYPE: &'static str = "webhook.retry_requested";
}

impl Audited for WebhookParked {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

impl Audited for WebhookRetryRequested {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

/// How firing one action went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Launched or sent.
    Fired,
    /// Could not be launched (unknown or deleted target, launch error).
    Failed,
}

/// The result of one fired action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// What was fired.
    pub action_type: ActionType,
    /// Its target.
    pub target_id: u64,
    /// Fired or failed.
    pub status: ActionStatus,
    /// The job launched, for `launch_job_template`.
    pub job_id: Option<u64>,
    /// The workflow job launched, for `launch_workflow`.
    pub workflow_job_id: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The rule fired its actions for a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionsFired {
    /// Position of the `webhook.received` event.
    pub event_log_id: u64,
    /// The rule.
    pub rule: u64,
    /// Its organization.
    pub organization: u64,
    /// One result per action, in the rule's order.
    pub results: Vec<ActionResult>,
}

impl EventBody for ActionsFired {
    const TYPE: &'static str = "webhook.actions_fired";
}

impl ActionsFired {
    /// Whether every action fired.
    pub fn all_fired(&self) -> bool {
        self.results.iter().all(|r| r.status == ActionStatus::Fired)
    }
}

impl Audited for WebhookReceived {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

impl Audited for WebhookRejected {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

impl Audited for EventEvaluated {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

impl Audited for ActionsFired {
    fn audit(&self) -> Option<AuditInfo> {
        Some(AuditInfo {
            organization: Some(self.organization),
            resource_type: "event_rule",
            resource_id: self.rule.to_string(),
            details: serde_json::json!({
                "event_log_id": self.event_log_id,
                "actions": self.results.iter().map(|r| serde_json::json!({
                    "action_type": r.action_type, "target_id": r.target_id, "status": r.status,
                    "job_id": r.job_id, "workflow_job_id": r.workflow_job_id, "error": r.error,
                })).collect::<Vec<_>>(),
            }),
        })
    }
}

/// Headers that carry credentials: never journaled.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-gitlab-token",
    "x-forge-token",
    "proxy-authorization",
];
