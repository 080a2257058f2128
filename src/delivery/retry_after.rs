//! Parsing of the `Retry-After` response header (RFC 9110 section 10.2.3).

use std::time::{Duration, SystemTime};

/// How long a `Retry-After` value asks the client to wait, measured from `now`.
///
/// Accepts both forms the RFC allows: a non-negative number of seconds (`120`) and an HTTP-date
/// (`Fri, 31 Dec 1999 23:59:59 GMT`, plus the obsolete RFC 850 and asctime forms). A date in the
/// past means "now" (zero). Anything else is ignored (`None`), as the RFC lets recipients do.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurdly long values; the retry policy caps them anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn delay_seconds() {
        let now = at(1_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        // RFC 9110 section 5.6.7 example date: Sun, 06 Nov 1994 08:49:37 GMT = 784111777.
        let now = at(784_111_777 - 90);
        let expected = Some(Duration::from_secs(90));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            expected
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            expected
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), expected);
    }

    #[test]
    fn past_dates_mean_now_and_garbage_is_ignored() {
        let now = at(784_111_777 + 10);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
