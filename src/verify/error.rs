//! Why an inbound request failed verification, in words fit for a 401 response body.

use super::sns::SnsError;

/// A verification failure. Messages name the header and the expected *shape*, never an expected
/// value, a key or a computed MAC, so they can be returned to the sender verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The rule has no key to check against (a configuration problem, still a refusal).
    #[error("no verification key is configured for this rule")]
    NoKeys,
    /// The one header this scheme needs is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// None of the credential headers accepted by this source is present.
    #[error("missing credentials: expected {0}")]
    MissingCredentials(&'static str),
    /// A header is present but does not have the documented shape.
    #[error("malformed {header} header (expected {expected})")]
    MalformedHeader {
        /// The header name as documented by the provider.
        header: &'static str,
        /// The shape the header must have, e.g. `sha256=<64 hex digits>`.
        expected: &'static str,
    },
    /// A well-formed signature that no current key produces for this body.
    #[error("signature does not match ({header})")]
    SignatureMismatch {
        /// The header that carried the signature.
        header: &'static str,
    },
    /// A shared-secret token that equals no current key.
    #[error("token does not match ({header})")]
    TokenMismatch {
        /// The header that carried the token.
        header: &'static str,
    },
    /// A Standard Webhooks timestamp too far from the server clock: a replay or a skewed sender.
    #[error("webhook-timestamp is {skew_secs} s from server time (tolerance {tolerance_secs} s)")]
    TimestampOutOfTolerance {
        /// Absolute distance between the header and the server clock, in seconds.
        skew_secs: u64,
        /// The allowed distance either way, in seconds.
        tolerance_secs: u64,
    },
    /// `verify` was asked to check a CloudWatch (SNS) request, which needs the signing certificate.
    #[error(
        "cloudwatch requests are verified against the SNS signing certificate (use verify_request)"
    )]
    CertificateRequired,
    /// An SNS message failed verification.
    #[error(transparent)]
    Sns(#[from] SnsError),
}

impl VerifyError {
    /// A stable snake_case code for the API error body (`{"detail", "code"}`), so clients can
    /// branch without parsing messages.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::NoKeys => "no_verification_key",
            VerifyError::MissingHeader(_) | VerifyError::MissingCredentials(_) => {
                "missing_signature"
            }
            VerifyError::MalformedHeader { .. } => "malformed_signature",
            VerifyError::SignatureMismatch { .. } | VerifyError::TokenMismatch { .. } => {
                "signature_mismatch"
            }
            VerifyError::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            VerifyError::CertificateRequired => "certificate_required",
            VerifyError::Sns(err) => err.code(),
        }
    }
}
