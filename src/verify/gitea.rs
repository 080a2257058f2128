//! Gitea, Forgejo and Gogs: `X-Gitea-Signature` (or `X-Forgejo-Signature`, `X-Gogs-Signature`)
//! carries the bare hex HMAC-SHA256 of the body, without a `sha256=` prefix.
//!
//! <https://docs.gitea.com/usage/webhooks>, <https://forgejo.org/docs/latest/user/webhooks/>

use http::HeaderMap;

use super::headers::{is_hex_of_len, matching_key, text};
use super::{Inbound, Scheme, Verified, VerifyError, signing};

/// Signature headers in order of preference; Forgejo and Gitea send several with the same value.
const HEADERS: [&str; 3] = [
    "X-Gitea-Signature",
    "X-Forgejo-Signature",
    "X-Gogs-Signature",
];
const SHAPE: &str = "<64 hex digits>";

/// The Gitea family's webhook signature scheme.
pub struct Gitea;

impl Scheme for Gitea {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        HEADERS.iter().any(|name| headers.contains_key(*name))
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        let header = HEADERS
            .into_iter()
            .find(|name| inbound.headers.contains_key(*name))
            .ok_or(VerifyError::MissingHeader(HEADERS[0]))?;
        let mac = text(inbound.headers, header, SHAPE)?
            .filter(|hex| is_hex_of_len(hex, 32))
            .ok_or(VerifyError::MalformedHeader {
                header,
                expected: SHAPE,
            })?;
        matching_key(keys, |key| {
            signing::verify_hmac_sha256_hex(key.as_bytes(), inbound.body, mac)
        })
        .map(|index| Verified::with_key("gitea-sha256", index))
        .ok_or(VerifyError::SignatureMismatch { header })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{at, headers};

    const KEY: &str = "gitea-secret";
    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;
    // printf '{"ref":"refs/heads/main"}' | openssl dgst -sha256 -hmac gitea-secret
    const MAC: &str = "6aab54046b413afedbc6d4ff0d3b4fd694c1af82c19c0be7ee9b80438b90223d";

    fn check(pairs: &[(&str, &str)], keys: &[&str]) -> Result<Verified, VerifyError> {
        Gitea.verify(&at(&headers(pairs), BODY, 0), keys)
    }

    #[test]
    fn bare_hex_signature_verifies_in_every_header_variant() {
        for header in HEADERS {
            let verified = check(&[(header, MAC)], &[KEY]).unwrap();
            assert_eq!(verified, Verified::with_key("gitea-sha256", 0));
        }
        let upper = MAC.to_uppercase();
        assert!(check(&[("X-Gitea-Signature", &upper)], &[KEY]).is_ok());
    }

    #[test]
    fn second_key_is_accepted_during_rotation() {
        let verified = check(&[("X-Forgejo-Signature", MAC)], &["next", KEY]).unwrap();
        assert_eq!(verified.key_index, Some(1));
    }

    #[test]
    fn wrong_key_is_a_mismatch() {
        let err = check(&[("X-Gitea-Signature", MAC)], &["wrong"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signature does not match (X-Gitea-Signature)"
        );
    }

    #[test]
    fn missing_header_is_named() {
        let err = check(&[("X-Gitea-Event", "push")], &[KEY]).unwrap_err();
        assert_eq!(err, VerifyError::MissingHeader("X-Gitea-Signature"));
    }

    #[test]
    fn prefixed_or_short_values_are_malformed() {
        for garbled in [format!("sha256={MAC}"), MAC[..62].to_owned(), String::new()] {
            let err = check(&[("X-Gogs-Signature", &garbled)], &[KEY]).unwrap_err();
            assert_eq!(
                err.to_string(),
                "malformed X-Gogs-Signature header (expected <64 hex digits>)"
            );
        }
    }
}
