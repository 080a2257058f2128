//! Shared-secret tokens for senders that cannot compute an HMAC (Alertmanager, Datadog, GitLab's
//! secret token): `Authorization: Bearer <key>` or a dedicated header carrying the key itself.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither the position of the first
//! differing byte nor the key's length leaks through timing.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::headers::{matching_key, required};
use super::{Inbound, Scheme, Verified, VerifyError, signing};

const AUTHORIZATION: &str = "Authorization";
const BEARER_SHAPE: &str = "Bearer <key>";

/// `Authorization: Bearer <key>` (the scheme word is case-insensitive, per RFC 9110 §11.1).
pub struct BearerToken;

impl Scheme for BearerToken {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(AUTHORIZATION)
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        let value = required(inbound.headers, AUTHORIZATION, BEARER_SHAPE)?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(VerifyError::MalformedHeader {
                header: AUTHORIZATION,
                expected: BEARER_SHAPE,
            })?;
        matching_key(keys, |key| token_matches(token, key))
            .map(|index| Verified::with_key("bearer", index))
            .ok_or(VerifyError::TokenMismatch {
                header: AUTHORIZATION,
            })
    }
}

/// A header whose whole value is the key, e.g. `X-Forge-Token` or `X-Gitlab-Token`.
pub struct HeaderToken {
    /// The header carrying the key.
    pub header: &'static str,
    /// The name reported in [`Verified::scheme`].
    pub scheme: &'static str,
}

/// `X-Forge-Token: <key>`, the shared-secret header hookforge documents for Datadog and others.
pub const FORGE_TOKEN: HeaderToken = HeaderToken {
    header: "X-Forge-Token",
    scheme: "forge-token",
};

impl Scheme for HeaderToken {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(self.header)
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        let token = required(inbound.headers, self.header, "<key>")?;
        if token.is_empty() {
            return Err(VerifyError::MalformedHeader {
                header: self.header,
                expected: "<key>",
            });
        }
        matching_key(keys, |key| token_matches(token, key))
            .map(|index| Verified::with_key(self.scheme, index))
            .ok_or(VerifyError::TokenMismatch {
                header: self.header,
            })
    }
}

/// Whether `given` equals `key`, in time independent of both contents and lengths.
pub(crate) fn token_matches(given: &str, key: &str) -> bool {
    signing::constant_time_eq(
        Sha256::digest(given.as_bytes()).as_slice(),
        Sha256::digest(key.as_bytes()).as_slice(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{at, headers};

    const KEY: &str = "am-token-7f3a";

    fn bearer(value: &str, keys: &[&str]) -> Result<Verified, VerifyError> {
        BearerToken.verify(&at(&headers(&[("Authorization", value)]), b"{}", 0), keys)
    }

    fn forge_token(value: &str, keys: &[&str]) -> Result<Verified, VerifyError> {
        FORGE_TOKEN.verify(&at(&headers(&[("X-Forge-Token", value)]), b"{}", 0), keys)
    }

    #[test]
    fn bearer_token_equal_to_a_key_passes() {
        assert_eq!(
            bearer("Bearer am-token-7f3a", &[KEY]).unwrap(),
            Verified::with_key("bearer", 0)
        );
        assert_eq!(
            bearer("bearer  am-token-7f3a ", &["old", KEY])
                .unwrap()
                .key_index,
            Some(1)
        );
    }

    #[test]
    fn bearer_failures_are_precise() {
        assert_eq!(
            bearer("Bearer am-token-7f3", &[KEY])
                .unwrap_err()
                .to_string(),
            "token does not match (Authorization)"
        );
        for garbled in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "am-token-7f3a"] {
            assert_eq!(
                bearer(garbled, &[KEY]).unwrap_err().to_string(),
                "malformed Authorization header (expected Bearer <key>)"
            );
        }
        let err = BearerToken
            .verify(&at(&HeaderMap::new(), b"{}", 0), &[KEY])
            .unwrap_err();
        assert_eq!(err.to_string(), "missing Authorization header");
    }

    #[test]
    fn header_token_equal_to_a_key_passes() {
        assert_eq!(
            forge_token(KEY, &[KEY]).unwrap(),
            Verified::with_key("forge-token", 0)
        );
        assert_eq!(forge_token(KEY, &["new", KEY]).unwrap().key_index, Some(1));
    }

    #[test]
    fn header_token_failures_are_precise() {
        assert_eq!(
            forge_token("am-token-7f3aX", &[KEY])
                .unwrap_err()
                .to_string(),
            "token does not match (X-Forge-Token)"
        );
        assert_eq!(
            forge_token("", &[KEY]).unwrap_err().to_string(),
            "malformed X-Forge-Token header (expected <key>)"
        );
        let err = FORGE_TOKEN
            .verify(&at(&HeaderMap::new(), b"{}", 0), &[KEY])
            .unwrap_err();
        assert_eq!(err, VerifyError::MissingHeader("X-Forge-Token"));
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "abcd"));
        assert!(!token_matches("", "abc"));
    }
}
