//! The passivated actors of one manager, on disk, and the timers that wake them.
//!
//! Layout (table `asleep:<category>@1` of the store):
//! - `a | id` → [`Asleep`]: the stream revision the actor had handled everything below when it
//!   was passivated, and when it must be woken (a due retry), if ever;
//! - `t | wake_at | id` → nothing: the timer index, scanned for what is due.
//!
//! A row and its timer are written and removed in one atomic batch. The manager flushes the
//! store before it saves its own snapshot, so after a crash the table is never behind the
//! position the manager resumes its category from: an event the manager did not handle yet
//! for an asleep actor is read again, and wakes it.

use serde::{Deserialize, Serialize};

use crate::journal::Revision;
use crate::store::{Key, Store, StoreError, Table, Writes, u64_at};

/// Why an actor sleeps and when it must wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asleep {
    /// Everything of the actor's stream below this revision was handled.
    pub revision: Revision,
    /// When it must wake even if nothing arrives (µs since the epoch).
    pub wake_at: Option<i64>,
}

impl Asleep {
    /// Whether an event at `revision` of the actor's stream is news to it (and must wake it).
    pub fn is_woken_by(&self, revision: Revision) -> bool {
        revision >= self.revision
    }
}

/// The asleep actors of one category.
#[derive(Clone, Debug)]
pub struct Sleepers {
    table: Table,
}

fn row_key(id: u64) -> Vec<u8> {
    Key::new(b'a').u64(id).into_bytes()
}

fn timer_key(at: i64, id: u64) -> Vec<u8> {
    Key::new(b't').time(at).u64(id).into_bytes()
}

impl Sleepers {
    /// Opens the table of `category` in `store`.
    pub fn open(store: &Store, category: &str) -> Result<Self, StoreError> {
        Ok(Self {
            table: store.table(&format!("asleep:{category}@1"))?,
        })
    }

    /// Records `id` asleep.
    pub fn put(&self, id: u64, asleep: &Asleep) -> Result<(), StoreError> {
        let mut writes = Writes::new(&self.table);
        writes.put(row_key(id), asleep);
        if let Some(at) = asleep.wake_at {
            writes.put_raw(timer_key(at, id), Vec::new());
        }
        writes.commit_bare()
    }

    /// Forgets `id` (woken or deleted).
    pub fn remove(&self, id: u64, asleep: &Asleep) -> Result<(), StoreError> {
        let mut writes = Writes::new(&self.table);
        writes.delete(row_key(id));
        if let Some(at) = asleep.wake_at {
            writes.delete(timer_key(at, id));
        }
        writes.commit_bare()
    }

    /// Every asleep actor (undecodable rows are skipped: that actor simply starts).
    pub fn all(&self) -> Result<Vec<(u64, Asleep)>, StoreError> {
        let mut rows = Vec::new();
        for item in self.table.scan_prefix(b"a") {
            let (key, value) = item?;
            if let Ok(asleep) = postcard::from_bytes::<Asleep>(&value) {
                rows.push((u64_at(&key, 1), asleep));
            }
        }
        Ok(rows)
    }

    /// Ids whose timer is due at `now`.
    pub fn due(&self, now: i64) -> Result<Vec<u64>, StoreError> {
        let end = Key::new(0).time(now.saturating_add(1)).into_bytes();
        self.table
            .keys_rev(b"t", &[], &end[1..])
            .map(|key| key.map(|k| u64_at(&k, 9)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleepers() -> Sleepers {
        Sleepers::open(&Store::temporary().unwrap(), "endpoint").unwrap()
    }

    #[test]
    fn rows_and_timers_round_trip() {
        let s = sleepers();
        let (a, b) = (
            Asleep {
                revision: 7,
                wake_at: Some(1_000),
            },
            Asleep {
                revision: 3,
                wake_at: None,
            },
        );
        s.put(1, &a).unwrap();
        s.put(2, &b).unwrap();
        let mut all = s.all().unwrap();
        all.sort_by_key(|(id, _)| *id);
        assert_eq!(all, vec![(1, a), (2, b)]);
        assert!(s.due(999).unwrap().is_empty());
        assert_eq!(s.due(1_000).unwrap(), vec![1]);
        s.remove(1, &a).unwrap();
        assert!(s.due(5_000).unwrap().is_empty());
        assert_eq!(s.all().unwrap(), vec![(2, b)]);
    }

    #[test]
    fn only_news_wakes() {
        let asleep = Asleep {
            revision: 5,
            wake_at: None,
        };
        assert!(!asleep.is_woken_by(4));
        assert!(asleep.is_woken_by(5));
        assert!(asleep.is_woken_by(9));
    }
}
