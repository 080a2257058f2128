//! The headers of an outbound delivery (DESIGN.md section 5), as a pure function.
//!
//! Two signatures travel together so receivers can use either: `X-Forge-Signature`, an HMAC
//! under the secret's UTF-8 bytes that `openssl dgst -sha256 -hmac "$SECRET"` reproduces, and
//! the Standard Webhooks set (`webhook-id`, `webhook-timestamp`, `webhook-signature`) that the
//! Standard Webhooks libraries verify. Primitives come from [`crate::signing`].

use reqwest::header::{HeaderName, HeaderValue};

use crate::signing::{hmac_sha256_hex, standard_webhooks_key, standard_webhooks_signature};

/// `X-Forge-Event`: the event type.
pub const X_FORGE_EVENT: HeaderName = HeaderName::from_static("x-forge-event");
/// `X-Forge-Delivery`: the delivery id, the same on every attempt.
pub const X_FORGE_DELIVERY: HeaderName = HeaderName::from_static("x-forge-delivery");
/// `X-Forge-Timestamp`: unix seconds when the attempt was signed.
pub const X_FORGE_TIMESTAMP: HeaderName = HeaderName::from_static("x-forge-timestamp");
/// `X-Forge-Signature: sha256=<hex>` under the newest secret.
pub const X_FORGE_SIGNATURE: HeaderName = HeaderName::from_static("x-forge-signature");
/// Standard Webhooks `webhook-id`: the delivery id.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// Standard Webhooks `webhook-timestamp`: unix seconds, signed together with the id and body.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// Standard Webhooks `webhook-signature`: `v1,<base64>` per valid secret, space-separated.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Longest custom header value accepted, in bytes; receivers commonly reject 8 KiB header blocks.
pub const MAX_CUSTOM_HEADER_VALUE: usize = 4096;

/// Header names an endpoint may not set: hookforge's own, and those that frame the HTTP message.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "user-agent",
];

/// Prefixes reserved for signature, id and timestamp headers, present and future.
const RESERVED_PREFIXES: &[&str] = &["x-forge-", "webhook-"];

/// Why the outbound headers cannot be built or a custom header is refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// Signing needs at least one secret.
    #[error("endpoint has no signing secret")]
    NoSecret,
    /// The name is not a valid HTTP header name.
    #[error("{name:?} is not a valid HTTP header name")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// The name belongs to hookforge or to HTTP framing.
    #[error("header {name} is set by hookforge and cannot be overridden")]
    Reserved {
        /// The refused name, lower-cased.
        name: String,
    },
    /// The value has characters a header cannot carry.
    #[error("value of header {name} must be visible ASCII (no control characters or line breaks)")]
    InvalidValue {
        /// The header whose value is refused.
        name: String,
    },
    /// The value is longer than [`MAX_CUSTOM_HEADER_VALUE`].
    #[error("value of header {name} is longer than {MAX_CUSTOM_HEADER_VALUE} bytes")]
    TooLong {
        /// The header whose value is refused.
        name: String,
    },
}

/// Checks one custom header of an endpoint and returns it in wire form.
///
/// Called when an endpoint is created or updated, so a bad header is a 400 there rather than a
/// failed delivery later. Refuses names hookforge sets itself (signature, id, timestamp,
/// content type, user agent, anything starting `x-forge-` or `webhook-`) and names that frame the
/// message (`host`, `content-length`, ...). Values are marked sensitive: they often carry tokens.
pub fn validate_custom_header(
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), HeaderError> {
    let header =
        HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| HeaderError::InvalidName {
            name: name.to_owned(),
        })?;
    let lower = header.as_str();
    if RESERVED.contains(&lower) || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return Err(HeaderError::Reserved {
            name: lower.to_owned(),
        });
    }
    if value.len() > MAX_CUSTOM_HEADER_VALUE {
        return Err(HeaderError::TooLong {
            name: lower.to_owned(),
        });
    }
    let mut value = HeaderValue::from_str(value).map_err(|_| HeaderError::InvalidValue {
        name: lower.to_owned(),
    })?;
    value.set_sensitive(true);
    Ok((header, value))
}

fn value(name: &HeaderName, text: &str) -> Result<HeaderValue, HeaderError> {
    HeaderValue::from_str(text).map_err(|_| HeaderError::InvalidValue {
        name: name.as_str().to_owned(),
    })
}

/// All headers of one delivery attempt, in a stable order, custom headers last.
///
/// `secrets` are the endpoint's valid secrets, newest first: `X-Forge-Signature` uses the newest
/// (UTF-8 bytes), `webhook-signature` carries one `v1,` entry per secret (Standard Webhooks key)
/// so receivers still holding an older secret verify during a rotation. `timestamp` is unix
/// seconds and `delivery_id` stays the same on every attempt, so receivers can deduplicate.
pub fn signed_headers(
    event_type: &str,
    delivery_id: &str,
    timestamp: i64,
    body: &[u8],
    secrets: &[&str],
    custom: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, HeaderError> {
    let newest = secrets.first().ok_or(HeaderError::NoSecret)?;
    let forge_signature = format!("sha256={}", hmac_sha256_hex(newest.as_bytes(), body));
    let webhook_signature = secrets
        .iter()
        .map(|secret| {
            let key = standard_webhooks_key(secret);
            format!(
                "v1,{}",
                standard_webhooks_signature(&key, delivery_id, timestamp, body)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let timestamp = timestamp.to_string();
    let user_agent = concat!("hookforge/", env!("CARGO_PKG_VERSION"));

    let mut headers = Vec::with_capacity(9 + custom.len());
    headers.push((
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    headers.push((
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(user_agent),
    ));
    for (name, text) in [
        (X_FORGE_EVENT, event_type),
        (X_FORGE_DELIVERY, delivery_id),
        (X_FORGE_TIMESTAMP, &timestamp),
        (X_FORGE_SIGNATURE, &forge_signature),
        (WEBHOOK_ID, delivery_id),
        (WEBHOOK_TIMESTAMP, &timestamp),
        (WEBHOOK_SIGNATURE, &webhook_signature),
    ] {
        let value = value(&name, text)?;
        headers.push((name, value));
    }
    for (name, text) in custom {
        headers.push(validate_custom_header(name, text)?);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use hmac::{KeyInit, Mac};

    /// Independent HMAC-SHA256, so the test does not trust the code under test's primitives.
    fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }

    fn get<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> &'a str {
        let mut found = headers.iter().filter(|(n, _)| n.as_str() == name);
        let (_, value) = found.next().unwrap_or_else(|| panic!("missing {name}"));
        assert!(found.next().is_none(), "{name} appears twice");
        value.to_str().unwrap()
    }

    #[test]
    fn headers_carry_both_signatures_verified_independently() {
        let body = br#"{"event":"push","payload":{"ref":"refs/heads/main"}}"#;
        let newest = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let older = "plain old secret";
        let custom = vec![("Authorization".to_owned(), "Bearer t0k3n".to_owned())];
        let headers = signed_headers(
            "push",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &[newest, older],
            &custom,
        )
        .unwrap();

        assert_eq!(get(&headers, "content-type"), "application/json");
        assert_eq!(
            get(&headers, "user-agent"),
            format!("hookforge/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(get(&headers, "x-forge-event"), "push");
        assert_eq!(
            get(&headers, "x-forge-delivery"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek"
        );
        assert_eq!(get(&headers, "webhook-id"), "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(get(&headers, "x-forge-timestamp"), "1614265330");
        assert_eq!(get(&headers, "webhook-timestamp"), "1614265330");
        assert_eq!(get(&headers, "authorization"), "Bearer t0k3n");

        // X-Forge-Signature: HMAC under the newest secret's UTF-8 bytes, prefix and all.
        let expected = format!("sha256={}", hex::encode(hmac(newest.as_bytes(), &[body])));
        assert_eq!(get(&headers, "x-forge-signature"), expected);

        // webhook-signature: one entry per secret, newest first, keys per Standard Webhooks.
        let newest_key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signed = |key: &[u8]| {
            BASE64.encode(hmac(
                key,
                &[b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.", body],
            ))
        };
        let expected = format!("v1,{} v1,{}", signed(&newest_key), signed(older.as_bytes()));
        assert_eq!(get(&headers, "webhook-signature"), expected);
        assert_eq!(headers.len(), 10);
        assert_eq!(headers.last().unwrap().0.as_str(), "authorization");
        assert!(headers.last().unwrap().1.is_sensitive());
    }

    #[test]
    fn standard_webhooks_library_vector_through_the_headers() {
        // Vector from the standard-webhooks libraries' test suites (also in crate::signing).
        let headers = signed_headers(
            "test",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            &[],
        )
        .unwrap();
        assert_eq!(
            get(&headers, "webhook-signature"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn forge_signature_matches_the_openssl_example() {
        // GitHub's documented vector: the same sha256=<hex HMAC(UTF-8 secret, body)> format.
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        let headers = signed_headers(
            "ping",
            "d1",
            0,
            b"Hello, World!",
            &["It's a Secret to Everybody"],
            &[],
        )
        .unwrap();
        assert_eq!(
            get(&headers, "x-forge-signature"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn signing_needs_a_secret_and_header_safe_values() {
        assert!(matches!(
            signed_headers("e", "d", 1, b"{}", &[], &[]),
            Err(HeaderError::NoSecret)
        ));
        let err = signed_headers("bad\nevent", "d", 1, b"{}", &["s"], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value of header x-forge-event must be visible ASCII (no control characters or line breaks)"
        );
        let custom = vec![("X-Forge-Signature".to_owned(), "sha256=forged".to_owned())];
        assert!(matches!(
            signed_headers("e", "d", 1, b"{}", &["s"], &custom),
            Err(HeaderError::Reserved { .. })
        ));
    }

    #[test]
    fn custom_headers_cannot_override_reserved_names() {
        for name in [
            "Content-Type",
            "content-length",
            "Host",
            "Transfer-Encoding",
            "User-Agent",
            "X-Forge-Signature",
            "x-forge-delivery",
            "X-Forge-Timestamp",
            "X-Forge-Event",
            "X-Forge-Anything-New",
            "Webhook-Id",
            "webhook-signature",
            "WEBHOOK-TIMESTAMP",
        ] {
            let err = validate_custom_header(name, "x").unwrap_err();
            assert!(matches!(err, HeaderError::Reserved { .. }), "{name}");
            assert_eq!(
                err.to_string(),
                format!(
                    "header {} is set by hookforge and cannot be overridden",
                    name.to_ascii_lowercase()
                )
            );
        }
    }

    #[test]
    fn custom_header_names_and_values_are_checked() {
        let (name, value) = validate_custom_header("X-Tenant", "acme-42").unwrap();
        assert_eq!(name.as_str(), "x-tenant");
        assert_eq!(value.to_str().unwrap(), "acme-42");
        assert!(matches!(
            validate_custom_header("bad name", "x"),
            Err(HeaderError::InvalidName { .. })
        ));
        assert!(matches!(
            validate_custom_header("", "x"),
            Err(HeaderError::InvalidName { .. })
        ));
        assert!(matches!(
            validate_custom_header("X-Injected", "a\r\nX-Forge-Signature: forged"),
            Err(HeaderError::InvalidValue { .. })
        ));
        assert!(matches!(
            validate_custom_header("X-Big", &"a".repeat(MAX_CUSTOM_HEADER_VALUE + 1)),
            Err(HeaderError::TooLong { .. })
        ));
        validate_custom_header("X-Big", &"a".repeat(MAX_CUSTOM_HEADER_VALUE)).unwrap();
    }
}
