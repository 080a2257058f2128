//! Events that outbound endpoints receive: custom events published through the API, hookforge's
//! own operational events, and (from the actions issue) job and workflow lifecycle events.
//!
//! Custom events go to one stream per organization, `published-<org>`, so a publisher's events
//! keep their order and the stream needs no id allocation. The event's global journal position
//! is its id. [`deliverable`] is the single place that says which recorded events are delivered
//! and what their envelope carries; add an arm there to make a new event type deliverable.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use super::delivery::DeliveryDeadLettered;
use super::endpoint::{EndpointDisabled, valid_event_type};
use super::event::{AuditInfo, Audited, Event};
use super::{DomainError, FieldErrors};
use crate::codec::{CodecError, EventBody, Protected, RawJson, decode_as};
use crate::journal::RecordedEvent;

/// Stream category of published custom events.
pub const CATEGORY: &str = "published";
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;
/// How long an idempotency key returns the first answer, in seconds.
pub const IDEMPOTENCY_WINDOW_SECONDS: i64 = 24 * 3600;
/// Longest `resource_type` / `resource_id`.
pub const MAX_RESOURCE_LEN: usize = 256;
/// Event types a publisher may not use: hookforge emits these itself.
pub const RESERVED_PREFIXES: &[&str] = &["endpoint.", "delivery.", "job.", "workflow."];
/// The synthetic type of test deliveries.
pub const PING: &str = "ping";

/// Stream of organization `org`'s published events.
pub fn stream(org: u64) -> String {
    format!("published-{org}")
}

/// A custom event was published through `POST /api/v2/events/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPublished {
    /// Publishing organization; only its endpoints receive the event.
    pub organization: u64,
    /// Dotted event type, e.g. `validation.completed`.
    pub event_type: String,
    /// Kind of resource the event is about (free text).
    pub resource_type: String,
    /// Id of that resource (free text; numbers are kept as their decimal text).
    pub resource_id: String,
    /// The JSON payload, byte-exact, sealed under the organization's data key.
    pub payload: Protected<RawJson>,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
}

/// [`EventPublished`] v1, before payloads were sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EventPublishedV1 {
    organization: u64,
    event_type: String,
    resource_type: String,
    resource_id: String,
    payload: RawJson,
    idempotency_key: Option<String>,
}

impl EventBody for EventPublished {
    const TYPE: &'static str = "event.published";
    const VERSION: u16 = 2;

    fn upcast(version: u16, data: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_as::<EventPublishedV1>(Self::TYPE, 1, data).map(|v1| Self {
                organization: v1.organization,
                event_type: v1.event_type,
                resource_type: v1.resource_type,
                resource_id: v1.resource_id,
                payload: Protected::Clear(v1.payload),
                idempotency_key: v1.idempotency_key,
            }),
            _ => Err(CodecError::UnknownVersion {
                event_type: Self::TYPE,
                version,
            }),
        }
    }
}

impl Audited for EventPublished {
    fn audit(&self) -> Option<AuditInfo> {
        // Published events are data, not configuration: the delivery history records them.
        None
    }
}

/// What an outbound envelope carries about an event, whatever its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Deliverable {
    /// Organization whose endpoints may receive it.
    pub organization: u64,
    /// The event type endpoints subscribe to.
    pub event_type: String,
    /// Envelope `resource_type`.
    pub resource_type: String,
    /// Envelope `resource_id`.
    pub resource_id: String,
    /// Envelope `payload`, byte-exact JSON; sealed for published events (open it with
    /// [`crate::secrets::DataKeys::open`] under [`EventPublished::TYPE`]).
    pub payload: Protected<RawJson>,
    /// When it happened (µs since the epoch).
    pub occurred_at: i64,
}

/// Journal event types that can be deliverable; [`deliverable`] only decodes these.
pub const DELIVERABLE_TYPES: &[&str] = &[
    EventPublished::TYPE,
    EndpointDisabled::TYPE,
    DeliveryDeadLettered::TYPE,
];

/// The deliverable view of a recorded event, or `None` if endpoints never receive it.
///
/// `delivery.dead_lettered` about a delivery of an operational event (itself a dead-letter or an
/// `endpoint.disabled`) is not delivered: two failing endpoints subscribed to each other's
/// dead-letters would otherwise feed each other forever.
pub fn deliverable(record: &RecordedEvent) -> Option<Deliverable> {
    // Its payload was cut by retention: there is nothing left to deliver.
    if record.compacted {
        return None;
    }
    let event_type = record.event_type.as_str();
    if !DELIVERABLE_TYPES.contains(&event_type)
        && !super::lifecycle::JOURNAL_TYPES.contains(&event_type)
    {
        return None;
    }
    let at = record.recorded_at;
    match Event::decode(record).ok()?? {
        Event::EventPublished(e) => Some(Deliverable {
            organization: e.organization,
            event_type: e.event_type,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            payload: e.payload,
            occurred_at: at,
        }),
        Event::EndpointDisabled(e) => Some(Deliverable {
            organization: e.organization,
            event_type: EndpointDisabled::TYPE.to_owned(),
            resource_type: "outbound_webhook".into(),
            resource_id: e.id.to_string(),
            payload: Protected::Clear(RawJson::from_value(&json!({
                "endpoint_id": e.id,
                "name": e.name,
                "reason": e.reason,
                "failing_since": e.failing_since.map(super::rfc3339),
            }))),
            occurred_at: at,
        }),
        Event::DeliveryDeadLettered(e) if !is_operational(&e.event_type) => Some(Deliverable {
            organization: e.organization,
            event_type: DeliveryDeadLettered::TYPE.to_owned(),
            resource_type: "delivery".into(),
            resource_id: e.delivery.to_string(),
            payload: Protected::Clear(RawJson::from_value(&json!({
                "delivery_id": e.delivery,
                "webhook_id": e.webhook_id,
                "endpoint_id": e.endpoint,
                "event_type": e.event_type,
                "attempts": e.attempts,
                "last_response_status": e.last_status,
                "last_error": e.last_error,
            }))),
            occurred_at: at,
        }),
        other => super::lifecycle::deliverable(other, at),
    }
}

/// Whether `event_type` is one of hookforge's operational events about outbound delivery.
pub fn is_operational(event_type: &str) -> bool {
    event_type == EndpointDisabled::TYPE
        || event_type == DeliveryDeadLettered::TYPE
        || event_type == PING
}

/// A built-in event type, as `GET /api/v2/event_types/` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinType {
    /// Type name.
    pub name: &'static str,
    /// What it means.
    pub description: &'static str,
    /// An example payload, as JSON text.
    pub example: &'static str,
}

/// The built-in operational event types (the job and workflow lifecycle types are in
/// [`super::lifecycle::BUILTIN_TYPES`]).
pub const BUILTIN_TYPES: &[BuiltinType] = &[
    BuiltinType {
        name: "endpoint.disabled",
        description: "An outbound endpoint of the organization was disabled: its receiver answered 404 or 410, it failed continuously for outbound.disable_after_failing_hours, or an admin disabled it.",
        example: r#"{"endpoint_id": 7, "name": "ci-notifications", "reason": "endpoint answered 410: it no longer exists", "failing_since": null}"#,
    },
    BuiltinType {
        name: "delivery.dead_lettered",
        description: "A delivery to an outbound endpoint failed max_attempts times and was moved to the dead-letter state; redeliver it from the API once the receiver is fixed.",
        example: r#"{"delivery_id": 1042, "webhook_id": "msg_2b7c4c1f0e9a4f5b8d7e6c5b4a392817", "endpoint_id": 7, "event_type": "validation.completed", "attempts": 8, "last_response_status": 503, "last_error": "HTTP 503 Service Unavailable"}"#,
    },
    BuiltinType {
        name: PING,
        description: "A synthetic event sent by POST /api/v2/outbound_webhooks/{id}/test/ to check an endpoint.",
        example: r#"{"message": "This is a test delivery from hookforge.", "endpoint_id": 7}"#,
    },
];

/// Accepts a resource id given as a string or an integer.
fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(Option::<Id>::deserialize(deserializer)?.map(|id| match id {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    }))
}

/// Client input of `POST /api/v2/events/`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    /// Publishing organization (defaults to the caller's).
    pub organization: Option<u64>,
    /// Event type.
    pub event_type: Option<String>,
    /// Kind of resource.
    pub resource_type: Option<String>,
    /// Resource id, a string or an integer.
    #[serde(default, deserialize_with = "string_or_number")]
    pub resource_id: Option<String>,
    /// Any JSON value (default `{}`).
    pub payload: Option<Box<serde_json::value::RawValue>>,
    /// Repeating a key within 24 hours returns the first answer.
    pub idempotency_key: Option<String>,
}

/// Decides a publication by `organization` (already authorised).
pub fn publish(organization: u64, input: PublishInput) -> Result<EventPublished, DomainError> {
    let mut errors = FieldErrors::default();
    let event_type = input.event_type.unwrap_or_default();
    if event_type.is_empty() {
        errors.add("event_type", "This field is required.");
    } else if !valid_event_type(&event_type) {
        errors.add("event_type", "Use dot-separated letters, digits, _ and -, at most 128 characters (e.g. validation.completed).");
    } else if event_type == PING || RESERVED_PREFIXES.iter().any(|p| event_type.starts_with(p)) {
        errors.add("event_type", format!("{event_type:?} is reserved: hookforge emits ping, endpoint.*, delivery.*, job.* and workflow.* itself."));
    }
    let mut text = |field: &str, value: Option<String>| {
        let value = value.unwrap_or_default();
        if value.chars().count() > MAX_RESOURCE_LEN {
            errors.add(
                field,
                format!("Ensure this field has no more than {MAX_RESOURCE_LEN} characters."),
            );
        }
        value
    };
    let resource_type = text("resource_type", input.resource_type);
    let resource_id = text("resource_id", input.resource_id);
    if let Some(key) = &input.idempotency_key
        && (key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY)
    {
        errors.add(
            "idempotency_key",
            format!("Ensure this field has 1 to {MAX_IDEMPOTENCY_KEY} characters."),
        );
    }
    errors.into_result()?;
    let payload = input
        .payload
        .map_or_else(|| b"{}".to_vec(), |raw| raw.get().as_bytes().to_vec());
    Ok(EventPublished {
        organization,
        event_type,
        resource_type,
        resource_id,
        payload: Protected::Clear(RawJson(payload)),
        idempotency_key: input.idempotency_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Metadata;

    fn record(event: &Event, position: u64) -> RecordedEvent {
        let new = event.encode(Metadata::default());
        RecordedEvent {
            position,
            stream: "x-1".into(),
            revision: 0,
            event_type: new.event_type,
            schema_version: new.schema_version,
            recorded_at: 1_700_000_000_000_000,
            metadata: new.metadata,
            data: new.data.into(),
            compacted: false,
        }
    }

    fn input(value: serde_json::Value) -> PublishInput {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn publishing_keeps_the_payload_bytes_and_normalises_ids() {
        let body = r#"{"event_type": "validation.completed", "resource_type": "analysis", "resource_id": 42,
                       "payload": {"b": 1, "a": [true]}, "idempotency_key": "k1"}"#;
        let e = publish(3, serde_json::from_str(body).unwrap()).unwrap();
        assert_eq!(e.resource_id, "42");
        assert_eq!(
            e.payload.clear().unwrap().as_str(),
            Some(r#"{"b": 1, "a": [true]}"#),
            "byte-exact"
        );
        assert_eq!(e.idempotency_key.as_deref(), Some("k1"));
        let d = deliverable(&record(&e.clone().into(), 5)).unwrap();
        assert_eq!(
            (
                d.organization,
                d.event_type.as_str(),
                d.resource_id.as_str()
            ),
            (3, "validation.completed", "42")
        );
        let empty = publish(3, input(json!({"event_type": "a"}))).unwrap();
        assert_eq!(empty.payload.clear().unwrap().as_str(), Some("{}"));
    }

    #[test]
    fn invalid_and_reserved_types_are_refused() {
        for bad in [
            "",
            "a..b",
            "job.failed",
            "endpoint.disabled",
            "delivery.dead_lettered",
            "ping",
            "x.*",
        ] {
            let err = publish(1, input(json!({"event_type": bad}))).unwrap_err();
            assert!(
                matches!(err, DomainError::Invalid(ref f) if f.0.contains_key("event_type")),
                "{bad}"
            );
        }
        let long_key = publish(
            1,
            input(json!({"event_type": "a", "idempotency_key": "k".repeat(257)})),
        )
        .unwrap_err();
        assert!(
            matches!(long_key, DomainError::Invalid(ref f) if f.0.contains_key("idempotency_key"))
        );
    }

    #[test]
    fn operational_events_are_deliverable_but_do_not_loop() {
        let disabled = EndpointDisabled {
            id: 7,
            organization: 2,
            name: "ci".into(),
            reason: "gone".into(),
            failing_since: None,
        };
        let d = deliverable(&record(&disabled.into(), 1)).unwrap();
        assert_eq!(
            (
                d.event_type.as_str(),
                d.resource_id.as_str(),
                d.organization
            ),
            ("endpoint.disabled", "7", 2)
        );
        assert_eq!(d.payload.clear().unwrap().to_value()["reason"], "gone");
        let dead = |event_type: &str| DeliveryDeadLettered {
            endpoint: 7,
            organization: 2,
            delivery: 99,
            webhook_id: "msg_1".into(),
            event_type: event_type.into(),
            attempts: 8,
            last_status: Some(500),
            last_error: "HTTP 500".into(),
        };
        let d = deliverable(&record(&dead("build.done").into(), 2)).unwrap();
        assert_eq!(d.event_type, "delivery.dead_lettered");
        assert_eq!(
            d.payload.clear().unwrap().to_value()["event_type"],
            "build.done"
        );
        assert_eq!(
            deliverable(&record(&dead("delivery.dead_lettered").into(), 3)),
            None
        );
        assert_eq!(
            deliverable(&record(&dead("endpoint.disabled").into(), 3)),
            None
        );
        // Other event types are never decoded.
        let other = crate::domain::organization::OrganizationDeleted { id: 1 };
        let mut r = record(&other.into(), 4);
        assert_eq!(deliverable(&r), None);
        r.event_type = "event.published".into();
        assert_eq!(
            deliverable(&r),
            None,
            "undecodable bytes are not deliverable"
        );
    }

    #[test]
    fn v1_records_upcast_with_their_payload_in_the_clear() {
        let v1 = EventPublishedV1 {
            organization: 3,
            event_type: "build.done".into(),
            resource_type: String::new(),
            resource_id: "7".into(),
            payload: RawJson(b"{\"a\":1}".to_vec()),
            idempotency_key: None,
        };
        let e = EventPublished::upcast(1, &postcard::to_stdvec(&v1).unwrap()).unwrap();
        assert_eq!(e.payload, Protected::Clear(v1.payload));
        assert_eq!((e.organization, e.resource_id.as_str()), (3, "7"));
    }
}
