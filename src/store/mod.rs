//! The read-model store: sled trees beside the journal (`DATA_DIR/views/`), one per view, each
//! holding its rows, its indexes and its checkpoint.
//!
//! A view folds a batch of journal records into a [`Writes`] overlay (reads see the batch's own
//! writes), then commits the overlay and the checkpoint as one atomic sled batch. After a crash
//! a view is therefore exactly at its checkpoint: never ahead of it, never behind. The store is
//! not flushed per batch (sled flushes it every half second); what a crash loses is replayed
//! from the journal, which is the source of truth. A view can always be dropped and rebuilt.
//!
//! Keys are byte strings built with [`Key`]: numbers big-endian, so the byte order is the
//! numeric order and a reverse scan lists newest first.

mod indexed;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::indexed::{IndexKey, Indexed, Query, QueryPage, TimeRange};
use crate::journal::Position;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("read-model store: {0}")]
    Sled(#[from] sled::Error),
    /// A row does not decode (written by another version: the view is rebuilt).
    #[error("read-model store: a row of {tree} does not decode: {message}")]
    Decode {
        /// The tree.
        tree: String,
        /// postcard's message.
        message: String,
    },
}

/// The store: one sled database of read models.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, caching at most `cache_bytes` of it in memory.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open()?;
        Ok(Self { db })
    }

    /// A store in a temporary directory (tests, benches).
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        Ok(Self { db })
    }

    /// The table called `name` (created if new).
    pub fn table(&self, name: &str) -> Result<Table, StoreError> {
        Ok(Table {
            name: name.to_owned(),
            tree: self.db.open_tree(name)?,
        })
    }

    /// Deletes the table called `name` (its view rebuilds from the journal).
    pub fn drop_table(&self, name: &str) -> Result<(), StoreError> {
        self.db.drop_tree(name)?;
        Ok(())
    }

    /// Makes everything committed so far durable (at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// Where each table keeps its checkpoint: a key no row key can be (rows start with a letter).
const CHECKPOINT: &[u8] = b"\0checkpoint";

/// One view's tree.
#[derive(Clone)]
pub struct Table {
    name: String,
    tree: sled::Tree,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Table({})", self.name)
    }
}

impl Table {
    /// The position the table's view has folded up to (0 for a new table).
    pub fn checkpoint(&self) -> Result<Position, StoreError> {
        Ok(self.tree.get(CHECKPOINT)?.map_or(0, |v| {
            u64::from_be_bytes(v[..8].try_into().unwrap_or_default())
        }))
    }

    /// The raw bytes at `key`.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.tree.get(key)?)
    }

    /// The row at `key`, decoded.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(bytes) => self.decode(&bytes).map(Some),
        }
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
            tree: self.name.clone(),
            message: e.to_string(),
        })
    }

    /// Keys starting with `prefix` in `start..end` (both relative to the prefix), in reverse.
    pub fn keys_rev<'a>(
        &'a self,
        prefix: &[u8],
        start: &[u8],
        end: &[u8],
    ) -> impl Iterator<Item = Result<sled::IVec, StoreError>> + use<'a> {
        let lo = [prefix, start].concat();
        let hi = [prefix, end].concat();
        self.tree
            .range(lo..hi)
            .rev()
            .map(|item| item.map(|(k, _)| k).map_err(StoreError::from))
    }

    /// Entries whose keys start with `prefix`, in order.
    pub fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> + use<'a> {
        self.tree
            .scan_prefix(prefix)
            .map(|i| i.map_err(StoreError::from))
    }

    /// Deletes every entry (the view then rebuilds from position 0).
    pub fn clear(&self) -> Result<(), StoreError> {
        Ok(self.tree.clear()?)
    }
}

/// A batch of writes to one table, readable before it is committed.
pub struct Writes {
    table: Table,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Keys this batch created: deleting one again leaves no trace in the table at all.
    fresh: std::collections::HashSet<Vec<u8>>,
}

impl Writes {
    /// An empty batch over `table`.
    pub fn new(table: &Table) -> Self {
        Self {
            table: table.clone(),
            overlay: BTreeMap::new(),
            fresh: std::collections::HashSet::new(),
        }
    }

    /// The bytes at `key` as this batch leaves them.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.overlay.get(key) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.table.get_raw(key)?.map(|v| v.to_vec())),
        }
    }

    /// The row at `key` as this batch leaves it.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => self.table.decode(&bytes).map(Some),
        }
    }

    /// Writes `row` at `key`.
    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, row: &T) {
        let bytes = postcard::to_stdvec(row).expect("encoding into a Vec cannot fail");
        self.overlay.insert(key, Some(bytes));
    }

    /// Writes raw bytes at `key`.
    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key, Some(value));
    }

    /// Writes `value` at a `key` the table does not hold yet (an index entry).
    pub fn put_new(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.fresh.insert(key.clone());
        self.overlay.insert(key, Some(value));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        if self.fresh.remove(&key) {
            self.overlay.remove(&key);
        } else {
            self.overlay.insert(key, None);
        }
    }

    /// Adds `delta` to the counter at `key`.
    pub fn add(&mut self, key: Vec<u8>, delta: i64) -> Result<(), StoreError> {
        let current = self.get_raw(&key)?.map_or(0, |v| {
            i64::from_be_bytes(v[..8].try_into().unwrap_or_default())
        });
        let next = current.saturating_add(delta);
        if next == 0 {
            self.delete(key);
        } else {
            self.put_raw(key, next.to_be_bytes().to_vec());
        }
        Ok(())
    }

    /// The keys in `lo..hi` as this batch leaves them, ascending.
    pub fn keys_in(&self, lo: &[u8], hi: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = std::collections::BTreeSet::new();
        for item in self.table.tree.range(lo..hi) {
            keys.insert(item?.0.to_vec());
        }
        for (key, value) in self.overlay.range(lo.to_vec()..hi.to_vec()) {
            match value {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        Ok(keys.into_iter().collect())
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.overlay.is_empty()
    }

    /// Applies every write and the new checkpoint as one atomic batch.
    pub fn commit(self, checkpoint: Position) -> Result<(), StoreError> {
        self.apply(Some(checkpoint))
    }

    /// Applies every write as one atomic batch, for a table whose rows carry their own
    /// checkpoints (the rule actors').
    pub fn commit_bare(self) -> Result<(), StoreError> {
        self.apply(None)
    }

    fn apply(self, checkpoint: Option<Position>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in self.overlay {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        if let Some(checkpoint) = checkpoint {
            batch.insert(CHECKPOINT, &checkpoint.to_be_bytes());
        }
        self.table.tree.apply_batch(batch)?;
        Ok(())
    }
}

/// A key under construction: a one-byte kind, then big-endian numbers and terminated strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(pub Vec<u8>);

impl Key {
    /// A key of `kind` (one byte, a letter).
    pub fn new(kind: u8) -> Self {
        Self(vec![kind])
    }

    /// Appends a number (big-endian).
    pub fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// Appends a time in µs (big-endian, order-preserving for non-negative times).
    pub fn time(self, micros: i64) -> Self {
        self.u64(u64::try_from(micros).unwrap_or(0))
    }

    /// Appends a byte.
    pub fn byte(mut self, b: u8) -> Self {
        self.0.push(b);
        self
    }

    /// Appends a string, terminated by a 0 byte (strings with NUL are cut there).
    pub fn str(mut self, s: &str) -> Self {
        let s = s.split('\0').next().unwrap_or("");
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }

    /// The bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// The big-endian number at `offset` of `key`.
pub fn u64_at(key: &[u8], offset: usize) -> u64 {
    key.get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_its_own_writes_and_commits_with_its_checkpoint() {
        let store = Store::temporary().unwrap();
        let table = store.table("t").unwrap();
        assert_eq!(table.checkpoint().unwrap(), 0);
        let mut writes = Writes::new(&table);
        writes.put(b"a1".to_vec(), &"one");
        writes.add(b"c".to_vec(), 2).unwrap();
        writes.add(b"c".to_vec(), 3).unwrap();
        assert_eq!(writes.get::<String>(b"a1").unwrap().as_deref(), Some("one"));
        assert_eq!(
            table.get::<String>(b"a1").unwrap(),
            None,
            "not yet committed"
        );
        writes.commit(7).unwrap();
        assert_eq!(table.get::<String>(b"a1").unwrap().as_deref(), Some("one"));
        assert_eq!(table.checkpoint().unwrap(), 7);
        let counter = table.get_raw(b"c").unwrap().unwrap();
        assert_eq!(i64::from_be_bytes(counter[..8].try_into().unwrap()), 5);
        let mut writes = Writes::new(&table);
        writes.add(b"c".to_vec(), -5).unwrap();
        writes.delete(b"a1".to_vec());
        writes.commit(8).unwrap();
        assert!(
            table.get_raw(b"c").unwrap().is_none(),
            "a zero counter is removed"
        );
        assert!(table.get_raw(b"a1").unwrap().is_none());
    }

    #[test]
    fn keys_sort_numbers_numerically() {
        let small = Key::new(b'e').u64(9).into_bytes();
        let big = Key::new(b'e').u64(256).into_bytes();
        assert!(small < big);
        let a = Key::new(b'g').str("ab").u64(1).into_bytes();
        let b = Key::new(b'g').str("abc").u64(0).into_bytes();
        assert!(a < b, "a terminated string sorts before its extensions");
        assert_eq!(u64_at(&big, 1), 256);
    }
}
