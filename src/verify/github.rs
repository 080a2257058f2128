//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(key, body)>`, or the legacy
//! `X-Hub-Signature: sha1=<hex HMAC-SHA1>` only when the SHA-256 header is absent.
//!
//! <https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>

use hmac::{KeyInit, Mac};
use http::HeaderMap;

use super::headers::{is_hex_of_len, matching_key, text};
use super::{Inbound, Scheme, Verified, VerifyError, signing};

const SHA256_HEADER: &str = "X-Hub-Signature-256";
const SHA256_SHAPE: &str = "sha256=<64 hex digits>";
const SHA1_HEADER: &str = "X-Hub-Signature";
const SHA1_SHAPE: &str = "sha1=<40 hex digits>";

/// GitHub's webhook signature scheme (and anything GitHub-compatible, e.g. Gitea's `X-Hub-Signature-256`).
pub struct Github;

impl Scheme for Github {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(SHA256_HEADER) || headers.contains_key(SHA1_HEADER)
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        if let Some(value) = text(inbound.headers, SHA256_HEADER, SHA256_SHAPE)? {
            let mac = value
                .strip_prefix("sha256=")
                .filter(|hex| is_hex_of_len(hex, 32))
                .ok_or(VerifyError::MalformedHeader {
                    header: SHA256_HEADER,
                    expected: SHA256_SHAPE,
                })?;
            return matching_key(keys, |key| {
                signing::verify_hmac_sha256_hex(key.as_bytes(), inbound.body, mac)
            })
            .map(|index| Verified::with_key("github-sha256", index))
            .ok_or(VerifyError::SignatureMismatch {
                header: SHA256_HEADER,
            });
        }
        let Some(value) = text(inbound.headers, SHA1_HEADER, SHA1_SHAPE)? else {
            return Err(VerifyError::MissingHeader(SHA256_HEADER));
        };
        let mac = value
            .strip_prefix("sha1=")
            .filter(|hex| is_hex_of_len(hex, 20))
            .and_then(|hex| hex::decode(hex).ok())
            .ok_or(VerifyError::MalformedHeader {
                header: SHA1_HEADER,
                expected: SHA1_SHAPE,
            })?;
        matching_key(keys, |key| {
            hmac_sha1_matches(key.as_bytes(), inbound.body, &mac)
        })
        .map(|index| Verified::with_key("github-sha1", index))
        .ok_or(VerifyError::SignatureMismatch {
            header: SHA1_HEADER,
        })
    }
}

/// Whether `mac` is HMAC-SHA1(key, body); `verify_slice` compares in constant time.
fn hmac_sha1_matches(key: &[u8], body: &[u8], mac: &[u8]) -> bool {
    let mut hmac =
        hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    hmac.update(body);
    hmac.verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{at, headers};

    // GitHub's documented example:
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIG256: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn check(pairs: &[(&str, &str)], keys: &[&str]) -> Result<Verified, VerifyError> {
        Github.verify(&at(&headers(pairs), BODY, 0), keys)
    }

    #[test]
    fn documented_example_verifies() {
        let verified = check(&[("X-Hub-Signature-256", SIG256)], &[SECRET]).unwrap();
        assert_eq!(verified, Verified::with_key("github-sha256", 0));
    }

    #[test]
    fn second_key_is_accepted_during_rotation() {
        let verified = check(&[("x-hub-signature-256", SIG256)], &["new-key", SECRET]).unwrap();
        assert_eq!(verified.key_index, Some(1));
    }

    #[test]
    fn wrong_key_or_body_is_a_mismatch() {
        let err = check(&[("X-Hub-Signature-256", SIG256)], &["not the secret"]).unwrap_err();
        assert_eq!(
            err,
            VerifyError::SignatureMismatch {
                header: SHA256_HEADER
            }
        );
        assert_eq!(
            err.to_string(),
            "signature does not match (X-Hub-Signature-256)"
        );
        let signed = headers(&[("X-Hub-Signature-256", SIG256)]);
        let other_body = at(&signed, b"Hello, World?", 0);
        assert!(Github.verify(&other_body, &[SECRET]).is_err());
    }

    #[test]
    fn missing_header_is_named() {
        let err = check(&[("X-GitHub-Event", "push")], &[SECRET]).unwrap_err();
        assert_eq!(err.to_string(), "missing X-Hub-Signature-256 header");
    }

    #[test]
    fn garbled_headers_are_malformed() {
        for garbled in [
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            let err = check(&[("X-Hub-Signature-256", garbled)], &[SECRET]).unwrap_err();
            assert_eq!(
                err.to_string(),
                "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)"
            );
        }
    }

    #[test]
    fn legacy_sha1_is_used_only_without_the_sha256_header() {
        // openssl dgst -sha1 -hmac "It's a Secret to Everybody" <<< -n "Hello, World!"
        let sha1 = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";
        let verified = check(&[("X-Hub-Signature", sha1)], &["other", SECRET]).unwrap();
        assert_eq!(verified, Verified::with_key("github-sha1", 1));
        // A wrong SHA-256 header is not rescued by a valid SHA-1 one.
        let bad256 = "sha256=0000000000000000000000000000000000000000000000000000000000000000";
        let err = check(
            &[("X-Hub-Signature-256", bad256), ("X-Hub-Signature", sha1)],
            &[SECRET],
        )
        .unwrap_err();
        assert_eq!(
            err,
            VerifyError::SignatureMismatch {
                header: SHA256_HEADER
            }
        );
        let err = check(&[("X-Hub-Signature", "sha1=xyz")], &[SECRET]).unwrap_err();
        assert!(matches!(
            err,
            VerifyError::MalformedHeader {
                header: SHA1_HEADER,
                ..
            }
        ));
        let err = check(&[("X-Hub-Signature", sha1)], &["wrong"]).unwrap_err();
        assert_eq!(
            err,
            VerifyError::SignatureMismatch {
                header: SHA1_HEADER
            }
        );
    }
}
