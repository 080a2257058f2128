//! The one trait every signature scheme implements, the request view it reads, and the
//! "first credential present decides" combinator used by sources that accept several schemes.

use chrono::{DateTime, Utc};
use http::HeaderMap;

use super::VerifyError;

/// What a scheme sees of an inbound request: its headers, the exact body bytes as received
/// (signatures cover bytes, not parsed JSON) and the server clock (for replay windows).
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Request headers (names are case-insensitive).
    pub headers: &'a HeaderMap,
    /// The raw request body.
    pub body: &'a [u8],
    /// The server's current time, passed in so verification stays a pure function.
    pub now: DateTime<Utc>,
}

/// Proof that a request passed verification, recording which check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The check that passed, e.g. `github-sha256`, `standard-webhooks`, `bearer`, `sns-v1`.
    pub scheme: &'static str,
    /// Index into `keys` of the key that matched (`Some(1)` means a request still signed with
    /// the previous key during a rotation); `None` for schemes without keys (SNS).
    pub key_index: Option<usize>,
}

impl Verified {
    /// A pass by `scheme` with the key at `key_index`.
    pub(crate) fn with_key(scheme: &'static str, key_index: usize) -> Self {
        Verified {
            scheme,
            key_index: Some(key_index),
        }
    }
}

/// One way of proving that a request comes from the holder of a key.
///
/// Implementations are pure: a function of headers, body, keys and `now`. `keys` holds every
/// currently valid key (the current one first, then the previous one during a rotation grace
/// period); a request passes if any key matches.
pub trait Scheme: Sync {
    /// Whether the request carries this scheme's credential headers at all, so that a source
    /// accepting several schemes can pick the one the sender used.
    fn is_present(&self, headers: &HeaderMap) -> bool;

    /// Checks the request's credentials against `keys`.
    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError>;
}

/// Accepts any of several schemes: the first, in order of preference, whose headers are present
/// decides alone. A present-but-wrong credential is never rescued by another header, so a sender
/// cannot pick the weakest check by sending several.
pub struct FirstPresent {
    /// Candidate schemes, strongest first.
    pub schemes: &'static [&'static dyn Scheme],
    /// What to name in the error when none is present, e.g. `X-Forge-Signature or Authorization: Bearer`.
    pub expected: &'static str,
}

impl Scheme for FirstPresent {
    fn is_present(&self, headers: &HeaderMap) -> bool {
        self.schemes.iter().any(|scheme| scheme.is_present(headers))
    }

    fn verify(&self, inbound: &Inbound<'_>, keys: &[&str]) -> Result<Verified, VerifyError> {
        self.schemes
            .iter()
            .find(|scheme| scheme.is_present(inbound.headers))
            .ok_or(VerifyError::MissingCredentials(self.expected))?
            .verify(inbound, keys)
    }
}
