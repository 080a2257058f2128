//! Small helpers shared by the schemes: reading header text, checking hex MAC shapes, and
//! trying every valid key.

use http::HeaderMap;

use super::VerifyError;

/// The header's value as text, `None` when absent. A value that is not visible ASCII cannot be
/// any documented credential shape, so it is reported as malformed with `expected`.
pub(crate) fn text<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    expected: &'static str,
) -> Result<Option<&'h str>, VerifyError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => {
            value
                .to_str()
                .map(|text| Some(text.trim()))
                .map_err(|_| VerifyError::MalformedHeader {
                    header: name,
                    expected,
                })
        }
    }
}

/// Like [`text`], but absence is a [`VerifyError::MissingHeader`].
pub(crate) fn required<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    expected: &'static str,
) -> Result<&'h str, VerifyError> {
    text(headers, name, expected)?.ok_or(VerifyError::MissingHeader(name))
}

/// A trimmed, non-empty header value for identity extraction; absent or non-text values are `None`.
pub(crate) fn value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// Whether `text` is exactly `bytes` bytes of hex (either case).
pub(crate) fn is_hex_of_len(text: &str, bytes: usize) -> bool {
    text.len() == bytes * 2 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Index of the first key for which `matches` holds. Empty keys never match: anyone can compute
/// an HMAC under the empty key.
pub(crate) fn matching_key(keys: &[&str], mut matches: impl FnMut(&str) -> bool) -> Option<usize> {
    keys.iter().position(|key| !key.is_empty() && matches(key))
}
