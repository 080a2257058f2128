//! Signature primitives shared by inbound verification and outbound delivery.
//!
//! Key bytes follow the senders' conventions: plain HMAC schemes use the key string's UTF-8
//! bytes (what `openssl dgst -sha256 -hmac "$KEY"` does); Standard Webhooks uses the
//! base64-decoded bytes after a `whsec_` prefix, or the UTF-8 bytes of a key without it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex HMAC-SHA256, as in `X-Forge-Signature: sha256=<hex>` and GitHub's header.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha256(key, message))
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Whether `hex_mac` (any case) is the HMAC-SHA256 of `message` under `key`, in constant time.
pub fn verify_hmac_sha256_hex(key: &[u8], message: &[u8], hex_mac: &str) -> bool {
    match hex::decode(hex_mac.trim()) {
        Ok(given) => constant_time_eq(&hmac_sha256(key, message), &given),
        Err(_) => false,
    }
}

/// The HMAC key bytes of a Standard Webhooks secret: base64 after `whsec_`, else UTF-8 bytes.
pub fn standard_webhooks_key(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64
            .decode(encoded)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// A Standard Webhooks signature: base64 of HMAC-SHA256 over `"{id}.{timestamp}.{body}"`.
pub fn standard_webhooks_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether any `v1,<base64>` entry of a space-separated `webhook-signature` header matches.
pub fn verify_standard_webhooks(
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = standard_webhooks_signature(key, id, timestamp, body);
    header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|given| constant_time_eq(expected.as_bytes(), given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_example() {
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
        let mac = hmac_sha256_hex(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            mac,
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(verify_hmac_sha256_hex(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &mac.to_uppercase()
        ));
        assert!(!verify_hmac_sha256_hex(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            &mac
        ));
        assert!(!verify_hmac_sha256_hex(b"key", b"m", "not hex"));
    }

    #[test]
    fn standard_webhooks_library_vector() {
        // From standard-webhooks/standard-webhooks libraries' test suites.
        let key = standard_webhooks_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let sig =
            standard_webhooks_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let header = format!("v1,bad v1,{sig}");
        assert!(verify_standard_webhooks(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &header
        ));
        assert!(!verify_standard_webhooks(
            &key,
            "msg_other",
            1614265330,
            body,
            &header
        ));
        assert!(!verify_standard_webhooks(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            body,
            &header
        ));
    }

    #[test]
    fn keys_without_the_prefix_are_utf8() {
        assert_eq!(
            standard_webhooks_key("plain-secret"),
            b"plain-secret".to_vec()
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
