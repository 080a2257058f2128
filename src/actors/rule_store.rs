//! Where each rule actor keeps its state on disk: the small fold ([`RuleState`]) and the
//! delivery ids and replay keys it accepted within its dedup window, which grow with traffic.
//!
//! Layout (table `rules@1` of the store):
//! - `s | rule` → the rule's [`RuleState`], which carries its stream checkpoint;
//! - `k | rule | key` → `(event log, time)` of the key's first acceptance.
//!
//! The actor writes both in one atomic batch after its rounds of decisions (once their events
//! are durable), so after a crash the seen set is that of the state beside it, and what the log
//! holds past it is replayed. Keys out of the window are swept now and then by a scan, which
//! costs less than keeping them in expiry order on every webhook. The ingress reads `k` to
//! answer a repeat at once.

use serde::{Deserialize, Serialize};

use crate::domain::rule_state::{RuleState, SeenSet};
use crate::journal::Position;
use crate::store::{Key, Store, StoreError, Table, Writes};

/// The rule actors' table.
#[derive(Clone, Debug)]
pub struct RuleStore {
    table: Table,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct First {
    position: Position,
    at: i64,
}

fn state_key(rule: u64) -> Vec<u8> {
    Key::new(b's').u64(rule).into_bytes()
}

fn seen_key(rule: u64, key: &str) -> Vec<u8> {
    Key::new(b'k').u64(rule).str(key).into_bytes()
}

impl RuleStore {
    /// Opens the table in `store`.
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            table: store.table("rules@1")?,
        })
    }

    /// The table (for a batch of writes).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The saved state of rule `rule`, if any (an undecodable one is rebuilt from the stream).
    pub fn state(&self, rule: u64) -> Result<Option<RuleState>, StoreError> {
        match self.table.get::<RuleState>(&state_key(rule)) {
            Ok(state) => Ok(state),
            Err(StoreError::Decode { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// When `key` was first accepted by rule `rule`, as last committed.
    pub fn first(&self, rule: u64, key: &str) -> Result<Option<(Position, i64)>, StoreError> {
        Ok(self
            .table
            .get::<First>(&seen_key(rule, key))?
            .map(|f| (f.position, f.at)))
    }

    /// Stages `state` in `writes`.
    pub fn save(&self, writes: &mut Writes, rule: u64, state: &RuleState) {
        writes.put(state_key(rule), state);
    }

    /// The seen keys of rule `rule` accepted before `horizon`, as committed: a scan of its seen
    /// set (run off the actor's thread).
    pub fn expired(&self, rule: u64, horizon: i64) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
        let prefix = Key::new(b'k').u64(rule).into_bytes();
        let mut out = Vec::new();
        for item in self.table.scan_prefix(&prefix) {
            let (key, value) = item?;
            if let Ok(first) = postcard::from_bytes::<First>(&value)
                && first.at < horizon
            {
                out.push((key.to_vec(), first.at));
            }
        }
        Ok(out)
    }

    /// Stages the deletion of `expired` keys that `writes` has not accepted again since.
    pub fn forget_expired(
        &self,
        writes: &mut Writes,
        expired: Vec<(Vec<u8>, i64)>,
    ) -> Result<(), StoreError> {
        for (key, at) in expired {
            if writes.get::<First>(&key)?.is_some_and(|f| f.at == at) {
                writes.delete(key);
            }
        }
        Ok(())
    }

    /// Deletes everything rule `rule` kept (it was deleted).
    pub fn forget(&self, writes: &mut Writes, rule: u64) -> Result<(), StoreError> {
        writes.delete(state_key(rule));
        let prefix = Key::new(b'k').u64(rule).into_bytes();
        for item in self.table.scan_prefix(&prefix) {
            let (key, _) = item?;
            writes.delete(key.to_vec());
        }
        Ok(())
    }
}

/// Rule `rule`'s seen set as a batch of writes leaves it.
pub struct DiskSeen<'w> {
    /// The rule.
    pub rule: u64,
    /// The batch.
    pub writes: &'w mut Writes,
    /// The latest expiry horizon asked for, applied by the next sweep.
    pub horizon: Option<i64>,
}

impl SeenSet for DiskSeen<'_> {
    fn first(&self, key: &str) -> Option<(Position, i64)> {
        match self.writes.get::<First>(&seen_key(self.rule, key)) {
            Ok(first) => first.map(|f| (f.position, f.at)),
            Err(e) => {
                tracing::error!(rule = self.rule, error = %e, "the seen set does not read");
                None
            }
        }
    }

    fn remember(&mut self, key: &str, position: Position, at: i64, horizon: i64) {
        self.writes
            .put(seen_key(self.rule, key), &First { position, at });
        self.horizon = Some(self.horizon.map_or(horizon, |h| h.max(horizon)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keys_round_trip_and_are_swept_out_of_the_window() {
        let store = Store::temporary().unwrap();
        let rules = RuleStore::open(&store).unwrap();
        let state = RuleState::new(7);
        let mut writes = Writes::new(rules.table());
        let mut seen = DiskSeen {
            rule: 7,
            writes: &mut writes,
            horizon: None,
        };
        seen.remember("a", 10, 1_000, 0);
        seen.remember("b", 11, 2_000, 0);
        assert_eq!(seen.first("a"), Some((10, 1_000)), "reads its own batch");
        rules.save(&mut writes, 7, &state);
        writes.commit_bare().unwrap();
        assert_eq!(rules.first(7, "b").unwrap(), Some((11, 2_000)));
        assert_eq!(rules.state(7).unwrap().unwrap().id, 7);
        // A sweep forgets what fell out of the window, unless accepted again meanwhile.
        let expired = rules.expired(7, 2_500).unwrap();
        assert_eq!(expired.len(), 2);
        let mut writes = Writes::new(rules.table());
        let mut seen = DiskSeen {
            rule: 7,
            writes: &mut writes,
            horizon: None,
        };
        seen.remember("b", 20, 3_000, 0);
        rules.forget_expired(&mut writes, expired).unwrap();
        writes.commit_bare().unwrap();
        assert_eq!(rules.first(7, "a").unwrap(), None);
        assert_eq!(rules.first(7, "b").unwrap(), Some((20, 3_000)));
        let mut writes = Writes::new(rules.table());
        rules.forget(&mut writes, 7).unwrap();
        writes.commit_bare().unwrap();
        assert_eq!(rules.first(7, "b").unwrap(), None);
        assert!(rules.state(7).unwrap().is_none());
    }
}
