//! Who is receiving which webhook right now: the delivery ids and replay keys being journaled or
//! just accepted, and per-rule allowances for journaling rejected requests. Shared by every
//! concurrent webhook request, so that a duplicate answers with its original's event log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::actors::rule_store::RuleStore;
use crate::domain::rate_limit::TokenBucket;
use crate::projections::RuleRecord;

type InflightKey = (u64, String);
type Inflight = Arc<Mutex<HashMap<InflightKey, watch::Receiver<Option<u64>>>>>;

/// Most keys [`Recent`] holds; older ones are in the rule's seen set by then.
const RECENT_KEYS: usize = 65_536;

/// Deliveries being journaled right now and just accepted, by rule and key.
#[derive(Default)]
pub struct Intake {
    /// Deliveries being journaled, so that a concurrent duplicate waits for the original.
    inflight: Inflight,
    /// Per rule, how many more rejected webhooks may be journaled now.
    rejections: Mutex<HashMap<u64, TokenBucket>>,
    /// Keys accepted so recently that their rule may not have decided (and stored) them yet.
    recent: Mutex<Recent>,
}

/// Delivery ids and replay keys just accepted, oldest first, bounded.
#[derive(Default)]
struct Recent {
    first: HashMap<InflightKey, (u64, i64)>,
    order: VecDeque<InflightKey>,
}

impl Recent {
    fn insert(&mut self, key: InflightKey, position: u64, at: i64) {
        if self.first.insert(key.clone(), (position, at)).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > RECENT_KEYS {
            if let Some(old) = self.order.pop_front() {
                self.first.remove(&old);
            }
        }
    }
}

/// What a request holding a delivery id should do.
pub enum Claim {
    /// Already received: the original event log.
    Duplicate(u64),
    /// Being received by a concurrent request: wait for its event log.
    Wait(watch::Receiver<Option<u64>>),
    /// This request receives it; dropping the guard releases the claim.
    Mine(InflightGuard),
}

/// Removes an in-flight entry however the request ends (even when the client hangs up).
pub struct InflightGuard {
    inflight: Inflight,
    key: InflightKey,
    done: watch::Sender<Option<u64>>,
}

impl InflightGuard {
    /// Tells requests waiting on the same delivery which event log received it.
    pub fn received(&self, event_log: u64) {
        let _ = self.done.send(Some(event_log));
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.inflight
            .lock()
            .expect("inflight map poisoned")
            .remove(&self.key);
    }
}

impl Intake {
    /// The event log that first accepted `key` on `rule` within its dedup window before `now`:
    /// from the keys just accepted, else from the rule's seen set on disk.
    pub fn original(
        &self,
        seen: &RuleStore,
        rule: &RuleRecord,
        key: &str,
        now: i64,
    ) -> Option<u64> {
        let window = i64::try_from(rule.config.dedup_window_seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        if window == 0 {
            return None;
        }
        let recent = self
            .recent
            .lock()
            .expect("recent keys poisoned")
            .first
            .get(&(rule.id, key.to_owned()))
            .copied();
        let first = recent.or_else(|| match seen.first(rule.id, key) {
            Ok(first) => first,
            Err(e) => {
                tracing::error!(rule = rule.id, error = %e, "the seen set does not read");
                None
            }
        });
        first.filter(|(_, at)| now - at < window).map(|(p, _)| p)
    }

    /// Claims delivery id `guid` on `rule` for the calling request, unless it was already
    /// received or is being received right now.
    pub fn claim(&self, seen: &RuleStore, rule: &RuleRecord, guid: &str, now: i64) -> Claim {
        if let Some(original) = self.original(seen, rule, guid, now) {
            return Claim::Duplicate(original);
        }
        let key = (rule.id, guid.to_owned());
        let mut inflight = self.inflight.lock().expect("inflight map poisoned");
        if let Some(rx) = inflight.get(&key) {
            return Claim::Wait(rx.clone());
        }
        // Checked again under the lock: the original may have finished in between.
        if let Some(original) = self.original(seen, rule, guid, now) {
            return Claim::Duplicate(original);
        }
        let (done, rx) = watch::channel(None);
        inflight.insert(key.clone(), rx);
        Claim::Mine(InflightGuard {
            inflight: self.inflight.clone(),
            key,
            done,
        })
    }

    /// Remembers that `keys` on `rule` were accepted as event log `position` at `at`.
    pub fn accepted<'a>(
        &self,
        rule: u64,
        keys: impl IntoIterator<Item = &'a String>,
        position: u64,
        at: i64,
    ) {
        let mut recent = self.recent.lock().expect("recent keys poisoned");
        for key in keys {
            recent.insert((rule, key.clone()), position, at);
        }
    }

    /// Whether `rule` may journal one more rejected webhook at `now`; `bucket` makes a rule's
    /// allowance the first time it is asked.
    pub fn may_log_rejection(
        &self,
        rule: u64,
        now: i64,
        bucket: impl FnOnce() -> TokenBucket,
    ) -> bool {
        let mut buckets = self.rejections.lock().expect("rejections poisoned");
        buckets.entry(rule).or_insert_with(bucket).try_take(now)
    }
}
