//! Where each rule actor keeps its state on disk: the small fold ([`RuleState`]) and the
//! delivery ids and replay keys it accepted within its dedup window, which grow with traffic.
//!
//! Layout (table `rules@1` of the store):
//! - `s | rule` → the rule's [`RuleState`], which carries its stream checkpoint;
//! - `k | rule | key` → `(event log, time)` of the key's first acceptance;
//! - `o | rule | time | key` → nothing: the order in which keys expire.
//!
//! The actor writes all three in one atomic batch after each round of decisions (once their
//! events are durable), so after a crash the seen set is exactly that of the state beside it.
//! The ingress reads `k` to answer a repeat at once.

use serde::{Deserialize, Serialize};

use crate::domain::rule_state::{RuleState, SeenSet};
use crate::journal::Position;
use crate::store::{Key, Store, StoreError, Table, Writes, u64_at};

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

fn order_key(rule: u64, at: i64, key: &str) -> Vec<u8> {
    Key::new(b'o').u64(rule).time(at).str(key).into_bytes()
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

    /// Stages `state` in `writes`, with the expiry of keys accepted before `horizon`.
    pub fn save(
        &self,
        writes: &mut Writes,
        rule: u64,
        state: &RuleState,
        horizon: Option<i64>,
    ) -> Result<(), StoreError> {
        writes.put(state_key(rule), state);
        if let Some(horizon) = horizon {
            let prefix = Key::new(b'o').u64(rule).into_bytes();
            let upto = u64::try_from(horizon).unwrap_or(0).to_be_bytes();
            let expired: Vec<Vec<u8>> = self
                .table
                .keys_rev(&prefix, &[], &upto)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|k| k.to_vec())
                .collect();
            for order in expired {
                let at = u64_at(&order, 9) as i64;
                let key = String::from_utf8_lossy(&order[17..order.len() - 1]).into_owned();
                let seen = seen_key(rule, &key);
                if writes.get::<First>(&seen)?.is_some_and(|f| f.at == at) {
                    writes.delete(seen);
                }
                writes.delete(order);
            }
        }
        Ok(())
    }

    /// Deletes everything rule `rule` kept (it was deleted).
    pub fn forget(&self, writes: &mut Writes, rule: u64) -> Result<(), StoreError> {
        writes.delete(state_key(rule));
        for kind in [b'k', b'o'] {
            let prefix = Key::new(kind).u64(rule).into_bytes();
            for item in self.table.scan_prefix(&prefix) {
                let (key, _) = item?;
                writes.delete(key.to_vec());
            }
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
    /// The earliest expiry horizon asked for, applied when the batch is saved.
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
        self.writes
            .put_new(order_key(self.rule, at, key), Vec::new());
        self.horizon = Some(self.horizon.map_or(horizon, |h| h.max(horizon)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keys_round_trip_and_expire_with_the_state() {
        let store = Store::temporary().unwrap();
        let rules = RuleStore::open(&store).unwrap();
        let state = RuleState::new(7);
        let mut writes = Writes::new(rules.table());
        let mut seen = DiskSeen { rule: 7, writes: &mut writes, horizon: None };
        seen.remember("a", 10, 1_000, 0);
        seen.remember("b", 11, 2_000, 0);
        assert_eq!(seen.first("a"), Some((10, 1_000)), "reads its own batch");
        let horizon = seen.horizon;
        rules.save(&mut writes, 7, &state, horizon).unwrap();
        writes.commit_bare().unwrap();
        assert_eq!(rules.first(7, "b").unwrap(), Some((11, 2_000)));
        assert_eq!(rules.state(7).unwrap().unwrap().id, 7);
        // A later batch expires what fell out of the window.
        let mut writes = Writes::new(rules.table());
        rules.save(&mut writes, 7, &state, Some(1_500)).unwrap();
        writes.commit_bare().unwrap();
        assert_eq!(rules.first(7, "a").unwrap(), None);
        assert_eq!(rules.first(7, "b").unwrap(), Some((11, 2_000)));
        let mut writes = Writes::new(rules.table());
        rules.forget(&mut writes, 7).unwrap();
        writes.commit_bare().unwrap();
        assert_eq!(rules.first(7, "b").unwrap(), None);
        assert!(rules.state(7).unwrap().is_none());
    }
}
