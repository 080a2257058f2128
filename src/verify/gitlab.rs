//! GitLab: the `X-Gitlab-Token` header carries the secret token itself; when the webhook also has
//! a signing token, GitLab adds Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), which must then verify too.
//!
//! Every credential present must pass, and at least one must be present. A request signed with
//! Standard Webhooks but without `X-Gitlab-Token` is accepted: the signature is the stronger
//! proof (it binds the body and a timestamp), and GitLab lets a webhook have a signing token
//! without a secret token.
//!
//! <https://docs.gitlab.com/user/project/integrations/webhooks/>; signing token:
//! <https://gitlab.com/gitlab-org/gitlab/-/merge_requests/230944> (HMAC-SHA256 over
//! `{webhook-id}.{timestamp}.{body}`, `v1,<base64>`, per the Standard Webhooks specification).

use http::HeaderMap;

use super::bearer::HeaderToken;
use super::generic::StandardWebhooks;
use super::{Inbound, Scheme, Verified, VerifyError};

const TOKEN: HeaderToken = HeaderToken {
    header: "X-Gitlab-Token",
    scheme: "gitlab-token",
};

/// GitLab's secret token, plus its optional Standard Webhooks signature.
pub struct Gitlab;

impl Scheme for Gitlab {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        TOKEN.is_present(headers) || StandardWebhooks.is_present(headers)
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        let check = |scheme: &dyn Scheme| {
            scheme
                .is_present(inbound.headers)
                .then(|| scheme.verify(inbound, keys))
                .transpose()
        };
        let signed = check(&StandardWebhooks)?;
        let token = check(&TOKEN)?;
        match (token, signed) {
            (Some(_), Some(signed)) => Ok(Verified {
                scheme: "gitlab-token+standard-webhooks",
                key_index: signed.key_index,
            }),
            (Some(only), None) | (None, Some(only)) => Ok(only),
            (None, None) => Err(VerifyError::MissingHeader(TOKEN.header)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing;
    use crate::verify::test_support::{at, headers};

    const KEY: &str = "glpat-webhook-secret";
    const BODY: &[u8] = br#"{"object_kind":"pipeline"}"#;
    const NOW: i64 = 1_700_000_000;

    fn signed(key: &str, timestamp: i64) -> [(&'static str, String); 3] {
        let signature = signing::standard_webhooks_signature(
            &signing::standard_webhooks_key(key),
            "msg_1",
            timestamp,
            BODY,
        );
        [
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", format!("v1,{signature}")),
        ]
    }

    fn check(pairs: &[(&str, &str)], keys: &[&str]) -> Result<Verified, VerifyError> {
        Gitlab.verify(&at(&headers(pairs), BODY, NOW), keys)
    }

    fn with_token<'a>(
        token: &'a str,
        sig: &'a [(&'static str, String)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut pairs = vec![("X-Gitlab-Token", token)];
        pairs.extend(sig.iter().map(|(name, value)| (*name, value.as_str())));
        pairs
    }

    #[test]
    fn token_equal_to_a_key_passes() {
        assert_eq!(
            check(&[("X-Gitlab-Token", KEY)], &[KEY]).unwrap(),
            Verified::with_key("gitlab-token", 0)
        );
        assert_eq!(
            check(&[("X-Gitlab-Token", KEY)], &["new", KEY])
                .unwrap()
                .key_index,
            Some(1)
        );
    }

    #[test]
    fn token_and_signature_must_both_pass_when_both_are_sent() {
        let good = signed(KEY, NOW);
        let verified = check(&with_token(KEY, &good), &[KEY]).unwrap();
        assert_eq!(verified.scheme, "gitlab-token+standard-webhooks");

        let bad_signature = signed("other", NOW);
        let err = check(&with_token(KEY, &bad_signature), &[KEY]).unwrap_err();
        assert_eq!(
            err,
            VerifyError::SignatureMismatch {
                header: "webhook-signature"
            }
        );

        let err = check(&with_token("wrong", &good), &[KEY]).unwrap_err();
        assert_eq!(err.to_string(), "token does not match (X-Gitlab-Token)");

        let stale = signed(KEY, NOW - 3600);
        let err = check(&with_token(KEY, &stale), &[KEY]).unwrap_err();
        assert!(matches!(
            err,
            VerifyError::TimestampOutOfTolerance {
                skew_secs: 3600,
                ..
            }
        ));
    }

    #[test]
    fn signature_alone_is_accepted() {
        let good = signed(KEY, NOW);
        let pairs: Vec<_> = good.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            check(&pairs, &["old", KEY]).unwrap(),
            Verified::with_key("standard-webhooks", 1)
        );
    }

    #[test]
    fn wrong_missing_and_garbled_tokens_are_refused() {
        assert_eq!(
            check(&[("X-Gitlab-Token", "wrong")], &[KEY])
                .unwrap_err()
                .to_string(),
            "token does not match (X-Gitlab-Token)"
        );
        assert_eq!(
            check(&[("X-Gitlab-Event", "Pipeline Hook")], &[KEY])
                .unwrap_err()
                .to_string(),
            "missing X-Gitlab-Token header"
        );
        assert!(matches!(
            check(&[("X-Gitlab-Token", "")], &[KEY]).unwrap_err(),
            VerifyError::MalformedHeader {
                header: "X-Gitlab-Token",
                ..
            }
        ));
    }
}
