//! A table of rows with secondary indexes ordered newest first and exact counts, so that lists
//! are served from disk without scanning what they do not show.
//!
//! Layout within the view's tree, for rows of type `R` keyed by a numeric id (a journal
//! position or a resource id) and carrying a creation time:
//!
//! - `r | id` → the row;
//! - `i | index key | time | id` → nothing: one entry per index the row belongs to, so a reverse
//!   range scan of an index lists its rows newest first, and a time range is a key range;
//! - `n | index key` → how many rows the index holds;
//! - `h | index key | hour` → how many of them were created in that hour, so a count under a
//!   time range sums whole hours and scans only the two partial ones at its edges.
//!
//! Every row is in the index [`Indexed::ALL`] as well as those its view names, unless the view
//! opts out ([`Indexed::without_all`]).

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Key, StoreError, Table, Writes, u64_at};

/// One index a row belongs to: a kind letter and its dimensions, e.g. `Key::new(b'O').u64(org)`.
/// All keys of one kind must have the same shape (no key may be a prefix of another kind's).
pub type IndexKey = Key;

/// A time range in µs, both ends inclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Earliest time, if bounded.
    pub since: Option<i64>,
    /// Latest time, if bounded.
    pub until: Option<i64>,
}

impl TimeRange {
    fn start(&self) -> u64 {
        self.since.map_or(0, |t| u64::try_from(t).unwrap_or(0))
    }

    fn end(&self) -> u64 {
        self.until
            .map_or(u64::MAX, |t| u64::try_from(t).unwrap_or(0))
    }
}

const HOUR: u64 = 3_600_000_000;

/// A list request: one index, a time range, an optional extra predicate, a page.
pub struct Query<'a, R> {
    /// The index to read (the narrowest one matching the request's filters).
    pub index: IndexKey,
    /// Creation-time bounds.
    pub range: TimeRange,
    /// Filters the index does not cover; with one, the count scans the index range.
    pub filter: Option<&'a dyn Fn(&R) -> bool>,
    /// Rows to skip (newest first).
    pub offset: usize,
    /// Rows to return at most.
    pub limit: usize,
}

/// One page of a list, with the count of everything that matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPage<R> {
    /// Rows matching in all.
    pub count: u64,
    /// The requested page, newest first.
    pub rows: Vec<R>,
}

/// Rows of type `R` with their indexes, in one table.
pub struct Indexed<R> {
    table: Table,
    indexes: fn(&R) -> Vec<IndexKey>,
    time: fn(&R) -> i64,
    all: bool,
    row: PhantomData<fn() -> R>,
}

impl<R> Clone for Indexed<R> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            indexes: self.indexes,
            time: self.time,
            all: self.all,
            row: PhantomData,
        }
    }
}

fn row_key(id: u64) -> Vec<u8> {
    Key::new(b'r').u64(id).into_bytes()
}

fn entry_key(index: &IndexKey, time: u64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + index.0.len() + 16);
    key.push(b'i');
    key.extend_from_slice(&index.0);
    key.extend_from_slice(&time.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn total_key(index: &IndexKey) -> Vec<u8> {
    [&[b'n'][..], &index.0].concat()
}

fn hour_key(index: &IndexKey, hour: u64) -> Vec<u8> {
    [&[b'h'][..], &index.0, &hour.to_be_bytes()].concat()
}

/// The key range of `index`'s entries created before `time`, and where an entry's id starts.
fn before_range(index: &IndexKey, time: i64) -> (Vec<u8>, Vec<u8>, usize) {
    let prefix = [&[b'i'][..], &index.0].concat();
    let lo = [&prefix[..], &0u64.to_be_bytes()].concat();
    let hi = [&prefix[..], &u64::try_from(time).unwrap_or(0).to_be_bytes()].concat();
    let id_at = prefix.len() + 8;
    (lo, hi, id_at)
}

fn counter(bytes: Option<sled::IVec>) -> u64 {
    bytes.map_or(0, |v| u64::try_from(u64_at(&v, 0) as i64).unwrap_or(0))
}

impl<R: Serialize + DeserializeOwned> Indexed<R> {
    /// The index every row is in.
    pub const ALL: u8 = b'*';

    /// Rows in `table`, indexed by `indexes` (besides [`Indexed::ALL`]), ordered by `time`.
    pub fn new(table: Table, indexes: fn(&R) -> Vec<IndexKey>, time: fn(&R) -> i64) -> Self {
        Self {
            table,
            indexes,
            time,
            all: true,
            row: PhantomData,
        }
    }

    /// The same rows without the index [`Indexed::ALL`], for a view that never lists across
    /// its indexes: one entry and two counters fewer per row.
    pub fn without_all(self) -> Self {
        Self { all: false, ..self }
    }

    /// The table the rows live in.
    pub fn table(&self) -> &Table {
        &self.table
    }

    fn all_indexes(&self, row: &R) -> Vec<IndexKey> {
        let mut keys = (self.indexes)(row);
        if self.all {
            keys.push(Key::new(Self::ALL));
        }
        keys
    }

    fn time_of(&self, row: &R) -> u64 {
        u64::try_from((self.time)(row)).unwrap_or(0)
    }

    /// The row `id`.
    pub fn get(&self, id: u64) -> Result<Option<R>, StoreError> {
        self.table.get(&row_key(id))
    }

    /// The row `id` as `writes` leaves it.
    pub fn get_in(&self, writes: &Writes, id: u64) -> Result<Option<R>, StoreError> {
        writes.get(&row_key(id))
    }

    /// Inserts or replaces row `id`, moving it between indexes as its fields changed.
    pub fn put(&self, writes: &mut Writes, id: u64, row: &R) -> Result<(), StoreError> {
        let old = self.get_in(writes, id)?;
        let (new_time, new_keys) = (self.time_of(row), self.all_indexes(row));
        let old_entries: Vec<(u64, IndexKey)> = match &old {
            Some(old) => {
                let time = self.time_of(old);
                self.all_indexes(old)
                    .into_iter()
                    .map(|k| (time, k))
                    .collect()
            }
            None => Vec::new(),
        };
        for (time, key) in &old_entries {
            if *time != new_time || !new_keys.contains(key) {
                self.unlink(writes, key, *time, id)?;
            }
        }
        for key in &new_keys {
            if !old_entries.iter().any(|(t, k)| *t == new_time && k == key) {
                self.link(writes, key, new_time, id)?;
            }
        }
        writes.put(row_key(id), row);
        Ok(())
    }

    /// Changes row `id` with `change` and puts it back (nothing if it does not exist).
    pub fn update(
        &self,
        writes: &mut Writes,
        id: u64,
        change: impl FnOnce(&mut R),
    ) -> Result<(), StoreError> {
        if let Some(mut row) = self.get_in(writes, id)? {
            change(&mut row);
            self.put(writes, id, &row)?;
        }
        Ok(())
    }

    /// Deletes row `id` and its index entries; returns it.
    pub fn remove(&self, writes: &mut Writes, id: u64) -> Result<Option<R>, StoreError> {
        let Some(old) = self.get_in(writes, id)? else {
            return Ok(None);
        };
        let time = self.time_of(&old);
        for key in self.all_indexes(&old) {
            self.unlink(writes, &key, time, id)?;
        }
        writes.delete(row_key(id));
        Ok(Some(old))
    }

    fn link(
        &self,
        writes: &mut Writes,
        key: &IndexKey,
        time: u64,
        id: u64,
    ) -> Result<(), StoreError> {
        writes.put_new(entry_key(key, time, id), Vec::new());
        writes.add(total_key(key), 1)?;
        writes.add(hour_key(key, time / HOUR), 1)
    }

    fn unlink(
        &self,
        writes: &mut Writes,
        key: &IndexKey,
        time: u64,
        id: u64,
    ) -> Result<(), StoreError> {
        writes.delete(entry_key(key, time, id));
        writes.add(total_key(key), -1)?;
        writes.add(hour_key(key, time / HOUR), -1)
    }

    /// How many rows `index` holds in `range`: whole hours from the hourly counts, the two
    /// partial hours at the edges by a scan of their index entries.
    pub fn count(&self, index: &IndexKey, range: TimeRange) -> Result<u64, StoreError> {
        if range == TimeRange::default() {
            return Ok(counter(self.table.get_raw(&total_key(index))?));
        }
        let (start, end) = (range.start(), range.end());
        if start > end {
            return Ok(0);
        }
        let (first_hour, last_hour) = (start / HOUR, end / HOUR);
        if first_hour == last_hour {
            return self.scan_count(index, start, end);
        }
        let mut total = self.scan_count(index, start, (first_hour + 1) * HOUR - 1)?;
        total += self.scan_count(index, last_hour * HOUR, end)?;
        if last_hour > first_hour + 1 {
            let prefix = [&[b'h'][..], &index.0].concat();
            let lo = (first_hour + 1).to_be_bytes();
            let hi = last_hour.to_be_bytes();
            for item in self
                .table
                .tree
                .range([&prefix[..], &lo].concat()..[&prefix[..], &hi].concat())
            {
                let (_, value) = item?;
                total += counter(Some(value));
            }
        }
        Ok(total)
    }

    fn scan_count(&self, index: &IndexKey, start: u64, end: u64) -> Result<u64, StoreError> {
        let prefix = [&[b'i'][..], &index.0].concat();
        let lo = [&prefix[..], &start.to_be_bytes()].concat();
        let hi = [&prefix[..], &end.saturating_add(1).to_be_bytes()].concat();
        let mut n = 0;
        for item in self.table.tree.range(lo..hi) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Ids in `index` within `range`, newest first.
    pub fn ids_rev<'a>(
        &'a self,
        index: &IndexKey,
        range: TimeRange,
    ) -> impl Iterator<Item = Result<(u64, u64), StoreError>> + use<'a, R> {
        let prefix = [&[b'i'][..], &index.0].concat();
        let lo = range.start().to_be_bytes();
        let hi = range.end().saturating_add(1).to_be_bytes();
        let time_at = prefix.len();
        self.table.keys_rev(&prefix, &lo, &hi).map(move |key| {
            let key = key?;
            Ok((u64_at(&key, time_at), u64_at(&key, time_at + 8)))
        })
    }

    /// Ids in `index` within `range`, oldest first.
    pub fn ids<'a>(
        &'a self,
        index: &IndexKey,
        range: TimeRange,
    ) -> impl Iterator<Item = Result<(u64, u64), StoreError>> + use<'a, R> {
        let prefix = [&[b'i'][..], &index.0].concat();
        let lo = [&prefix[..], &range.start().to_be_bytes()].concat();
        let hi = [&prefix[..], &range.end().saturating_add(1).to_be_bytes()].concat();
        let time_at = prefix.len();
        self.table.tree.range(lo..hi).map(move |item| {
            let (key, _) = item?;
            Ok((u64_at(&key, time_at), u64_at(&key, time_at + 8)))
        })
    }

    /// Every id in `index` as `writes` leaves it, oldest first.
    pub fn ids_in(&self, writes: &Writes, index: &IndexKey) -> Result<Vec<u64>, StoreError> {
        let (lo, hi, id_at) = before_range(index, i64::MAX);
        Ok(writes
            .keys_in(&lo, &hi)?
            .iter()
            .map(|key| u64_at(key, id_at))
            .collect())
    }

    /// Ids in `index` created before `time`, oldest first (for retention).
    pub fn ids_before<'a>(
        &'a self,
        index: &IndexKey,
        time: i64,
    ) -> impl Iterator<Item = Result<u64, StoreError>> + use<'a, R> {
        let (lo, hi, id_at) = before_range(index, time);
        self.table.tree.range(lo..hi).map(move |item| {
            item.map(|(k, _)| u64_at(&k, id_at))
                .map_err(StoreError::from)
        })
    }

    /// Creation times of the `n` oldest rows in `index`, ascending (for retention's batches).
    pub fn oldest_times(&self, index: &IndexKey, n: usize) -> Result<Vec<i64>, StoreError> {
        let prefix = [&[b'i'][..], &index.0].concat();
        let time_at = prefix.len();
        self.table
            .tree
            .scan_prefix(&prefix)
            .take(n)
            .map(|item| {
                let (key, _) = item?;
                Ok(u64_at(&key, time_at) as i64)
            })
            .collect()
    }

    /// Deletes the rows in `index` created before `time` (µs), with all their index entries;
    /// returns how many went.
    pub fn remove_before(
        &self,
        writes: &mut Writes,
        index: &IndexKey,
        time: i64,
    ) -> Result<u64, StoreError> {
        // Read through the batch: rows it added (a rebuild folds a log and its expiry in one
        // batch) must go too.
        let (lo, hi, id_at) = before_range(index, time);
        let ids: Vec<u64> = writes
            .keys_in(&lo, &hi)?
            .iter()
            .map(|key| u64_at(key, id_at))
            .collect();
        let mut removed = 0;
        for id in ids {
            if self.remove(writes, id)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// One page of `query`, with the exact count of what matches.
    pub fn query(&self, query: &Query<'_, R>) -> Result<QueryPage<R>, StoreError> {
        let mut rows = Vec::with_capacity(query.limit.min(256));
        let mut matched = 0u64;
        let mut ids = self.ids_rev(&query.index, query.range);
        match query.filter {
            None => {
                let count = self.count(&query.index, query.range)?;
                for item in ids.by_ref().skip(query.offset).take(query.limit) {
                    let (_, id) = item?;
                    if let Some(row) = self.get(id)? {
                        rows.push(row);
                    }
                }
                Ok(QueryPage { count, rows })
            }
            Some(filter) => {
                for item in ids {
                    let (_, id) = item?;
                    let Some(row) = self.get(id)? else { continue };
                    if !filter(&row) {
                        continue;
                    }
                    if matched >= query.offset as u64 && rows.len() < query.limit {
                        rows.push(row);
                    }
                    matched += 1;
                }
                Ok(QueryPage {
                    count: matched,
                    rows,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    struct Row {
        org: u64,
        status: u8,
        at: i64,
    }

    fn table() -> Indexed<Row> {
        let store = Store::temporary().unwrap();
        Indexed::new(
            store.table("rows").unwrap(),
            |r: &Row| {
                vec![
                    Key::new(b'O').u64(r.org),
                    Key::new(b'S').u64(r.org).byte(r.status),
                ]
            },
            |r| r.at,
        )
    }

    fn commit(t: &Indexed<Row>, f: impl FnOnce(&mut Writes)) {
        let mut w = Writes::new(t.table());
        f(&mut w);
        w.commit(1).unwrap();
    }

    #[test]
    fn lists_newest_first_with_exact_counts_as_rows_move_between_indexes() {
        let t = table();
        commit(&t, |w| {
            for id in 0..10 {
                let row = Row {
                    org: id % 2,
                    status: 0,
                    at: (id as i64) * 1000,
                };
                t.put(w, id, &row).unwrap();
            }
        });
        let org0 = Key::new(b'O').u64(0);
        let page = t
            .query(&Query {
                index: org0.clone(),
                range: TimeRange::default(),
                filter: None,
                offset: 1,
                limit: 2,
            })
            .unwrap();
        assert_eq!(page.count, 5);
        assert_eq!(
            page.rows.iter().map(|r| r.at).collect::<Vec<_>>(),
            [6000, 4000]
        );
        // A status change moves the row from one status index to another.
        commit(&t, |w| {
            let mut row = t.get_in(w, 4).unwrap().unwrap();
            row.status = 1;
            t.put(w, 4, &row).unwrap();
        });
        assert_eq!(
            t.count(&Key::new(b'S').u64(0).byte(0), TimeRange::default())
                .unwrap(),
            4
        );
        assert_eq!(
            t.count(&Key::new(b'S').u64(0).byte(1), TimeRange::default())
                .unwrap(),
            1
        );
        assert_eq!(
            t.count(&org0, TimeRange::default()).unwrap(),
            5,
            "still in its org"
        );
        commit(&t, |w| {
            t.remove(w, 4).unwrap();
        });
        assert_eq!(t.count(&org0, TimeRange::default()).unwrap(), 4);
        assert_eq!(
            t.count(&Key::new(b'S').u64(0).byte(1), TimeRange::default())
                .unwrap(),
            0
        );
    }

    #[test]
    fn time_ranges_count_whole_hours_and_scan_the_edges() {
        let t = table();
        let hour = HOUR as i64;
        commit(&t, |w| {
            for id in 0..100u64 {
                // Rows every 6 minutes over 10 hours.
                let row = Row {
                    org: 1,
                    status: 0,
                    at: id as i64 * hour / 10,
                };
                t.put(w, id, &row).unwrap();
            }
        });
        let org = Key::new(b'O').u64(1);
        for (since, until) in [
            (0, 10 * hour),
            (hour / 2, 7 * hour + 7),
            (3 * hour, 3 * hour),
            (2 * hour + 1, 2 * hour + 2),
        ] {
            let range = TimeRange {
                since: Some(since),
                until: Some(until),
            };
            let expected = (0..100)
                .filter(|id| (since..=until).contains(&(id * hour / 10)))
                .count() as u64;
            assert_eq!(t.count(&org, range).unwrap(), expected, "{since}..={until}");
            let filtered = t
                .query(&Query {
                    index: org.clone(),
                    range,
                    filter: Some(&|_: &Row| true),
                    offset: 0,
                    limit: 1000,
                })
                .unwrap();
            assert_eq!(filtered.count, expected);
        }
        let before: Vec<u64> = t.ids_before(&org, hour).map(Result::unwrap).collect();
        assert_eq!(before, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn removing_before_a_time_drops_rows_with_every_index_entry_and_count() {
        let t = table();
        commit(&t, |w| {
            for id in 0..10u64 {
                let row = Row {
                    org: id % 2,
                    status: (id % 3) as u8,
                    at: id as i64 * 100,
                };
                t.put(w, id, &row).unwrap();
            }
        });
        let org0 = Key::new(b'O').u64(0);
        assert_eq!(t.oldest_times(&org0, 3).unwrap(), [0, 200, 400]);
        let mut removed = 0;
        commit(&t, |w| removed = t.remove_before(w, &org0, 450).unwrap());
        assert_eq!(removed, 3);
        assert_eq!(t.oldest_times(&org0, 3).unwrap(), [600, 800]);
        assert_eq!(t.count(&org0, TimeRange::default()).unwrap(), 2);
        assert_eq!(
            t.count(&Key::new(Indexed::<Row>::ALL), TimeRange::default())
                .unwrap(),
            7
        );
        let statuses: u64 = (0..3)
            .map(|s| {
                t.count(&Key::new(b'S').u64(0).byte(s), TimeRange::default())
                    .unwrap()
            })
            .sum();
        assert_eq!(statuses, 2, "status indexes lost the rows too");
        assert_eq!(t.get(0).unwrap(), None);
        assert!(
            t.get(1).unwrap().is_some(),
            "the other organization's rows stay"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u64, Row),
        Remove(u64),
        RemoveBefore(u64, i64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let at = 0..(5 * HOUR as i64);
        prop_oneof![
            4 => (0..24u64, 0..3u64, 0..3u8, at.clone())
                .prop_map(|(id, org, status, at)| Op::Put(id, Row { org, status, at })),
            1 => (0..24u64).prop_map(Op::Remove),
            1 => (0..3u64, at).prop_map(|(org, at)| Op::RemoveBefore(org, at)),
        ]
    }

    proptest::proptest! {
        /// Random batches of puts, removes and expiries, some committed and some lost to a
        /// "crash" (dropped before commit): every index lists exactly the model's rows, newest
        /// first, and every count (whole or by time range) is exact.
        #[test]
        fn indexes_and_counts_match_a_model_through_crashes(
            batches in proptest::collection::vec(
                (proptest::collection::vec(op(), 1..12), proptest::bool::weighted(0.8)),
                1..12,
            ),
            since in 0..(5 * HOUR as i64),
            span in 0..(3 * HOUR as i64),
        ) {
            let t = table();
            let mut model = std::collections::BTreeMap::<u64, Row>::new();
            for (ops, committed) in batches {
                let mut next = model.clone();
                let mut w = Writes::new(t.table());
                for op in ops {
                    match op {
                        Op::Put(id, row) => {
                            t.put(&mut w, id, &row).unwrap();
                            next.insert(id, row);
                        }
                        Op::Remove(id) => {
                            t.remove(&mut w, id).unwrap();
                            next.remove(&id);
                        }
                        Op::RemoveBefore(org, at) => {
                            t.remove_before(&mut w, &Key::new(b'O').u64(org), at).unwrap();
                            next.retain(|_, r| r.org != org || r.at >= at);
                        }
                    }
                }
                if committed {
                    w.commit(1).unwrap();
                    model = next;
                }
            }
            let range = TimeRange { since: Some(since), until: Some(since + span) };
            let mut indexes = vec![(Key::new(Indexed::<Row>::ALL), None, None)];
            for org in 0..3 {
                indexes.push((Key::new(b'O').u64(org), Some(org), None));
                for status in 0..3 {
                    indexes.push((Key::new(b'S').u64(org).byte(status), Some(org), Some(status)));
                }
            }
            for (index, org, status) in indexes {
                let mut expected: Vec<(i64, u64)> = model
                    .iter()
                    .filter(|(_, r)| org.is_none_or(|o| r.org == o) && status.is_none_or(|s| r.status == s))
                    .map(|(id, r)| (r.at, *id))
                    .collect();
                expected.sort_unstable_by(|a, b| b.cmp(a));
                let listed: Vec<(i64, u64)> = t
                    .ids_rev(&index, TimeRange::default())
                    .map(|r| r.map(|(time, id)| (time as i64, id)).unwrap())
                    .collect();
                proptest::prop_assert_eq!(&listed, &expected);
                proptest::prop_assert_eq!(t.count(&index, TimeRange::default()).unwrap(), expected.len() as u64);
                let in_range = expected.iter().filter(|(at, _)| (since..=since + span).contains(at)).count();
                proptest::prop_assert_eq!(t.count(&index, range).unwrap(), in_range as u64);
            }
        }
    }
}
