//! The journal's contracts, exercised on real files: ordering, concurrency, subscriptions,
//! crash safety and tamper evidence.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hookforge::journal::{
    AppendError, EventFilter, ExpectedRevision, Journal, JournalOptions, Metadata, NewEvent,
    ReadOnlyJournal,
};

fn event(kind: &str, body: impl Into<Vec<u8>>) -> NewEvent {
    NewEvent {
        event_type: kind.into(),
        schema_version: 1,
        metadata: Metadata {
            actor: "test".into(),
            correlation_id: "corr".into(),
        },
        data: body.into(),
    }
}

fn open(dir: &Path) -> Journal {
    Journal::open(dir, JournalOptions::default()).expect("journal opens")
}

#[tokio::test]
async fn appends_get_gap_free_positions_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let a = journal
        .append(
            "thing-1",
            ExpectedRevision::NoStream,
            vec![event("a", "1"), event("a", "2")],
        )
        .await
        .unwrap();
    assert_eq!(
        (a.first_position, a.last_position, a.last_revision),
        (0, 1, 1)
    );
    let b = journal
        .append("thing-2", ExpectedRevision::Any, vec![event("b", "3")])
        .await
        .unwrap();
    assert_eq!((b.first_position, b.last_revision), (2, 0));
    let c = journal
        .append("thing-1", ExpectedRevision::Exact(1), vec![event("a", "4")])
        .await
        .unwrap();
    assert_eq!((c.first_position, c.last_revision), (3, 2));

    let stream = journal.read_stream("thing-1", 0, 100).unwrap();
    let bodies: Vec<_> = stream
        .iter()
        .map(|e| (e.revision, e.position, e.data.to_vec()))
        .collect();
    assert_eq!(
        bodies,
        vec![
            (0, 0, b"1".to_vec()),
            (1, 1, b"2".to_vec()),
            (2, 3, b"4".to_vec())
        ]
    );
    assert_eq!(journal.read_stream("thing-1", 2, 100).unwrap().len(), 1);
    let all = journal.read_all(1, 100).unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(all[1].stream, "thing-2");
    assert_eq!(all[0].metadata.actor, "test");
    assert!(all[0].recorded_at > 0);
    assert_eq!(journal.next_position(), 4);
    assert_eq!(journal.stream_revision("thing-1").unwrap(), Some(2));
    assert_eq!(journal.stream_revision("nothing-1").unwrap(), None);
}

#[tokio::test]
async fn wrong_expected_revisions_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal
        .append("s-1", ExpectedRevision::NoStream, vec![event("x", "1")])
        .await
        .unwrap();

    let refused = [
        (ExpectedRevision::NoStream, Some(0)),
        (ExpectedRevision::Exact(5), Some(0)),
    ];
    for (expected, actual) in refused {
        let err = journal
            .append("s-1", expected, vec![event("x", "2")])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            AppendError::WrongExpectedRevision {
                stream: "s-1".into(),
                expected,
                actual
            }
        );
    }
    let err = journal
        .append("s-2", ExpectedRevision::StreamExists, vec![event("x", "3")])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AppendError::WrongExpectedRevision { actual: None, .. }
    ));
    assert!(matches!(
        journal.append("s-3", ExpectedRevision::Any, vec![]).await,
        Err(AppendError::Invalid(_))
    ));
    assert!(matches!(
        journal
            .append("", ExpectedRevision::Any, vec![event("x", "")])
            .await,
        Err(AppendError::Invalid(_))
    ));
    assert_eq!(
        journal.next_position(),
        1,
        "refused appends must not consume positions"
    );
    journal
        .append("s-1", ExpectedRevision::Exact(0), vec![event("x", "ok")])
        .await
        .unwrap();
    assert_eq!(journal.next_position(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_to_many_streams_stay_gap_free_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let tasks = 64;
    let per_task = 50;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let journal = journal.clone();
        handles.push(tokio::spawn(async move {
            let stream = format!("stream-{}", t % 16);
            let mut acked = Vec::new();
            for i in 0..per_task {
                let body = format!("{t}:{i}");
                let appended = journal
                    .append(
                        stream.clone(),
                        ExpectedRevision::Any,
                        vec![event("n", body.clone())],
                    )
                    .await
                    .unwrap();
                acked.push((appended.first_position, body));
            }
            acked
        }));
    }
    let mut acked = HashMap::new();
    for h in handles {
        for (pos, body) in h.await.unwrap() {
            assert!(
                acked.insert(pos, body).is_none(),
                "position handed out twice"
            );
        }
    }
    let total = tasks * per_task;
    let all = journal.read_all(0, total + 10).unwrap();
    assert_eq!(all.len(), total);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64, "global positions are gap-free");
        assert_eq!(acked[&e.position].as_bytes(), &e.data[..]);
    }
    for s in 0..16 {
        let events = journal
            .read_stream(&format!("stream-{s}"), 0, total)
            .unwrap();
        assert_eq!(events.len(), total / 16);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.revision, i as u64, "stream revisions are gap-free");
        }
        assert!(
            events.windows(2).all(|w| w[0].position < w[1].position),
            "a stream follows the global order"
        );
        // Each task's own appends to the stream appear in the order it made them.
        let mut last_seen: HashMap<String, usize> = HashMap::new();
        for e in &events {
            let text = std::str::from_utf8(&e.data).unwrap();
            let (task, seq) = text.split_once(':').unwrap();
            let seq: usize = seq.parse().unwrap();
            if let Some(prev) = last_seen.insert(task.to_owned(), seq) {
                assert!(seq > prev);
            }
        }
    }
    assert!(journal.stream_count() >= 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_see_every_event_once_across_the_catch_up_seam() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    for i in 0..500 {
        let stream = if i % 2 == 0 { "rule-1" } else { "job-1" };
        journal
            .append(
                stream,
                ExpectedRevision::Any,
                vec![event("e", format!("{i}"))],
            )
            .await
            .unwrap();
    }
    let writer = {
        let journal = journal.clone();
        tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 500..3000 {
                let stream = if i % 2 == 0 { "rule-1" } else { "job-1" };
                pending.push(journal.append(
                    stream,
                    ExpectedRevision::Any,
                    vec![event("e", format!("{i}"))],
                ));
                if pending.len() == 20 {
                    for t in pending.drain(..) {
                        t.await.unwrap();
                    }
                    tokio::task::yield_now().await;
                }
            }
            for t in pending {
                t.await.unwrap();
            }
        })
    };
    let mut all = journal.subscribe(0, EventFilter::All);
    let mut rules = journal.subscribe(0, EventFilter::category("rule"));
    let mut stream = journal.subscribe_stream("job-1", 0);
    let mut seen_all = Vec::new();
    while seen_all.len() < 3000 {
        for e in all.next_batch(97).await.unwrap() {
            seen_all.push(e.position);
        }
    }
    assert_eq!(seen_all, (0..3000).collect::<Vec<_>>());
    let mut seen_rules = Vec::new();
    while seen_rules.len() < 1500 {
        for e in rules.next_batch(1000).await.unwrap() {
            assert_eq!(e.stream, "rule-1");
            seen_rules.push(e.data.to_vec());
        }
    }
    let expected: Vec<_> = (0..3000)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("{i}").into_bytes())
        .collect();
    assert_eq!(seen_rules, expected);
    let mut revisions = Vec::new();
    while revisions.len() < 1500 {
        for e in stream.next_batch(33).await.unwrap() {
            revisions.push(e.revision);
        }
    }
    assert_eq!(revisions, (0..1500).collect::<Vec<_>>());
    writer.await.unwrap();

    // Live: a subscriber waiting at the head wakes for the next commit, and only for it.
    let waiter = tokio::spawn(async move { all.next_batch(10).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    journal
        .append("x-1", ExpectedRevision::Any, vec![event("live", "!")])
        .await
        .unwrap();
    let live = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        live.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![3000]
    );
}

#[tokio::test]
async fn closing_ends_subscriptions_and_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal
        .append("a-1", ExpectedRevision::Any, vec![event("e", "1")])
        .await
        .unwrap();
    let mut sub = journal.subscribe(0, EventFilter::All);
    assert_eq!(sub.next_batch(10).await.unwrap().len(), 1);
    let waiting = tokio::spawn(async move { sub.next_batch(10).await });
    journal.close().await;
    assert!(waiting.await.unwrap().is_err());
    assert!(matches!(
        journal
            .append("a-1", ExpectedRevision::Any, vec![event("e", "2")])
            .await,
        Err(AppendError::Unavailable(_))
    ));
}

#[tokio::test]
async fn the_data_dir_is_exclusive_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    let err = ReadOnlyJournal::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("running hookforge server"),
        "{err}"
    );
    journal.close().await;
    drop(journal);
    ReadOnlyJournal::open(dir.path()).expect("read-only access once the server is gone");
}

#[tokio::test]
async fn reopening_keeps_everything_and_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(
            dir.path(),
            JournalOptions {
                segment_bytes: 4096,
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..200 {
            journal
                .append(
                    format!("s-{}", i % 3),
                    ExpectedRevision::Any,
                    vec![event("e", vec![i as u8; 100])],
                )
                .await
                .unwrap();
        }
        journal.close().await;
    }
    let journal = Journal::open(
        dir.path(),
        JournalOptions {
            segment_bytes: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(journal.next_position(), 200);
    let next = journal
        .append("s-0", ExpectedRevision::Any, vec![event("e", "after")])
        .await
        .unwrap();
    assert_eq!(next.first_position, 200);
    assert_eq!(next.last_revision, 67);
    let all = journal.read_all(0, 1000).unwrap();
    assert_eq!(all.len(), 201, "reading crosses many small segments");
    assert_eq!(journal.read_all(150, 10).unwrap()[0].position, 150);
    journal.close().await;
    drop(journal);
    let report = ReadOnlyJournal::open(dir.path())
        .unwrap()
        .verify(|_| {})
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.verified, 201);
}

#[tokio::test]
async fn snapshots_round_trip_and_can_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    assert_eq!(journal.load_snapshot("view").unwrap(), None);
    journal.save_snapshot("view", 41, b"state").unwrap();
    assert_eq!(
        journal.load_snapshot("view").unwrap(),
        Some((41, b"state".to_vec()))
    );
    journal.clear_snapshots().unwrap();
    assert_eq!(journal.load_snapshot("view").unwrap(), None);
}

// ---- tamper evidence -------------------------------------------------------------------------

async fn journal_with(dir: &Path, n: usize) {
    let journal = open(dir);
    for i in 0..n {
        journal
            .append(
                format!("s-{}", i % 4),
                ExpectedRevision::Any,
                vec![event("e", format!("payload number {i}"))],
            )
            .await
            .unwrap();
    }
    journal.close().await;
}

fn segment(dir: &Path) -> std::path::PathBuf {
    dir.join("segments").join(format!("{:020}.seg", 0))
}

/// Offsets of every frame in a segment file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        offsets.push(at);
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    offsets
}

fn verify(dir: &Path) -> hookforge::journal::VerifyReport {
    ReadOnlyJournal::open(dir).unwrap().verify(|_| {}).unwrap()
}

#[tokio::test]
async fn verify_names_an_altered_record() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 20).await;
    assert!(verify(dir.path()).is_ok());
    let mut bytes = std::fs::read(segment(dir.path())).unwrap();
    let offsets = frame_offsets(&bytes);
    let target = offsets[7] + 20;
    bytes[target] ^= 0x01;
    std::fs::write(segment(dir.path()), &bytes).unwrap();
    let report = verify(dir.path());
    assert_eq!(
        report.first_bad.as_ref().map(|b| b.0),
        Some(7),
        "{report:?}"
    );
    assert_eq!(report.verified, 7);
}

#[tokio::test]
async fn verify_names_a_removed_record() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 20).await;
    let bytes = std::fs::read(segment(dir.path())).unwrap();
    let offsets = frame_offsets(&bytes);
    let mut cut = bytes[..offsets[5]].to_vec();
    cut.extend_from_slice(&bytes[offsets[6]..]);
    std::fs::write(segment(dir.path()), &cut).unwrap();
    let report = verify(dir.path());
    let (position, why) = report.first_bad.clone().unwrap();
    assert_eq!(position, 5);
    assert!(why.contains("removed"), "{why}");
}

#[tokio::test]
async fn verify_names_a_forged_record_with_a_valid_checksum() {
    // Re-encode a record with different data and a correct CRC: only the chain can tell.
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 10).await;
    let bytes = std::fs::read(segment(dir.path())).unwrap();
    let offsets = frame_offsets(&bytes);
    let (start, end) = (offsets[3], offsets[4]);
    let mut frame = bytes[start..end].to_vec();
    let payload_at = 8;
    let text = b"payload number 3";
    let pos = frame.windows(text.len()).position(|w| w == text).unwrap();
    frame[pos + text.len() - 1] = b'9';
    let crc = crc32fast::hash(&frame[payload_at..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut forged = bytes[..start].to_vec();
    forged.extend_from_slice(&frame);
    forged.extend_from_slice(&bytes[end..]);
    std::fs::write(segment(dir.path()), &forged).unwrap();
    let report = verify(dir.path());
    assert_eq!(
        report.first_bad.as_ref().map(|b| b.0),
        Some(3),
        "{report:?}"
    );
}

#[tokio::test]
async fn verify_tolerates_only_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 10).await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(segment(dir.path()))
        .unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    drop(file);
    let report = verify(dir.path());
    assert!(report.is_ok(), "{report:?}");
    assert!(report.torn_tail.is_some());
    assert_eq!(report.verified, 10);
    // The next start cuts the torn bytes and continues the chain.
    let journal = open(dir.path());
    assert_eq!(journal.next_position(), 10);
    journal
        .append("s-1", ExpectedRevision::Any, vec![event("e", "more")])
        .await
        .unwrap();
    journal.close().await;
    drop(journal);
    let report = verify(dir.path());
    assert!(report.is_ok() && report.torn_tail.is_none(), "{report:?}");
    assert_eq!(report.verified, 11);
}

#[tokio::test]
async fn damage_in_the_middle_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 10).await;
    // Forget the index so that start-up must re-read the segment from the start.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment(dir.path()))
        .unwrap();
    file.seek(SeekFrom::Start(30)).unwrap();
    file.write_all(b"XX").unwrap();
    drop(file);
    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("verify"), "{err}");
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 50).await;
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let journal = open(dir.path());
    assert_eq!(journal.next_position(), 50);
    assert_eq!(journal.read_stream("s-2", 0, 100).unwrap().len(), 12);
    assert_eq!(journal.stream_revision("s-1").unwrap(), Some(12));
}

// ---- crash safety ----------------------------------------------------------------------------

/// Child mode: append forever, printing each acknowledged position. Runs only when the parent
/// test re-executes this binary with HOOKFORGE_CRASH_CHILD set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var("HOOKFORGE_CRASH_CHILD") else {
        return;
    };
    let journal = open(Path::new(&dir));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for task in 0..8 {
        let journal = journal.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let body = format!("task {task} event {i}");
                let stream = format!("crash-{task}");
                let appended = journal
                    .append(
                        stream,
                        ExpectedRevision::Any,
                        vec![event("crash", body.clone())],
                    )
                    .await
                    .unwrap();
                tx.send(format!("{} {}", appended.first_position, body))
                    .unwrap();
            }
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged: HashMap<u64, String> = HashMap::new();
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("HOOKFORGE_CRASH_CHILD", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let wait = 150 + rng_state % 400;
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut this_round = 0;
        for line in lines {
            let Some((pos, body)) = line.split_once(' ') else {
                continue;
            };
            let Ok(pos) = pos.parse::<u64>() else {
                continue;
            };
            acknowledged.insert(pos, body.to_owned());
            this_round += 1;
        }
        assert!(
            this_round > 0 || round > 0,
            "the child acknowledged nothing before it was killed"
        );

        let report = verify(dir.path());
        assert!(report.is_ok(), "round {round}: {report:?}");
        let reader = ReadOnlyJournal::open(dir.path()).unwrap();
        let stored: HashMap<u64, String> = reader
            .events(0)
            .map(|e| e.unwrap())
            .map(|e| (e.position, String::from_utf8(e.data.to_vec()).unwrap()))
            .collect();
        drop(reader);
        for (pos, body) in &acknowledged {
            assert_eq!(
                stored.get(pos),
                Some(body),
                "round {round}: acknowledged position {pos} lost"
            );
        }
        // Reopening recovers, and the recovered journal still verifies.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let journal = open(dir.path());
            assert!(journal.next_position() as usize >= acknowledged.len());
            journal.close().await;
        });
        assert!(verify(dir.path()).is_ok());
    }
    assert!(
        acknowledged.len() > 100,
        "only {} appends acknowledged in 20 rounds",
        acknowledged.len()
    );
}

#[tokio::test]
async fn large_snapshots_live_in_files_survive_a_reopen_and_are_dropped_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let files = || {
        std::fs::read_dir(dir.path().join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    {
        let journal = open(dir.path());
        journal.save_snapshot("view:big@1", 10, &big).unwrap();
        journal.save_snapshot("view:big@1", 20, &big[1..]).unwrap();
        journal.save_snapshot("view:small@1", 5, b"small").unwrap();
        assert_eq!(files(), 1, "one file, for the latest large snapshot only");
        journal.close().await;
    }
    let journal = open(dir.path());
    assert_eq!(
        journal.load_snapshot("view:big@1").unwrap(),
        Some((20, big[1..].to_vec()))
    );
    assert_eq!(
        journal.load_snapshot("view:small@1").unwrap(),
        Some((5, b"small".to_vec()))
    );
    // Shrinking back under the threshold moves it into the index and removes the file.
    journal.save_snapshot("view:big@1", 30, b"tiny").unwrap();
    assert_eq!(files(), 0);
    assert_eq!(
        journal.load_snapshot("view:big@1").unwrap(),
        Some((30, b"tiny".to_vec()))
    );
    journal.save_snapshot("view:big@1", 40, &big).unwrap();
    assert_eq!(journal.remove_snapshots("view:big").unwrap(), 1);
    assert_eq!(files(), 0);
    assert_eq!(journal.load_snapshot("view:big@1").unwrap(), None);
    journal.save_snapshot("view:big@1", 50, &big).unwrap();
    journal.clear_snapshots().unwrap();
    assert_eq!(
        (files(), journal.load_snapshot("view:big@1").unwrap()),
        (0, None)
    );
    assert_eq!(journal.load_snapshot("view:small@1").unwrap(), None);
    journal.close().await;
}
