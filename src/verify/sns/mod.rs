//! Amazon SNS message signatures (the `cloudwatch` source): CloudWatch alarms reach HTTP(S)
//! endpoints through an SNS topic, and SNS signs each message with an RSA key whose certificate
//! it publishes at `SigningCertURL`.
//!
//! Verification is split so the pure part stays pure: [`SnsMessage::parse`],
//! [`check_cert_url`] and [`verify_message`] are functions of their inputs; [`CertCache`] is
//! the only I/O (one HTTPS download per certificate, injected through [`CertFetcher`]);
//! [`verify_sns`] composes them for the ingress.
//!
//! A valid signature proves the message came from SNS, not from *your* topic: anyone can point
//! their own topic at an endpoint URL they know. Keep endpoint paths unguessable or compare
//! [`SnsMessage::topic_arn`] with the topics the rule expects.
//!
//! <https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html>

mod cache;
mod cert;
mod message;
mod urls;

#[cfg(test)]
pub(crate) mod test_support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};

use super::Verified;

pub use self::cache::{CertCache, CertFetcher, HttpCertFetcher};
pub use self::cert::SnsCertificate;
pub use self::message::{SignatureVersion, SnsMessage, SnsMessageType};
pub use self::urls::{check_cert_url, check_subscribe_url};

/// How old a message may be. SNS gives up retrying an HTTP(S) delivery after 3,600 s (a hard
/// limit), so anything older is a replay; 300 s more absorb clock skew. Together with the
/// dedup window (by `MessageId`) this closes replays of captured messages.
pub const MAX_AGE_SECS: i64 = 3_600 + MAX_SKEW_SECS;

/// How far ahead of server time a `Timestamp` may be (clock skew).
pub const MAX_SKEW_SECS: i64 = 300;

/// Why an SNS message was not accepted. Messages never include certificate or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsError {
    /// The body is not an SNS JSON message (or lacks a signed field).
    #[error("body is not a valid SNS message: {0}")]
    MalformedMessage(String),
    /// `SigningCertURL` is not an allow-listed SNS certificate location.
    #[error("SigningCertURL refused: {0}")]
    CertUrlRefused(String),
    /// A confirmation's `SubscribeURL` does not point at Amazon SNS.
    #[error("SubscribeURL refused: {0}")]
    SubscribeUrlRefused(String),
    /// The certificate could not be downloaded.
    #[error("could not fetch the SNS signing certificate: {0}")]
    CertFetch(String),
    /// The downloaded bytes are not a usable RSA certificate.
    #[error("SNS signing certificate is unusable: {0}")]
    CertInvalid(String),
    /// The certificate has expired or is not yet valid.
    #[error("SNS signing certificate is not valid at server time")]
    CertNotValidNow,
    /// `Signature` is not base64.
    #[error("malformed SNS Signature (expected base64)")]
    MalformedSignature,
    /// The signature does not verify under the certificate's key.
    #[error("SNS signature does not match the message and its signing certificate")]
    SignatureMismatch,
    /// `Timestamp` is older than SNS ever retries, or ahead of server time: a replay.
    #[error(
        "SNS Timestamp is {age_secs} s old (accepted: at most {MAX_AGE_SECS} s old, {MAX_SKEW_SECS} s ahead)"
    )]
    Stale {
        /// Server time minus `Timestamp`, in seconds (negative when ahead).
        age_secs: i64,
    },
}

impl SnsError {
    /// A stable snake_case code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            SnsError::MalformedMessage(_) => "malformed_sns_message",
            SnsError::CertUrlRefused(_) => "sns_certificate_url_refused",
            SnsError::SubscribeUrlRefused(_) => "sns_subscribe_url_refused",
            SnsError::CertFetch(_) => "sns_certificate_unavailable",
            SnsError::CertInvalid(_) | SnsError::CertNotValidNow => "sns_certificate_invalid",
            SnsError::MalformedSignature => "malformed_signature",
            SnsError::SignatureMismatch => "signature_mismatch",
            SnsError::Stale { .. } => "timestamp_out_of_tolerance",
        }
    }
}

/// Checks `message`'s signature over its canonical string with `cert` at `now`. Pure: the
/// caller has fetched `cert` from the (checked) `SigningCertURL`.
pub fn verify_message(
    message: &SnsMessage,
    cert: &SnsCertificate,
    now: DateTime<Utc>,
) -> Result<Verified, SnsError> {
    let signature = BASE64
        .decode(message.signature.trim())
        .map_err(|_| SnsError::MalformedSignature)?;
    cert.verify(
        message.signature_version,
        message.canonical_string().as_bytes(),
        &signature,
        now,
    )?;
    let scheme = match message.signature_version {
        SignatureVersion::V1 => "sns-v1",
        SignatureVersion::V2 => "sns-v2",
    };
    Ok(Verified {
        scheme,
        key_index: None,
    })
}

/// Checks that `message` (already verified, so its `Timestamp` is authentic) was sent recently
/// enough at `now` to be a delivery or a retry rather than a replay.
pub fn check_fresh(message: &SnsMessage, now: DateTime<Utc>) -> Result<(), SnsError> {
    let sent = DateTime::parse_from_rfc3339(&message.timestamp)
        .map_err(|e| SnsError::MalformedMessage(format!("Timestamp is not RFC 3339: {e}")))?;
    let age_secs = (now - sent.with_timezone(&Utc)).num_seconds();
    if (-MAX_SKEW_SECS..=MAX_AGE_SECS).contains(&age_secs) {
        Ok(())
    } else {
        Err(SnsError::Stale { age_secs })
    }
}

/// Parses `body`, checks its `SigningCertURL`, gets the certificate through `certs` and
/// verifies the signature and the freshness of its `Timestamp`. Returns the message too: the ingress needs its `Type` and, for a
/// `SubscriptionConfirmation`, its `SubscribeURL`.
pub async fn verify_sns<F: CertFetcher>(
    body: &[u8],
    certs: &CertCache<F>,
    now: DateTime<Utc>,
) -> Result<(Verified, SnsMessage), SnsError> {
    let message = SnsMessage::parse(body)?;
    let url = check_cert_url(&message.signing_cert_url)?;
    let cert = certs.get(&url).await?;
    let verified = verify_message(&message, &cert, now)?;
    check_fresh(&message, now)?;
    Ok((verified, message))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::Value;

    use super::test_support::{
        AWS_SDK_CERT_PEM, AWS_SDK_SAMPLE_MESSAGE, NOTIFICATION, SUBSCRIPTION_CONFIRMATION,
        StaticFetcher, signed, signer,
    };
    use super::*;

    const CERT_URL: &str = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2012, 5, 2, 0, 54, 7).unwrap()
    }

    fn cert() -> SnsCertificate {
        SnsCertificate::parse(signer().cert_pem.as_bytes()).unwrap()
    }

    fn parse(body: &[u8]) -> SnsMessage {
        SnsMessage::parse(body).unwrap()
    }

    fn edited(body: &[u8], field: &str, value: &str) -> Vec<u8> {
        let mut json: Value = serde_json::from_slice(body).unwrap();
        json[field] = value.into();
        json.to_string().into_bytes()
    }

    #[test]
    fn a_message_really_signed_by_sns_verifies_with_its_certificate() {
        let cert = SnsCertificate::parse(AWS_SDK_CERT_PEM.as_bytes()).unwrap();
        let message = parse(AWS_SDK_SAMPLE_MESSAGE.as_bytes());
        let signed_at = Utc.with_ymd_and_hms(2015, 9, 20, 1, 22, 15).unwrap();
        assert_eq!(
            verify_message(&message, &cert, signed_at).unwrap().scheme,
            "sns-v1"
        );
        let altered = edited(AWS_SDK_SAMPLE_MESSAGE.as_bytes(), "Message", "boo!");
        assert_eq!(
            verify_message(&parse(&altered), &cert, signed_at),
            Err(SnsError::SignatureMismatch)
        );
        // The certificate expired on 2016-08-21.
        let later = Utc.with_ymd_and_hms(2016, 8, 22, 0, 0, 0).unwrap();
        assert_eq!(
            verify_message(&message, &cert, later),
            Err(SnsError::CertNotValidNow)
        );
    }

    #[test]
    fn signature_version_1_sha1_with_rsa_verifies() {
        let message = parse(&signed(NOTIFICATION, SignatureVersion::V1));
        let verified = verify_message(&message, &cert(), now()).unwrap();
        assert_eq!(verified.scheme, "sns-v1");
        assert_eq!(verified.key_index, None);
    }

    #[test]
    fn signature_version_2_sha256_with_rsa_verifies_with_a_der_certificate() {
        let der_cert = SnsCertificate::parse(&signer().cert_der).unwrap();
        let message = parse(&signed(NOTIFICATION, SignatureVersion::V2));
        assert_eq!(
            verify_message(&message, &der_cert, now()).unwrap().scheme,
            "sns-v2"
        );
    }

    #[test]
    fn confirmations_verify_over_their_own_field_list() {
        for version in [SignatureVersion::V1, SignatureVersion::V2] {
            let body = signed(SUBSCRIPTION_CONFIRMATION, version);
            assert!(verify_message(&parse(&body), &cert(), now()).is_ok());
            // The token is signed: a forged one (to confirm elsewhere) fails.
            let forged = edited(&body, "Token", "forged");
            assert_eq!(
                verify_message(&parse(&forged), &cert(), now()),
                Err(SnsError::SignatureMismatch)
            );
        }
        let unsubscribe = SUBSCRIPTION_CONFIRMATION.replace(
            "\"SubscriptionConfirmation\"",
            "\"UnsubscribeConfirmation\"",
        );
        let body = signed(&unsubscribe, SignatureVersion::V1);
        assert_eq!(parse(&body).type_, SnsMessageType::UnsubscribeConfirmation);
        assert!(verify_message(&parse(&body), &cert(), now()).is_ok());
    }

    #[test]
    fn tampering_with_any_signed_field_or_the_version_fails() {
        let body = signed(NOTIFICATION, SignatureVersion::V1);
        for (field, value) in [
            ("Message", "Hello world?"),
            ("Subject", "Another subject"),
            ("MessageId", "00000000-0000-0000-0000-000000000000"),
            ("Timestamp", "2012-05-02T00:54:06.656Z"),
            ("TopicArn", "arn:aws:sns:us-west-2:999999999999:MyTopic"),
            ("SignatureVersion", "2"),
        ] {
            let err = verify_message(&parse(&edited(&body, field, value)), &cert(), now());
            assert_eq!(err, Err(SnsError::SignatureMismatch), "{field}");
        }
        // UnsubscribeURL is not part of the canonical string.
        let moved = edited(
            &body,
            "UnsubscribeURL",
            "https://sns.us-east-1.amazonaws.com/",
        );
        assert!(verify_message(&parse(&moved), &cert(), now()).is_ok());
    }

    #[test]
    fn other_keys_garbled_signatures_and_expired_certificates_are_refused() {
        let message = parse(NOTIFICATION.as_bytes());
        assert_eq!(
            verify_message(&message, &cert(), now())
                .unwrap_err()
                .to_string(),
            "malformed SNS Signature (expected base64)"
        );
        let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let other_cert = rcgen::CertificateParams::new(vec!["sns.example".into()])
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        let other = SnsCertificate::parse(other_cert.pem().as_bytes()).unwrap();
        let body = signed(NOTIFICATION, SignatureVersion::V1);
        assert_eq!(
            verify_message(&parse(&body), &other, now()),
            Err(SnsError::SignatureMismatch)
        );
        let expired = SnsCertificate::parse(signer().expired_cert_pem.as_bytes()).unwrap();
        assert_eq!(
            verify_message(&parse(&body), &expired, now())
                .unwrap_err()
                .to_string(),
            "SNS signing certificate is not valid at server time"
        );
    }

    #[test]
    fn unusable_certificates_are_refused() {
        let garbage = SnsCertificate::parse(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        assert!(matches!(garbage, Err(SnsError::CertInvalid(_))));
        assert!(matches!(
            SnsCertificate::parse(b"<html>"),
            Err(SnsError::CertInvalid(_))
        ));
        let ec_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ec_cert = rcgen::CertificateParams::new(vec!["sns.example".into()])
            .unwrap()
            .self_signed(&ec_key)
            .unwrap();
        let err = SnsCertificate::parse(ec_cert.pem().as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SNS signing certificate is unusable: public key algorithm 1.2.840.10045.2.1 is not RSA"
        );
    }

    #[tokio::test]
    async fn verify_sns_fetches_each_certificate_once() {
        let fetcher = StaticFetcher::new(&[CERT_URL], signer().cert_pem.as_bytes());
        let certs = CertCache::new(fetcher);
        let body = signed(NOTIFICATION, SignatureVersion::V1);
        let (verified, message) = verify_sns(&body, &certs, now()).await.unwrap();
        assert_eq!(verified.scheme, "sns-v1");
        assert_eq!(message.message_id, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324");
        let confirmation = signed(SUBSCRIPTION_CONFIRMATION, SignatureVersion::V2);
        let confirmation_sent = Utc.with_ymd_and_hms(2012, 4, 26, 20, 45, 5).unwrap();
        let (_, message) = verify_sns(&confirmation, &certs, confirmation_sent)
            .await
            .unwrap();
        assert!(check_subscribe_url(message.subscribe_url.as_deref().unwrap()).is_ok());
        assert_eq!(certs.len(), 1);
        assert_eq!(
            certs.fetcher().calls(),
            1,
            "the second message used the cached certificate"
        );
    }

    #[test]
    fn only_messages_sns_could_still_be_retrying_are_fresh() {
        let message = parse(NOTIFICATION.as_bytes());
        let sent = DateTime::parse_from_rfc3339(&message.timestamp)
            .unwrap()
            .with_timezone(&Utc);
        let at = |secs: i64| sent + chrono::Duration::seconds(secs);
        for fresh in [0, 1, MAX_AGE_SECS, -MAX_SKEW_SECS] {
            assert_eq!(check_fresh(&message, at(fresh)), Ok(()), "{fresh}");
        }
        assert_eq!(
            check_fresh(&message, at(MAX_AGE_SECS + 1)),
            Err(SnsError::Stale {
                age_secs: MAX_AGE_SECS + 1
            })
        );
        let ahead = check_fresh(&message, at(-MAX_SKEW_SECS - 2)).unwrap_err();
        assert_eq!(ahead, SnsError::Stale { age_secs: -302 });
        assert_eq!(
            ahead.to_string(),
            "SNS Timestamp is -302 s old (accepted: at most 3900 s old, 300 s ahead)"
        );
        assert_eq!(ahead.code(), "timestamp_out_of_tolerance");
        let garbled = parse(&edited(NOTIFICATION.as_bytes(), "Timestamp", "yesterday"));
        assert!(matches!(
            check_fresh(&garbled, sent),
            Err(SnsError::MalformedMessage(_))
        ));
    }

    #[tokio::test]
    async fn verify_sns_refuses_foreign_certificate_urls_without_fetching() {
        let evil = "https://sns.us-west-2.amazonaws.com.evil.com/cert.pem";
        let fetcher = StaticFetcher::new(&[evil], signer().cert_pem.as_bytes());
        let certs = CertCache::new(fetcher);
        let body = edited(
            &signed(NOTIFICATION, SignatureVersion::V1),
            "SigningCertURL",
            evil,
        );
        let err = verify_sns(&body, &certs, now()).await.unwrap_err();
        assert!(matches!(err, SnsError::CertUrlRefused(_)), "{err}");
        assert_eq!(certs.fetcher().calls(), 0);
    }

    #[tokio::test]
    async fn failed_downloads_are_reported_and_not_cached() {
        let certs = CertCache::new(StaticFetcher::new(&[], b""));
        let body = signed(NOTIFICATION, SignatureVersion::V1);
        for attempt in 1..=2 {
            let err = verify_sns(&body, &certs, now()).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                "could not fetch the SNS signing certificate: HTTP status 404 Not Found"
            );
            assert_eq!(certs.fetcher().calls(), attempt);
        }
        assert!(certs.is_empty());
    }
}
