//! The two signature schemes hookforge documents for any sender (and uses itself outbound):
//!
//! - `X-Forge-Signature: sha256=<hex HMAC-SHA256(key, body)>`, key = the key string's UTF-8 bytes
//!   (what `openssl dgst -sha256 -hmac "$KEY"` computes);
//! - the same with `X-Forge-Timestamp: <Unix seconds>` and the HMAC over `"{timestamp}.{body}"`
//!   (as hookforge's own outbound and Stripe sign), refused outside [`TOLERANCE_SECS`]: a
//!   captured request cannot be replayed later. A timestamp sent beside a body-only signature
//!   (older senders) verifies as the plain scheme;
//! - Standard Webhooks (<https://www.standardwebhooks.com/>): `webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,<base64>[ v1,<base64>…]` over `"{id}.{timestamp}.{body}"`, key =
//!   base64-decoded after `whsec_` (see [`signing::standard_webhooks_key`]), with a replay window
//!   of [`TOLERANCE_SECS`] either way.

use http::HeaderMap;

use super::headers::{is_hex_of_len, matching_key, required};
use super::{Inbound, Scheme, Verified, VerifyError, signing};

/// How far `webhook-timestamp` may be from the server clock, either way, in seconds.
pub const TOLERANCE_SECS: u64 = 300;

const FORGE_HEADER: &str = "X-Forge-Signature";
const FORGE_TIMESTAMP_HEADER: &str = "X-Forge-Timestamp";
const FORGE_SHAPE: &str = "sha256=<64 hex digits>";
const ID_HEADER: &str = "webhook-id";
const TIMESTAMP_HEADER: &str = "webhook-timestamp";
const SIGNATURE_HEADER: &str = "webhook-signature";
const SIGNATURE_SHAPE: &str = "space-separated v1,<base64> entries";

/// The scheme name of a verified `X-Forge-Timestamp` signature.
pub const TIMESTAMPED: &str = "forge-sha256-timestamped";

/// `X-Forge-Signature: sha256=<hex>`, optionally with `X-Forge-Timestamp`.
pub struct ForgeSignature;

impl Scheme for ForgeSignature {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(FORGE_HEADER)
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        let malformed = VerifyError::MalformedHeader {
            header: FORGE_HEADER,
            expected: FORGE_SHAPE,
        };
        let mac = required(inbound.headers, FORGE_HEADER, FORGE_SHAPE)?
            .strip_prefix("sha256=")
            .filter(|hex| is_hex_of_len(hex, 32))
            .ok_or(malformed)?;
        if let Some(timestamp) = inbound.headers.get(FORGE_TIMESTAMP_HEADER) {
            let timestamp = timestamp
                .to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .ok_or(VerifyError::MalformedHeader {
                    header: FORGE_TIMESTAMP_HEADER,
                    expected: "integer Unix seconds",
                })?;
            let mut signed = format!("{timestamp}.").into_bytes();
            signed.extend_from_slice(inbound.body);
            if let Some(index) = matching_key(keys, |key| {
                signing::verify_hmac_sha256_hex(key.as_bytes(), &signed, mac)
            }) {
                let skew_secs = inbound.now.timestamp().abs_diff(timestamp);
                if skew_secs > TOLERANCE_SECS {
                    return Err(VerifyError::TimestampOutOfTolerance {
                        skew_secs,
                        tolerance_secs: TOLERANCE_SECS,
                    });
                }
                return Ok(Verified::with_key(TIMESTAMPED, index));
            }
        }
        matching_key(keys, |key| {
            signing::verify_hmac_sha256_hex(key.as_bytes(), inbound.body, mac)
        })
        .map(|index| Verified::with_key("forge-sha256", index))
        .ok_or(VerifyError::SignatureMismatch {
            header: FORGE_HEADER,
        })
    }
}

/// Standard Webhooks signatures, present when any of the three `webhook-*` headers is sent.
pub struct StandardWebhooks;

impl Scheme for StandardWebhooks {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER]
            .iter()
            .any(|name| headers.contains_key(*name))
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        let headers = inbound.headers;
        let id = required(headers, ID_HEADER, "a message id")?;
        let timestamp = required(headers, TIMESTAMP_HEADER, "integer Unix seconds")?
            .parse::<i64>()
            .map_err(|_| VerifyError::MalformedHeader {
                header: TIMESTAMP_HEADER,
                expected: "integer Unix seconds",
            })?;
        let signatures = required(headers, SIGNATURE_HEADER, SIGNATURE_SHAPE)?;
        if id.is_empty() {
            return Err(VerifyError::MalformedHeader {
                header: ID_HEADER,
                expected: "a message id",
            });
        }
        if !signatures
            .split_whitespace()
            .any(|entry| entry.starts_with("v1,"))
        {
            return Err(VerifyError::MalformedHeader {
                header: SIGNATURE_HEADER,
                expected: SIGNATURE_SHAPE,
            });
        }
        let skew_secs = inbound.now.timestamp().abs_diff(timestamp);
        if skew_secs > TOLERANCE_SECS {
            return Err(VerifyError::TimestampOutOfTolerance {
                skew_secs,
                tolerance_secs: TOLERANCE_SECS,
            });
        }
        matching_key(keys, |key| {
            signing::verify_standard_webhooks(
                &signing::standard_webhooks_key(key),
                id,
                timestamp,
                inbound.body,
                signatures,
            )
        })
        .map(|index| Verified::with_key("standard-webhooks", index))
        .ok_or(VerifyError::SignatureMismatch {
            header: SIGNATURE_HEADER,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{at, headers};

    // Standard Webhooks library test vector (standard-webhooks/standard-webhooks, libraries'
    // shared test suite).
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TIMESTAMP: i64 = 1614265330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn timestamped_forge_signatures_verify_within_the_tolerance_only() {
        let key = "forge-key-0123456789";
        let body = br#"{"a":1}"#;
        let sign = |ts: i64| {
            let mut signed = format!("{ts}.").into_bytes();
            signed.extend_from_slice(body);
            format!(
                "sha256={}",
                signing::hmac_sha256_hex(key.as_bytes(), &signed)
            )
        };
        let request = |ts: &str, signature: &str| {
            headers(&[("X-Forge-Timestamp", ts), ("X-Forge-Signature", signature)])
        };
        let now = 1_700_000_000;
        let fresh = request("1700000100", &sign(1_700_000_100));
        let verified = ForgeSignature
            .verify(&at(&fresh, body, now), &[key])
            .unwrap();
        assert_eq!(verified.scheme, TIMESTAMPED);
        let stale = request("1699999000", &sign(1_699_999_000));
        assert!(matches!(
            ForgeSignature.verify(&at(&stale, body, now), &[key]),
            Err(VerifyError::TimestampOutOfTolerance {
                skew_secs: 1000,
                ..
            })
        ));
        // The timestamp is signed: changing it breaks the signature.
        let moved = request("1700000000", &sign(1_699_999_000));
        assert!(matches!(
            ForgeSignature.verify(&at(&moved, body, now), &[key]),
            Err(VerifyError::SignatureMismatch { .. })
        ));
        // A body-only signature sent with a timestamp (older senders) is the plain scheme.
        let plain = format!("sha256={}", signing::hmac_sha256_hex(key.as_bytes(), body));
        let old = request("5", &plain);
        let verified = ForgeSignature.verify(&at(&old, body, now), &[key]).unwrap();
        assert_eq!(verified.scheme, "forge-sha256");
        let junk = request("soon", &plain);
        assert!(matches!(
            ForgeSignature.verify(&at(&junk, body, now), &[key]),
            Err(VerifyError::MalformedHeader {
                header: "X-Forge-Timestamp",
                ..
            })
        ));
    }

    fn sw_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", signature),
        ])
    }

    fn sw_check(h: &HeaderMap, now: i64, keys: &[&str]) -> Result<Verified, VerifyError> {
        StandardWebhooks.verify(&at(h, SW_BODY, now), keys)
    }

    #[test]
    fn standard_webhooks_vector_verifies_inside_the_tolerance() {
        let h = sw_headers(SW_SIGNATURE);
        for now in [SW_TIMESTAMP, SW_TIMESTAMP - 300, SW_TIMESTAMP + 300] {
            let verified = sw_check(&h, now, &[SW_SECRET]).unwrap();
            assert_eq!(verified, Verified::with_key("standard-webhooks", 0));
        }
    }

    #[test]
    fn standard_webhooks_outside_the_tolerance_is_a_replay_either_way() {
        let h = sw_headers(SW_SIGNATURE);
        let err = sw_check(&h, SW_TIMESTAMP + 412, &[SW_SECRET]).unwrap_err();
        assert_eq!(
            err,
            VerifyError::TimestampOutOfTolerance {
                skew_secs: 412,
                tolerance_secs: 300
            }
        );
        assert_eq!(
            err.to_string(),
            "webhook-timestamp is 412 s from server time (tolerance 300 s)"
        );
        let err = sw_check(&h, SW_TIMESTAMP - 301, &[SW_SECRET]).unwrap_err();
        assert!(matches!(
            err,
            VerifyError::TimestampOutOfTolerance { skew_secs: 301, .. }
        ));
    }

    #[test]
    fn standard_webhooks_accepts_any_listed_signature_and_the_second_key() {
        let h = sw_headers(&format!("v1,bm90IGl0 {SW_SIGNATURE}"));
        let verified = sw_check(&h, SW_TIMESTAMP, &["whsec_b3RoZXI=", SW_SECRET]).unwrap();
        assert_eq!(verified.key_index, Some(1));
    }

    #[test]
    fn standard_webhooks_wrong_key_or_tampered_id_is_a_mismatch() {
        let err = sw_check(&sw_headers(SW_SIGNATURE), SW_TIMESTAMP, &["whsec_b3RoZXI="]);
        assert_eq!(
            err.unwrap_err().to_string(),
            "signature does not match (webhook-signature)"
        );
        let tampered = headers(&[
            ("webhook-id", "msg_other"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", SW_SIGNATURE),
        ]);
        assert!(sw_check(&tampered, SW_TIMESTAMP, &[SW_SECRET]).is_err());
    }

    #[test]
    fn standard_webhooks_missing_or_garbled_headers_are_named() {
        let partial = headers(&[("webhook-id", SW_ID), ("webhook-signature", SW_SIGNATURE)]);
        let err = sw_check(&partial, SW_TIMESTAMP, &[SW_SECRET]).unwrap_err();
        assert_eq!(err.to_string(), "missing webhook-timestamp header");

        let bad_ts = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", "2021-02-23T21:02:10Z"),
            ("webhook-signature", SW_SIGNATURE),
        ]);
        let err = sw_check(&bad_ts, SW_TIMESTAMP, &[SW_SECRET]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed webhook-timestamp header (expected integer Unix seconds)"
        );

        let err = sw_check(&sw_headers("g0hM9SsE+OTPJTGt"), SW_TIMESTAMP, &[SW_SECRET]);
        assert_eq!(
            err.unwrap_err().to_string(),
            "malformed webhook-signature header (expected space-separated v1,<base64> entries)"
        );
    }

    // GitHub's documented HMAC example, which is exactly what X-Forge-Signature carries:
    // printf 'Hello, World!' | openssl dgst -sha256 -hmac "It's a Secret to Everybody"
    const FORGE_KEY: &str = "It's a Secret to Everybody";
    const FORGE_BODY: &[u8] = b"Hello, World!";
    const FORGE_SIG: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn forge_check(value: &str, keys: &[&str]) -> Result<Verified, VerifyError> {
        ForgeSignature.verify(&at(&headers(&[(FORGE_HEADER, value)]), FORGE_BODY, 0), keys)
    }

    #[test]
    fn forge_signature_verifies_with_either_key() {
        assert_eq!(
            forge_check(FORGE_SIG, &[FORGE_KEY]).unwrap(),
            Verified::with_key("forge-sha256", 0)
        );
        assert_eq!(
            forge_check(FORGE_SIG, &["new", FORGE_KEY])
                .unwrap()
                .key_index,
            Some(1)
        );
    }

    #[test]
    fn forge_signature_failures_are_precise() {
        assert_eq!(
            forge_check(FORGE_SIG, &["wrong"]).unwrap_err().to_string(),
            "signature does not match (X-Forge-Signature)"
        );
        assert_eq!(
            forge_check(&FORGE_SIG[7..], &[FORGE_KEY])
                .unwrap_err()
                .to_string(),
            "malformed X-Forge-Signature header (expected sha256=<64 hex digits>)"
        );
        let err = ForgeSignature
            .verify(&at(&HeaderMap::new(), FORGE_BODY, 0), &[FORGE_KEY])
            .unwrap_err();
        assert_eq!(err, VerifyError::MissingHeader(FORGE_HEADER));
    }
}
