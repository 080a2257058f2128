//! Helpers for building requests in unit tests.

use chrono::DateTime;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Inbound;

/// A header map from `(name, value)` pairs; panics on invalid names or values.
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

/// A request with `headers` and `body` received at Unix second `now`.
pub(crate) fn at<'a>(headers: &'a HeaderMap, body: &'a [u8], now: i64) -> Inbound<'a> {
    Inbound {
        headers,
        body,
        now: DateTime::from_timestamp(now, 0).expect("timestamp in range"),
    }
}
