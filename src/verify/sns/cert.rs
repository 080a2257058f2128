//! The SNS signing certificate: its RSA public key and validity window, and checking a
//! signature with it.

use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256,
};
use chrono::{DateTime, Utc};
use x509_cert::Certificate;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, DecodePem};

use super::{SignatureVersion, SnsError};

/// `rsaEncryption` (RFC 8017, appendix C): SNS signs with RSA keys only.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// An SNS signing certificate reduced to what verification needs: its RSA public key, parsed
/// once for both signature versions, and its validity window.
#[derive(Debug)]
pub struct SnsCertificate {
    sha1: ParsedPublicKey,
    sha256: ParsedPublicKey,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl SnsCertificate {
    /// Parses an X.509 certificate, PEM (what SNS serves) or DER, holding an RSA public key.
    pub fn parse(pem_or_der: &[u8]) -> Result<Self, SnsError> {
        let invalid = |reason: String| SnsError::CertInvalid(reason);
        let cert = if pem_or_der.trim_ascii_start().starts_with(b"-----BEGIN") {
            Certificate::from_pem(pem_or_der.trim_ascii())
        } else {
            Certificate::from_der(pem_or_der)
        }
        .map_err(|err| invalid(format!("not an X.509 certificate ({err})")))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info();
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(invalid(format!(
                "public key algorithm {} is not RSA",
                spki.algorithm.oid
            )));
        }
        let key = spki.subject_public_key.raw_bytes();
        let parse = |algorithm| {
            ParsedPublicKey::new(algorithm, key)
                .map_err(|err| invalid(format!("RSA public key rejected ({err})")))
        };
        let validity = tbs.validity();
        let time = |t: x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs())
                .ok()
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
                .ok_or_else(|| invalid("validity date out of range".to_owned()))
        };
        Ok(SnsCertificate {
            sha1: parse(&RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY)?,
            sha256: parse(&RSA_PKCS1_2048_8192_SHA256)?,
            not_before: time(validity.not_before)?,
            not_after: time(validity.not_after)?,
        })
    }

    /// Checks `signature` over `message` (PKCS #1 v1.5 with the digest `version` names), and
    /// that the certificate is within its validity window at `now`.
    pub fn verify(
        &self,
        version: SignatureVersion,
        message: &[u8],
        signature: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), SnsError> {
        if now < self.not_before || now > self.not_after {
            return Err(SnsError::CertNotValidNow);
        }
        let key = match version {
            SignatureVersion::V1 => &self.sha1,
            SignatureVersion::V2 => &self.sha256,
        };
        key.verify_sig(message, signature)
            .map_err(|_| SnsError::SignatureMismatch)
    }
}
