//! The JSON body of an outbound delivery (DESIGN.md section 5).
//!
//! The event's payload is embedded as raw JSON: its bytes were validated when the event was
//! ingested, so they are copied into the body verbatim instead of parsed and re-serialised,
//! which keeps the payload byte-exact and saves a parse per delivery.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Why an envelope could not be built or encoded.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The stored payload is not a JSON document.
    #[error("event payload is not valid JSON: {0}")]
    InvalidPayload(#[source] serde_json::Error),
    /// Serialisation failed (not expected for these field types).
    #[error("could not encode the delivery body: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The outbound envelope: `{"event", "delivery_id", "organization_id", "resource_type",
/// "resource_id", "payload", "occurred_at"}`.
///
/// Generic over the payload holder so a dispatcher can borrow the journal's bytes
/// (`Envelope<&RawValue>`) and a receiver-side test can own them (`Envelope<Box<RawValue>>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<P = Box<RawValue>> {
    /// The event type, as in `X-Forge-Event`.
    pub event: String,
    /// The delivery id, as in `X-Forge-Delivery` and `webhook-id`.
    pub delivery_id: String,
    /// The organization that owns the endpoint (a JSON number).
    #[serde(serialize_with = "id_json", deserialize_with = "id_text")]
    pub organization_id: String,
    /// What kind of resource produced the event (for example a source or a rule).
    pub resource_type: String,
    /// The id of that resource: a JSON number when it is a canonical integer (hookforge's own
    /// ids, so that a filter can say `event.resource_id == 7`), a string otherwise.
    #[serde(serialize_with = "id_json", deserialize_with = "id_text")]
    pub resource_id: String,
    /// The event's JSON payload, verbatim.
    pub payload: P,
    /// When the event happened (RFC 3339, UTC).
    pub occurred_at: DateTime<Utc>,
}

/// Checks that `bytes` is one JSON document and wraps it without copying.
///
/// The document's bytes are kept exactly (serde_json's raw values are); only whitespace
/// around it is dropped.
pub fn raw_payload(bytes: &[u8]) -> Result<&RawValue, EnvelopeError> {
    serde_json::from_slice(bytes).map_err(EnvelopeError::InvalidPayload)
}

/// Writes an id as a number when it is a canonical unsigned integer, else as a string.
fn id_json<S: serde::Serializer>(id: &str, serializer: S) -> Result<S::Ok, S::Error> {
    match id.parse::<u64>() {
        Ok(n) if n.to_string() == id => serializer.serialize_u64(n),
        _ => serializer.serialize_str(id),
    }
}

/// Reads an id written by [`id_json`] back as text.
fn id_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Number(n) => n.to_string(),
        Id::Text(s) => s,
    })
}

impl<P: Serialize> Envelope<P> {
    /// The request body: the envelope as compact JSON bytes, the payload copied verbatim.
    pub fn to_body(&self) -> Result<Vec<u8>, EnvelopeError> {
        serde_json::to_vec(self).map_err(EnvelopeError::Encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occurred() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-04T05:06:07.123Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn payload_bytes_pass_through_verbatim() {
        // Key order, spacing and number spelling survive because the payload is not re-parsed.
        let stored = br#"{"z": 1, "a": [1.50, 2e3], "big": 12345678901234567890123}"#;
        let envelope = Envelope {
            event: "push".into(),
            delivery_id: "dlv_1".into(),
            organization_id: "org_1".into(),
            resource_type: "source".into(),
            resource_id: "src_1".into(),
            payload: raw_payload(stored).unwrap(),
            occurred_at: occurred(),
        };
        let body = String::from_utf8(envelope.to_body().unwrap()).unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"event":"push","delivery_id":"dlv_1","organization_id":"org_1","#,
                r#""resource_type":"source","resource_id":"src_1","#,
                r#""payload":{"z": 1, "a": [1.50, 2e3], "big": 12345678901234567890123},"#,
                r#""occurred_at":"2025-03-04T05:06:07.123Z"}"#
            )
        );
        let back: Envelope = serde_json::from_str(&body).unwrap();
        assert_eq!(back.payload.get(), std::str::from_utf8(stored).unwrap());
        assert_eq!(back.occurred_at, occurred());
        assert_eq!(back.event, "push");
    }

    #[test]
    fn invalid_payloads_are_refused() {
        for bad in [&b""[..], b"{", b"{} {}", b"\xff"] {
            assert!(
                matches!(raw_payload(bad), Err(EnvelopeError::InvalidPayload(_))),
                "{bad:?}"
            );
        }
        assert_eq!(raw_payload(b" [1] ").unwrap().get(), "[1]");
    }
}
