//! Inbound webhook verification and identity extraction.
//!
//! For a rule's `source_type` and its currently valid keys (the webhook key, plus the previous
//! one during a rotation grace period), [`verify`] decides whether a request really comes from
//! the key holder, and [`identify`] extracts the provider's event type and delivery id. Each
//! provider's scheme (DESIGN.md §4) is one [`Scheme`] implementation in its own file; sources
//! that accept several credentials combine them with [`FirstPresent`].
//!
//! Everything here is a pure function of headers, raw body, keys and `now`, except CloudWatch:
//! SNS signs with an RSA certificate that must be downloaded once per rotation, so
//! [`verify_request`] (async) takes a [`sns::CertCache`] and is what the ingress calls for any
//! source; [`verify`] is its pure core for every source but CloudWatch.
//!
//! Key bytes: the key string's UTF-8 bytes for every HMAC scheme, except Standard Webhooks with a
//! `whsec_` key (base64-decoded, see [`crate::signing::standard_webhooks_key`]).

mod bearer;
mod error;
mod generic;
mod gitea;
mod github;
mod gitlab;
mod headers;
mod identity;
mod pagerduty;
mod scheme;
pub mod sns;
mod source;

#[cfg(test)]
mod test_support;

use crate::signing;

pub use self::bearer::{BearerToken, FORGE_TOKEN, HeaderToken};
pub use self::error::VerifyError;
pub use self::generic::{ForgeSignature, StandardWebhooks, TOLERANCE_SECS};
pub use self::gitea::Gitea;
pub use self::github::Github;
pub use self::gitlab::Gitlab;
pub use self::identity::{Identity, identify, replay_key};
pub use self::pagerduty::Pagerduty;
pub use self::scheme::{FirstPresent, Inbound, Scheme, Verified};
pub use self::source::{SourceType, UnknownSourceType};

/// `webhook_generic`: Standard Webhooks (replay-protected) when its headers are sent, else
/// `X-Forge-Signature`.
static GENERIC: FirstPresent = FirstPresent {
    schemes: &[&StandardWebhooks, &ForgeSignature],
    expected: "X-Forge-Signature or webhook-id/webhook-timestamp/webhook-signature headers",
};

/// `alertmanager`: `X-Forge-Signature` (from a signing proxy) or `Authorization: Bearer`, which is
/// all Alertmanager's `http_config` can send.
static ALERTMANAGER: FirstPresent = FirstPresent {
    schemes: &[&ForgeSignature, &BearerToken],
    expected: "X-Forge-Signature or Authorization: Bearer header",
};

/// `datadog`: Datadog does not sign, so a custom header (`X-Forge-Token`) or bearer token, unless
/// a proxy adds `X-Forge-Signature`.
static DATADOG: FirstPresent = FirstPresent {
    schemes: &[&ForgeSignature, &FORGE_TOKEN, &BearerToken],
    expected: "X-Forge-Signature, X-Forge-Token or Authorization: Bearer header",
};

/// The scheme checking `source`'s requests, or `None` for CloudWatch (see [`sns`]).
pub fn scheme_for(source: SourceType) -> Option<&'static dyn Scheme> {
    match source {
        SourceType::WebhookGeneric => Some(&GENERIC),
        SourceType::WebhookGithub => Some(&Github),
        SourceType::WebhookGitlab => Some(&Gitlab),
        SourceType::WebhookGitea => Some(&Gitea),
        SourceType::Alertmanager => Some(&ALERTMANAGER),
        SourceType::Pagerduty => Some(&Pagerduty),
        SourceType::Datadog => Some(&DATADOG),
        SourceType::Cloudwatch => None,
    }
}

/// Verifies a request from a `source` that uses keys: passes if any of `keys` matches (empty
/// keys are ignored; with no usable key the answer is [`VerifyError::NoKeys`]).
/// CloudWatch needs the SNS certificate and yields [`VerifyError::CertificateRequired`]
/// here; use [`verify_request`] (or [`sns::verify_message`] with a certificate you hold).
pub fn verify(
    source: SourceType,
    inbound: &Inbound<'_>,
    keys: &[&str],
) -> Result<Verified, VerifyError> {
    let scheme = scheme_for(source).ok_or(VerifyError::CertificateRequired)?;
    if keys.iter().all(|key| key.is_empty()) {
        return Err(VerifyError::NoKeys);
    }
    scheme.verify(inbound, keys)
}

/// Verifies a request from any `source`: [`verify`] for keyed sources; for CloudWatch, the SNS
/// signature with the certificate from `certs` (`keys` is then unused). The ingress's one call.
pub async fn verify_request<F: sns::CertFetcher>(
    source: SourceType,
    inbound: &Inbound<'_>,
    keys: &[&str],
    certs: &sns::CertCache<F>,
) -> Result<Verified, VerifyError> {
    match source {
        SourceType::Cloudwatch => Ok(sns::verify_sns(inbound.body, certs, inbound.now).await?.0),
        keyed => verify(keyed, inbound, keys),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::sns::test_support::{NOTIFICATION, StaticFetcher, signed, signer};
    use super::test_support::{at, headers};
    use super::*;

    const CURRENT: &str = "current-key-0f9c";
    const PREVIOUS: &str = "previous-key-77ab";
    const BODY: &[u8] = br#"{"event_type":"build.finished","status":"firing"}"#;
    const NOW: i64 = 1_700_000_000;

    type Pairs = Vec<(&'static str, String)>;

    /// Every credential set `source` accepts, made with `key`.
    fn credentials(source: SourceType, key: &str) -> Vec<Pairs> {
        let hex = signing::hmac_sha256_hex(key.as_bytes(), BODY);
        let forge = vec![("X-Forge-Signature", format!("sha256={hex}"))];
        let bearer = vec![("Authorization", format!("Bearer {key}"))];
        let standard = {
            let sig = signing::standard_webhooks_signature(
                &signing::standard_webhooks_key(key),
                "msg_2Lh9",
                NOW - 5,
                BODY,
            );
            vec![
                ("webhook-id", "msg_2Lh9".to_owned()),
                ("webhook-timestamp", (NOW - 5).to_string()),
                ("webhook-signature", format!("v1,{sig}")),
            ]
        };
        match source {
            SourceType::WebhookGeneric => vec![forge, standard],
            SourceType::WebhookGithub => {
                vec![vec![("X-Hub-Signature-256", format!("sha256={hex}"))]]
            }
            SourceType::WebhookGitlab => {
                let mut both = standard.clone();
                both.push(("X-Gitlab-Token", key.to_owned()));
                vec![vec![("X-Gitlab-Token", key.to_owned())], standard, both]
            }
            SourceType::WebhookGitea => vec![vec![("X-Gitea-Signature", hex)]],
            SourceType::Alertmanager => vec![forge, bearer],
            SourceType::Pagerduty => vec![vec![("X-PagerDuty-Signature", format!("v1={hex}"))]],
            SourceType::Datadog => vec![forge, vec![("X-Forge-Token", key.to_owned())], bearer],
            SourceType::Cloudwatch => vec![],
        }
    }

    /// A header set of the right name but the wrong shape, for each keyed source.
    fn garbled(source: SourceType) -> Pairs {
        let pair = |name, value: &str| vec![(name, value.to_owned())];
        match source {
            SourceType::WebhookGeneric => pair("X-Forge-Signature", "sha256=not-hex"),
            SourceType::WebhookGithub => pair("X-Hub-Signature-256", "md5=abc"),
            SourceType::WebhookGitlab => pair("X-Gitlab-Token", ""),
            SourceType::WebhookGitea => pair("X-Gitea-Signature", "sha256=abc"),
            SourceType::Alertmanager => pair("Authorization", "Basic dXNlcjpwYXNz"),
            SourceType::Pagerduty => pair("X-PagerDuty-Signature", "v0=abc"),
            SourceType::Datadog => pair("X-Forge-Token", " "),
            SourceType::Cloudwatch => vec![],
        }
    }

    fn run(source: SourceType, pairs: &Pairs, keys: &[&str]) -> Result<Verified, VerifyError> {
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        verify(source, &at(&headers(&refs), BODY, NOW), keys)
    }

    fn keyed() -> impl Iterator<Item = SourceType> {
        SourceType::ALL
            .into_iter()
            .filter(|source| *source != SourceType::Cloudwatch)
    }

    #[test]
    fn every_accepted_credential_verifies_with_the_current_key() {
        for source in keyed() {
            let sets = credentials(source, CURRENT);
            assert!(!sets.is_empty());
            for pairs in sets {
                let verified = run(source, &pairs, &[CURRENT, PREVIOUS])
                    .unwrap_or_else(|err| panic!("{source} {pairs:?}: {err}"));
                assert_eq!(verified.key_index, Some(0), "{source} {}", verified.scheme);
            }
        }
    }

    #[test]
    fn the_previous_key_is_accepted_during_rotation() {
        for source in keyed() {
            for pairs in credentials(source, PREVIOUS) {
                let verified = run(source, &pairs, &[CURRENT, PREVIOUS])
                    .unwrap_or_else(|err| panic!("{source} {pairs:?}: {err}"));
                assert_eq!(verified.key_index, Some(1), "{source} {}", verified.scheme);
                // Once the grace period ends, the previous key no longer works.
                assert!(
                    run(source, &pairs, &[CURRENT]).is_err(),
                    "{source} {pairs:?}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_key_is_a_mismatch_for_every_source() {
        for source in keyed() {
            for pairs in credentials(source, "someone-else") {
                let err = run(source, &pairs, &[CURRENT, PREVIOUS]).unwrap_err();
                assert!(
                    matches!(
                        err,
                        VerifyError::SignatureMismatch { .. } | VerifyError::TokenMismatch { .. }
                    ),
                    "{source} {pairs:?}: {err}"
                );
                assert_eq!(err.code(), "signature_mismatch");
            }
        }
    }

    #[test]
    fn missing_credentials_are_named_for_every_source() {
        let expected = [
            (
                SourceType::WebhookGeneric,
                "missing credentials: expected X-Forge-Signature or \
                 webhook-id/webhook-timestamp/webhook-signature headers",
            ),
            (
                SourceType::WebhookGithub,
                "missing X-Hub-Signature-256 header",
            ),
            (SourceType::WebhookGitlab, "missing X-Gitlab-Token header"),
            (SourceType::WebhookGitea, "missing X-Gitea-Signature header"),
            (
                SourceType::Alertmanager,
                "missing credentials: expected X-Forge-Signature or Authorization: Bearer header",
            ),
            (
                SourceType::Pagerduty,
                "missing X-PagerDuty-Signature header",
            ),
            (
                SourceType::Datadog,
                "missing credentials: expected X-Forge-Signature, X-Forge-Token or \
                 Authorization: Bearer header",
            ),
        ];
        for (source, message) in expected {
            let err = run(
                source,
                &vec![("Content-Type", "application/json".into())],
                &[CURRENT],
            )
            .unwrap_err();
            assert_eq!(err.to_string(), message, "{source}");
            assert_eq!(err.code(), "missing_signature");
        }
    }

    #[test]
    fn garbled_credentials_are_malformed_for_every_source() {
        for source in keyed() {
            let err = run(source, &garbled(source), &[CURRENT]).unwrap_err();
            assert!(
                matches!(err, VerifyError::MalformedHeader { .. }),
                "{source}: {err}"
            );
            assert!(err.to_string().starts_with("malformed "), "{err}");
        }
    }

    #[test]
    fn the_strongest_credential_present_decides_alone() {
        // A wrong signature is not rescued by a correct bearer token sent alongside it.
        let mut pairs = credentials(SourceType::Alertmanager, "someone-else").remove(0);
        pairs.extend(credentials(SourceType::Alertmanager, CURRENT).remove(1));
        let err = run(SourceType::Alertmanager, &pairs, &[CURRENT]).unwrap_err();
        assert_eq!(
            err,
            VerifyError::SignatureMismatch {
                header: "X-Forge-Signature"
            }
        );
        // Generic: a stale Standard Webhooks timestamp is a replay even if X-Forge-Signature is valid.
        let mut pairs = credentials(SourceType::WebhookGeneric, CURRENT).remove(0);
        pairs.extend(credentials(SourceType::WebhookGeneric, CURRENT).remove(1));
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let h = headers(&refs);
        let stale = at(&h, BODY, NOW + 600);
        let err = verify(SourceType::WebhookGeneric, &stale, &[CURRENT]).unwrap_err();
        assert_eq!(err.code(), "timestamp_out_of_tolerance");
    }

    #[test]
    fn no_keys_and_cloudwatch_are_refused_by_the_pure_entry_point() {
        let pairs = credentials(SourceType::WebhookGithub, CURRENT).remove(0);
        assert_eq!(
            run(SourceType::WebhookGithub, &pairs, &[]),
            Err(VerifyError::NoKeys)
        );
        assert_eq!(
            run(SourceType::Cloudwatch, &vec![], &[CURRENT]),
            Err(VerifyError::CertificateRequired)
        );
        assert!(scheme_for(SourceType::Cloudwatch).is_none());
    }

    #[tokio::test]
    async fn verify_request_checks_sns_for_cloudwatch_and_keys_for_the_rest() {
        let url = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem";
        let certs = sns::CertCache::new(StaticFetcher::new(&[url], signer().cert_pem.as_bytes()));
        let body = signed(NOTIFICATION, sns::SignatureVersion::V2);
        let h = headers(&[("x-amz-sns-message-type", "Notification")]);
        let inbound = Inbound {
            headers: &h,
            body: &body,
            now: Utc.with_ymd_and_hms(2012, 5, 2, 0, 54, 7).unwrap(),
        };
        let verified = verify_request(SourceType::Cloudwatch, &inbound, &[], &certs)
            .await
            .unwrap();
        assert_eq!(verified.scheme, "sns-v2");

        let mut tampered = body.clone();
        let at_hello = tampered.windows(5).position(|w| w == b"Hello").unwrap();
        tampered[at_hello] = b'J';
        let forged = Inbound {
            body: &tampered,
            ..inbound
        };
        let err = verify_request(SourceType::Cloudwatch, &forged, &[], &certs)
            .await
            .unwrap_err();
        assert_eq!(err, VerifyError::Sns(sns::SnsError::SignatureMismatch));
        assert_eq!(err.code(), "signature_mismatch");

        let pairs = credentials(SourceType::Pagerduty, CURRENT).remove(0);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let h = headers(&refs);
        let keyed = at(&h, BODY, NOW);
        let verified = verify_request(SourceType::Pagerduty, &keyed, &[CURRENT], &certs)
            .await
            .unwrap();
        assert_eq!(verified.scheme, "pagerduty-v1");
    }
}
