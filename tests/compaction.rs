//! Journal compaction on real files: expired payloads leave closed segments, everything else
//! stays byte for byte, the chain still verifies, and interrupted passes leave a whole journal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use hookforge::journal::{
    CompactionPolicy, ExpectedRevision, Journal, JournalOptions, Metadata, NewEvent,
    ReadOnlyJournal, RecordedEvent,
};
use proptest::prelude::*;

const CUT: &[u8] = b"cut";

/// Records of type `payload` belong to the owner in their first byte; expired owners lose
/// everything they recorded, down to [`CUT`].
#[derive(Default, Clone)]
struct TestPolicy {
    expired: BTreeSet<u8>,
}

impl CompactionPolicy for TestPolicy {
    fn payload_owner(&self, event: &RecordedEvent) -> Option<u64> {
        (event.event_type == "payload").then(|| u64::from(event.data[0]))
    }

    fn expired_before(&self, owner: u64) -> Option<i64> {
        self.expired.contains(&(owner as u8)).then_some(i64::MAX)
    }

    fn strip(&self, _event: &RecordedEvent) -> Option<Vec<u8>> {
        Some(CUT.to_vec())
    }
}

fn options(segment_bytes: u64) -> JournalOptions {
    JournalOptions {
        sync: false,
        segment_bytes,
        ..JournalOptions::default()
    }
}

fn payload(owner: u8, len: usize, seed: usize) -> NewEvent {
    let mut data = vec![owner];
    data.extend((0..len).map(|i| (i * 31 + seed) as u8));
    NewEvent {
        event_type: "payload".into(),
        schema_version: 1,
        metadata: Metadata {
            actor: "test".into(),
            correlation_id: format!("c-{seed}"),
        },
        data,
    }
}

/// First positions of the segment files, ascending.
fn segments(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    segments(dir)
        .iter()
        .map(|id| {
            let path = dir.join("segments").join(format!("{id:020}.seg"));
            std::fs::metadata(path).unwrap().blocks() * 512
        })
        .sum()
}

#[tokio::test]
async fn expired_payloads_leave_closed_segments_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), options(256 * 1024)).unwrap();
    for i in 0..40 {
        let owner = (i % 2) as u8;
        journal
            .append(
                format!("owner{owner}-{i}"),
                ExpectedRevision::Any,
                vec![payload(owner, 64 * 1024, i)],
            )
            .await
            .unwrap();
    }
    let before = journal.read_all(0, usize::MAX).unwrap();
    let closed_below = *segments(dir.path()).last().unwrap();
    let used = allocated(dir.path());

    let policy = TestPolicy {
        expired: BTreeSet::from([1]),
    };
    let report = journal.compact(&policy, u64::MAX).unwrap();
    let expected_cut = before
        .iter()
        .filter(|e| e.data[0] == 1 && e.position < closed_below)
        .count() as u64;
    assert!(expected_cut >= 10, "{expected_cut}");
    assert_eq!(report.records_compacted, expected_cut);
    assert!(report.segments_rewritten >= 2, "{report:?}");
    assert!(
        report.bytes_reclaimed >= expected_cut * 60 * 1024,
        "{report:?}"
    );
    assert!(allocated(dir.path()) < used);

    // Sequential and random reads see the same: owner 1's closed records cut, the rest whole.
    let after = journal.read_all(0, usize::MAX).unwrap();
    assert_eq!(after.len(), before.len());
    for (old, new) in before.iter().zip(&after) {
        let cut = old.data[0] == 1 && old.position < closed_below;
        assert_eq!(new.compacted, cut, "position {}", old.position);
        assert_eq!(&new.data[..], if cut { CUT } else { &old.data[..] });
        assert_eq!(
            (&new.stream, new.revision, new.recorded_at, &new.metadata),
            (&old.stream, old.revision, old.recorded_at, &old.metadata)
        );
        let read = journal.read_stream(&old.stream, old.revision, 1).unwrap();
        assert_eq!(read[0], *new);
    }
    // A second pass has nothing left to do and reads nothing it summarised.
    let again = journal.compact(&policy, u64::MAX).unwrap();
    assert_eq!(again.records_compacted, 0, "{again:?}");
    assert_eq!(again.segments_scanned, 0, "{again:?}");

    // Appends go on after compaction, and a restart reads the compacted segments.
    journal
        .append("owner0-x", ExpectedRevision::Any, vec![payload(0, 10, 99)])
        .await
        .unwrap();
    journal.close().await;
    drop(journal);
    let journal = Journal::open(dir.path(), options(256 * 1024)).unwrap();
    assert_eq!(journal.read_all(0, usize::MAX).unwrap().len(), 41);
    journal.close().await;
    drop(journal);

    let offline = ReadOnlyJournal::open(dir.path()).unwrap();
    let verified = offline.verify(|_| {}).unwrap();
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(verified.verified, 41);
    assert_eq!(verified.compacted, expected_cut);
    let stats = offline.stats(&mut policy.clone()).unwrap();
    assert_eq!(stats.compacted_records, expected_cut);
    // What is left of owner 1 is in the segment that was active at the pass.
    let left: u64 = before
        .iter()
        .filter(|e| e.data[0] == 1 && e.position >= closed_below)
        .map(|e| e.data.len() as u64)
        .sum();
    assert_eq!(stats.reclaimable_bytes, left);
    assert!(stats.segment_bytes < used - expected_cut * 60 * 1024);
}

#[tokio::test]
async fn an_interrupted_copy_is_removed_and_its_segment_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), options(4096)).unwrap();
    for i in 0..10 {
        journal
            .append("s-1", ExpectedRevision::Any, vec![payload(1, 1000, i)])
            .await
            .unwrap();
    }
    let before = journal.read_all(0, usize::MAX).unwrap();
    journal.close().await;
    drop(journal);
    // A crash in the middle of writing the copy of the first segment.
    let leftover = dir
        .path()
        .join("segments")
        .join(format!("{:020}.compacting", 0));
    std::fs::write(&leftover, b"half a copy").unwrap();

    let journal = Journal::open(dir.path(), options(4096)).unwrap();
    assert!(!leftover.exists());
    assert_eq!(journal.read_all(0, usize::MAX).unwrap(), before);
    journal.close().await;
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        owner: u8,
        len: usize,
    },
    Expire(u8),
    Compact,
    /// Close and reopen, with a half-written copy of a segment left behind.
    Crash {
        segment: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 16usize..3000).prop_map(|(owner, len)| Op::Append { owner, len }),
        1 => (0u8..3).prop_map(Op::Expire),
        2 => Just(Op::Compact),
        1 => (0usize..8).prop_map(|segment| Op::Crash { segment }),
    ]
}

/// What every record must read as: its original data, or (once cut) [`CUT`].
struct Model {
    appended: Vec<Vec<u8>>,
    cut: BTreeSet<usize>,
    expired: BTreeSet<u8>,
}

impl Model {
    fn check(&self, journal: &Journal) {
        let all = journal.read_all(0, usize::MAX).unwrap();
        assert_eq!(all.len(), self.appended.len());
        for (i, event) in all.iter().enumerate() {
            let cut = self.cut.contains(&i);
            assert_eq!(event.compacted, cut, "position {i}");
            let expected: &[u8] = if cut { CUT } else { &self.appended[i] };
            assert_eq!(&event.data[..], expected, "position {i}");
        }
        let stream = journal.read_stream("p-1", 0, usize::MAX).unwrap();
        assert_eq!(stream, all);
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), options(8 * 1024)).unwrap();
    let mut model = Model {
        appended: Vec::new(),
        cut: BTreeSet::new(),
        expired: BTreeSet::new(),
    };
    for op in ops {
        match op {
            Op::Append { owner, len } => {
                let event = payload(owner, len, model.appended.len());
                model.appended.push(event.data.clone());
                journal
                    .append("p-1", ExpectedRevision::Any, vec![event])
                    .await
                    .unwrap();
            }
            Op::Expire(owner) => {
                model.expired.insert(owner);
            }
            Op::Compact => {
                let policy = TestPolicy {
                    expired: model.expired.clone(),
                };
                let closed_below = *segments(dir.path()).last().unwrap() as usize;
                let report = journal.compact(&policy, u64::MAX).unwrap();
                let mut newly = 0;
                for (i, data) in model.appended.iter().enumerate().take(closed_below) {
                    if model.expired.contains(&data[0]) && model.cut.insert(i) {
                        newly += 1;
                    }
                }
                assert_eq!(report.records_compacted, newly);
            }
            Op::Crash { segment } => {
                journal.close().await;
                drop(journal);
                let ids = segments(dir.path());
                let id = ids[segment % ids.len()];
                let leftover = dir
                    .path()
                    .join("segments")
                    .join(format!("{id:020}.compacting"));
                std::fs::write(leftover, vec![7u8; 100]).unwrap();
                journal = reopen(dir.path(), options(8 * 1024));
            }
        }
        model.check(&journal);
    }
    journal.close().await;
    drop(journal);
    let offline = ReadOnlyJournal::open(dir.path()).unwrap();
    let report = offline.verify(|_| {}).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.verified, model.appended.len() as u64);
    assert_eq!(report.compacted, model.cut.len() as u64);
    let replayed: Vec<_> = offline.events(0).map(|e| e.unwrap()).collect();
    assert_eq!(replayed.len(), model.appended.len());
}

/// Opens the journal again after a close: sled's flusher thread may hold the index's file lock
/// a moment after the last handle is dropped, so a lock refusal is retried (for up to 5 s).
fn reopen(dir: &Path, options: JournalOptions) -> Journal {
    let started = Instant::now();
    loop {
        match Journal::open(dir, options.clone()) {
            Ok(journal) => return journal,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the journal does not reopen: {e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn compaction_matches_a_model_through_appends_expiries_and_crashes(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        tokio::runtime::Runtime::new().unwrap().block_on(run(ops));
    }
}

#[test]
fn stats_learn_expiry_from_the_records_they_read() {
    // A policy that learns: owner 2 expires when a record of type `expire` says so.
    #[derive(Default)]
    struct Learning(BTreeMap<u64, i64>);
    impl CompactionPolicy for Learning {
        fn payload_owner(&self, event: &RecordedEvent) -> Option<u64> {
            (event.event_type == "payload").then(|| u64::from(event.data[0]))
        }
        fn expired_before(&self, owner: u64) -> Option<i64> {
            self.0.get(&owner).copied()
        }
        fn strip(&self, _event: &RecordedEvent) -> Option<Vec<u8>> {
            None
        }
        fn observe(&mut self, event: &RecordedEvent) {
            if event.event_type == "expire" {
                self.0.insert(u64::from(event.data[0]), i64::MAX);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let journal = Journal::open(dir.path(), options(1 << 20)).unwrap();
        let mut expire = payload(2, 0, 0);
        expire.event_type = "expire".into();
        for event in [payload(2, 100, 1), payload(3, 50, 2), expire] {
            journal
                .append("x-1", ExpectedRevision::Any, vec![event])
                .await
                .unwrap();
        }
        journal.close().await;
    });
    let stats = ReadOnlyJournal::open(dir.path())
        .unwrap()
        .stats(&mut Learning::default())
        .unwrap();
    assert_eq!(stats.reclaimable_bytes, 101);
    assert_eq!(stats.compacted_records, 0);
}
