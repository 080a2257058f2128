//! An endpoint's `rate_limit_per_second`: a token bucket with time as a parameter.
//!
//! The bucket holds at most a twentieth of a second's worth of tokens (at least one), so a
//! burst after an idle period is short: over any one-second window an endpoint limited to `r`
//! per second starts at most `r + max(1, r / 20)` attempts.

/// A token bucket refilled continuously at `rate` tokens per second.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: i64,
}

impl TokenBucket {
    /// A full bucket for `rate` attempts per second at time `now` (µs).
    pub fn new(rate: u32, now: i64) -> Self {
        let rate = f64::from(rate.max(1));
        let capacity = (rate / 20.0).floor().max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            updated: now,
        }
    }

    /// A full bucket refilled at `per_minute` tokens a minute and holding at most `burst` (at
    /// least one): e.g. how many rejected webhooks a rule journals.
    pub fn per_minute(per_minute: u32, burst: u32, now: i64) -> Self {
        let capacity = f64::from(burst.max(1));
        Self {
            rate: f64::from(per_minute) / 60.0,
            capacity,
            tokens: capacity,
            updated: now,
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn refill(&mut self, now: i64) {
        if now > self.updated {
            let elapsed = (now - self.updated) as f64 / 1e6;
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
            self.updated = now;
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn try_take(&mut self, now: i64) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When (µs) the next token will be available, `now` if one already is.
    pub fn next_available(&mut self, now: i64) -> i64 {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        let wait = ((1.0 - self.tokens) / self.rate * 1e6).ceil() as i64;
        now + wait.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn a_burst_is_limited_to_the_capacity_then_paced() {
        let mut bucket = TokenBucket::new(10, 0);
        assert!(bucket.try_take(0));
        assert!(!bucket.try_take(0), "capacity of one at 10/s");
        assert_eq!(bucket.next_available(0), SECOND / 10);
        assert!(!bucket.try_take(SECOND / 10 - 1));
        assert!(bucket.try_take(SECOND / 10));
    }

    #[test]
    fn no_one_second_window_exceeds_rate_plus_capacity() {
        for rate in [1u32, 7, 20, 100, 1000] {
            let mut bucket = TokenBucket::new(rate, 0);
            let mut starts = Vec::new();
            let mut now = 0;
            // Greedy sender: takes a token whenever the bucket allows, for 5 seconds.
            while now < 5 * SECOND {
                if bucket.try_take(now) {
                    starts.push(now);
                } else {
                    now = bucket.next_available(now);
                }
            }
            let capacity = (rate / 20).max(1) as usize;
            for (i, start) in starts.iter().enumerate() {
                let in_window = starts[i..]
                    .iter()
                    .take_while(|t| **t < start + SECOND)
                    .count();
                assert!(
                    in_window <= rate as usize + capacity,
                    "rate {rate}: {in_window} starts in one second"
                );
            }
            let total = starts.len() as f64;
            assert!(
                (total - 5.0 * f64::from(rate)).abs() <= capacity as f64 + 1.0,
                "rate {rate}: {total} in 5 s"
            );
        }
    }

    #[test]
    fn idle_time_refills_only_up_to_capacity() {
        let mut bucket = TokenBucket::new(100, 0);
        for _ in 0..5 {
            assert!(bucket.try_take(0));
        }
        assert!(!bucket.try_take(0));
        let later = 60 * SECOND;
        let taken = (0..100).filter(|_| bucket.try_take(later)).count();
        assert_eq!(taken, 5);
        assert_eq!(bucket.rate(), 100.0);
    }
}
