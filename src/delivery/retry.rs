//! The retry policy: what to do after each delivery attempt, as a pure function.
//!
//! Randomness (the jitter) and the clock are parameters, so every decision is reproducible in
//! tests and in a journal replay.
//!
//! Rules, in order:
//! - 2xx: delivered.
//! - 404 and 410: the endpoint is gone; disable it (no retry).
//! - blocked by the SSRF guard: disable the endpoint; its URL points somewhere forbidden, so
//!   every later attempt would be refused as well.
//! - anything else (other 1xx/3xx/4xx/5xx, timeouts, connection and TLS errors; redirects are
//!   3xx since they are never followed) fails the attempt: after `max_attempts` attempts the
//!   delivery is dead-lettered, otherwise it is retried after an exponential backoff with full
//!   jitter: `jitter * min(max_delay, initial_delay * multiplier^(attempt - 1))`.
//! - `Retry-After` on 429 and 503 is honoured as a lower bound: the retry comes no sooner than
//!   the receiver asked, and never sooner than the backoff would have scheduled it, so a receiver
//!   can slow retries down but not speed them up (`Retry-After: 0` in a loop cannot turn the
//!   schedule into a hot loop). It is capped at `max_delay`, so one header cannot park a delivery
//!   for days; it is ignored on other statuses.
//! - Every retry delay is at least `min_delay`, whatever the jitter drew.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Tunables of the retry schedule; the defaults suit webhook receivers that recover in minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included, before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// Backoff ceiling after the first failed attempt.
    pub initial_delay: Duration,
    /// Largest delay ever scheduled, `Retry-After` included.
    pub max_delay: Duration,
    /// Growth of the backoff ceiling per failed attempt.
    pub multiplier: f64,
    /// Smallest delay ever scheduled, so a jitter draw near zero never retries at once.
    pub min_delay: Duration,
    /// An endpoint failing without a single success for this long is disabled.
    pub disable_after_failing: Duration,
}

/// Default of [`RetryPolicy::disable_after_failing`]: 120 hours (five days).
pub const DEFAULT_DISABLE_AFTER_FAILING: Duration = Duration::from_secs(120 * 3600);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            multiplier: 2.0,
            min_delay: Duration::from_secs(1),
            disable_after_failing: DEFAULT_DISABLE_AFTER_FAILING,
        }
    }
}

/// What an attempt came to, as far as the retry policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    /// The receiver answered with this status (redirects included: they are not followed).
    Status(u16),
    /// No complete answer within the request timeout.
    Timeout,
    /// The TCP connection could not be made (refused, unreachable, DNS failure).
    Connect,
    /// The TLS handshake failed (bad certificate, protocol error).
    Tls,
    /// The SSRF guard refused the destination address.
    Blocked,
    /// Any other transport failure (connection reset mid-request, malformed response).
    Other,
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The receiver accepted it; nothing more to do.
    Delivered,
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Out of attempts: park it in the dead-letter queue for manual replay.
    DeadLetter,
    /// Stop delivering to this endpoint; the delivery is not retried.
    DisableEndpoint {
        /// Why, for the endpoint's status and the audit trail.
        reason: String,
    },
}

/// The largest backoff after failed attempt number `attempt` (1-based), before jitter.
pub fn backoff_ceiling(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(i32::MAX as u32) as i32;
    let seconds = policy.initial_delay.as_secs_f64() * policy.multiplier.powi(exponent);
    let cap = policy.max_delay.as_secs_f64();
    // NaN (0 * inf) or inf from a huge exponent both land on the cap.
    if seconds.is_finite() && seconds < cap {
        Duration::from_secs_f64(seconds.max(0.0))
    } else {
        policy.max_delay
    }
}

/// Decides what follows attempt number `attempt` (1-based) that ended in `outcome`.
///
/// `retry_after` is the parsed `Retry-After` header, if any; `jitter` is a uniform draw from
/// `[0, 1)` (clamped to it) that scales the backoff ceiling ("full jitter"). See the module
/// documentation for the rules.
pub fn decide(
    policy: &RetryPolicy,
    attempt: u32,
    outcome: OutcomeClass,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Decision {
    match outcome {
        OutcomeClass::Status(200..=299) => return Decision::Delivered,
        OutcomeClass::Status(code @ (404 | 410)) => {
            return Decision::DisableEndpoint {
                reason: format!("endpoint answered {code}: it no longer exists"),
            };
        }
        OutcomeClass::Blocked => {
            return Decision::DisableEndpoint {
                reason: "endpoint address is refused by the SSRF guard".to_owned(),
            };
        }
        _ => {}
    }
    if attempt >= policy.max_attempts {
        return Decision::DeadLetter;
    }
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut delay = backoff_ceiling(policy, attempt).mul_f64(jitter);
    if let (OutcomeClass::Status(429 | 503), Some(asked)) = (outcome, retry_after) {
        delay = delay.max(asked);
    }
    Decision::RetryAfter(delay.min(policy.max_delay).max(policy.min_delay))
}

impl RetryPolicy {
    /// Whether an endpoint failing since `failing_since` (the first failure after its last
    /// success; `None` while healthy) has failed long enough by `now` to be disabled.
    pub fn failing_too_long(
        &self,
        failing_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(since) = failing_since else {
            return false;
        };
        match chrono::TimeDelta::from_std(self.disable_after_failing) {
            Ok(threshold) => now.signed_duration_since(since) >= threshold,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use OutcomeClass::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn decisions_table() {
        let policy = RetryPolicy::default();
        // (attempt, outcome, retry_after, jitter) => decision
        let table: Vec<(u32, OutcomeClass, Option<Duration>, f64, Decision)> = vec![
            (1, Status(200), None, 0.5, Delivered),
            (8, Status(204), None, 0.5, Delivered),
            (1, Status(299), None, 0.5, Delivered),
            (1, Status(500), None, 0.5, RetryAfter(secs(2.5))),
            (2, Status(500), None, 0.5, RetryAfter(secs(5.0))),
            (3, Status(502), None, 0.5, RetryAfter(secs(10.0))),
            (7, Timeout, None, 0.5, RetryAfter(secs(160.0))),
            (7, Connect, None, 0.75, RetryAfter(secs(240.0))),
            (1, Tls, None, 1.0, RetryAfter(secs(5.0))),
            (1, Other, None, 0.1, RetryAfter(secs(1.0))),
            (4, Status(400), None, 0.25, RetryAfter(secs(10.0))),
            (4, Status(401), None, 0.25, RetryAfter(secs(10.0))),
            // Redirects are not followed: the 3xx is an ordinary failure.
            (1, Status(302), None, 0.5, RetryAfter(secs(2.5))),
            (1, Status(308), None, 0.5, RetryAfter(secs(2.5))),
            // Jitter near zero hits the floor.
            (1, Status(500), None, 0.0, RetryAfter(secs(1.0))),
            (3, Timeout, None, 0.01, RetryAfter(secs(1.0))),
            // Out of attempts.
            (8, Status(500), None, 0.5, DeadLetter),
            (8, Timeout, None, 0.5, DeadLetter),
            (9, Connect, None, 0.5, DeadLetter),
            (8, Status(429), Some(secs(1.0)), 0.5, DeadLetter),
            // Gone endpoints are disabled at once, whatever the attempt.
            (
                1,
                Status(404),
                None,
                0.5,
                DisableEndpoint {
                    reason: "endpoint answered 404: it no longer exists".into(),
                },
            ),
            (
                8,
                Status(410),
                None,
                0.5,
                DisableEndpoint {
                    reason: "endpoint answered 410: it no longer exists".into(),
                },
            ),
            (
                1,
                Blocked,
                None,
                0.5,
                DisableEndpoint {
                    reason: "endpoint address is refused by the SSRF guard".into(),
                },
            ),
            // Retry-After on 429/503 is a lower bound above the backoff ...
            (
                1,
                Status(429),
                Some(secs(120.0)),
                0.5,
                RetryAfter(secs(120.0)),
            ),
            (
                2,
                Status(503),
                Some(secs(30.0)),
                0.9,
                RetryAfter(secs(30.0)),
            ),
            // ... which cannot pull the retry earlier than the backoff ...
            (6, Status(429), Some(secs(3.0)), 0.5, RetryAfter(secs(80.0))),
            (
                1,
                Status(503),
                Some(Duration::ZERO),
                0.0,
                RetryAfter(secs(1.0)),
            ),
            // ... and is capped at max_delay.
            (
                1,
                Status(429),
                Some(secs(86_400.0)),
                0.5,
                RetryAfter(secs(3600.0)),
            ),
            // Retry-After on other statuses is ignored.
            (
                1,
                Status(500),
                Some(secs(600.0)),
                0.5,
                RetryAfter(secs(2.5)),
            ),
            (
                1,
                Status(301),
                Some(secs(600.0)),
                0.5,
                RetryAfter(secs(2.5)),
            ),
        ];
        for (attempt, outcome, retry_after, jitter, expected) in table {
            assert_eq!(
                decide(&policy, attempt, outcome, retry_after, jitter),
                expected,
                "attempt {attempt}, {outcome:?}, retry-after {retry_after:?}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn backoff_ceiling_grows_then_caps() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<u64> = (1..=12)
            .map(|n| backoff_ceiling(&policy, n).as_secs())
            .collect();
        assert_eq!(
            ceilings,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(backoff_ceiling(&policy, 0), secs(5.0));
        assert_eq!(backoff_ceiling(&policy, u32::MAX), secs(3600.0));
        let flat = RetryPolicy {
            multiplier: 1.0,
            ..RetryPolicy::default()
        };
        assert_eq!(backoff_ceiling(&flat, 7), secs(5.0));
    }

    #[test]
    fn full_jitter_stays_within_floor_and_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 40,
            ..RetryPolicy::default()
        };
        for attempt in 1..40 {
            let ceiling = backoff_ceiling(&policy, attempt);
            let mut seen_low = false;
            let mut seen_high = false;
            for step in 0..100 {
                let jitter = f64::from(step) / 100.0;
                let RetryAfter(delay) = decide(&policy, attempt, Timeout, None, jitter) else {
                    panic!("attempt {attempt} should retry");
                };
                assert!(delay >= policy.min_delay, "{attempt} {jitter}");
                assert!(delay <= ceiling.max(policy.min_delay), "{attempt} {jitter}");
                seen_low |= delay < ceiling / 2;
                seen_high |= delay > ceiling / 2;
            }
            // Full jitter spreads over the whole range, not a band near the ceiling.
            assert!(seen_low && seen_high, "attempt {attempt}");
        }
        // Out-of-range or NaN draws are clamped, not propagated.
        assert_eq!(
            decide(&policy, 1, Timeout, None, 7.0),
            RetryAfter(secs(5.0))
        );
        assert_eq!(
            decide(&policy, 1, Timeout, None, -1.0),
            RetryAfter(secs(1.0))
        );
        assert_eq!(
            decide(&policy, 1, Timeout, None, f64::NAN),
            RetryAfter(secs(1.0))
        );
    }

    #[test]
    fn the_default_schedule_dead_letters_on_the_eighth_failure() {
        let policy = RetryPolicy::default();
        let decisions: Vec<Decision> = (1..=8)
            .map(|attempt| decide(&policy, attempt, Status(500), None, 1.0))
            .collect();
        let expected: Vec<Decision> = [5, 10, 20, 40, 80, 160, 320]
            .into_iter()
            .map(|s| RetryAfter(Duration::from_secs(s)))
            .chain([DeadLetter])
            .collect();
        assert_eq!(decisions, expected);
    }

    #[test]
    fn endpoints_failing_for_120_hours_are_disabled() {
        let policy = RetryPolicy::default();
        let since = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hours = |h: i64| since + chrono::TimeDelta::hours(h);
        assert!(!policy.failing_too_long(None, hours(1000)));
        assert!(!policy.failing_too_long(Some(since), hours(119)));
        assert!(!policy.failing_too_long(Some(since), hours(120) - chrono::TimeDelta::seconds(1)));
        assert!(policy.failing_too_long(Some(since), hours(120)));
        assert!(policy.failing_too_long(Some(since), hours(500)));
        // A clock that went backwards never disables.
        assert!(!policy.failing_too_long(Some(since), hours(-5)));
    }
}
