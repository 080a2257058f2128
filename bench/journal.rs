//! Journal benchmark: durable appends/s at 1, 16 and 256 concurrent appenders (256-byte events)
//! against raw sled baselines measured in the same run, then full replay of >= 1,000,000 events,
//! then compaction: its rate, what it frees, and what it costs concurrent durable appends
//! (baseline: the same appenders with no compaction running).
//!
//! Run: `cargo bench --bench journal` (env: BENCH_EVENTS, BENCH_REPLAY_EVENTS,
//! BENCH_COMPACT_EVENTS to scale).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use hookforge::journal::{
    CompactionPolicy, EventFilter, ExpectedRevision, Journal, JournalOptions, Metadata, NewEvent,
    ReadOnlyJournal, RecordedEvent,
};

const EVENT_BYTES: usize = 256;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(i: usize) -> NewEvent {
    let mut data = vec![b'x'; EVENT_BYTES];
    data[..8].copy_from_slice(&(i as u64).to_le_bytes());
    NewEvent {
        event_type: "bench.event".into(),
        schema_version: 1,
        metadata: Metadata {
            actor: "bench".into(),
            correlation_id: String::new(),
        },
        data,
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Row {
    name: String,
    events: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    bytes_per_event: f64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

fn print_row(row: &Row, baseline: Option<f64>) {
    let ratio = baseline.map_or(String::from("-"), |b| format!("{:.2}x", row.rate() / b));
    println!(
        "{:<44} {:>10.0} ev/s  p50 {:>8.3} ms  p99 {:>8.3} ms  {:>7.0} B/ev  vs baseline {}",
        row.name,
        row.rate(),
        row.p50.as_secs_f64() * 1e3,
        row.p99.as_secs_f64() * 1e3,
        row.bytes_per_event,
        ratio
    );
}

/// Raw sled: insert + flush per event (one writer, no batching).
fn sled_flush_per_event(events: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let mut latencies = Vec::with_capacity(events);
    let start = Instant::now();
    for i in 0..events {
        let t = Instant::now();
        db.insert((i as u64).to_be_bytes(), event(i).data).unwrap();
        db.flush().unwrap();
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    drop(db);
    Row {
        name: "baseline: raw sled insert+flush per event".into(),
        events,
        elapsed,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        bytes_per_event: dir_bytes(dir.path()) as f64 / events as f64,
    }
}

/// Raw sled: batches of `batch` events, one flush each (the best sled alone can do).
fn sled_batched(events: usize, batch: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while i < events {
        let t = Instant::now();
        let mut b = sled::Batch::default();
        for j in i..(i + batch).min(events) {
            b.insert(&(j as u64).to_be_bytes(), event(j).data);
        }
        db.apply_batch(b).unwrap();
        db.flush().unwrap();
        latencies.push(t.elapsed());
        i += batch;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    drop(db);
    Row {
        name: format!("baseline: raw sled batch of {batch} + one flush"),
        events,
        elapsed,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        bytes_per_event: dir_bytes(dir.path()) as f64 / events as f64,
    }
}

/// The journal with `appenders` concurrent tasks, each awaiting its ticket before the next append.
async fn journal_appenders(events: usize, appenders: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let per_task = events / appenders;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..appenders {
        let journal = journal.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            let stream = format!("bench-{t}");
            for i in 0..per_task {
                let begun = Instant::now();
                journal
                    .append(stream.clone(), ExpectedRevision::Any, vec![event(i)])
                    .await
                    .unwrap();
                latencies.push(begun.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let elapsed = start.elapsed();
    journal.close().await;
    drop(journal);
    latencies.sort();
    Row {
        name: format!("journal: {appenders} concurrent appenders"),
        events: per_task * appenders,
        elapsed,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        bytes_per_event: dir_bytes(dir.path()) as f64 / (per_task * appenders) as f64,
    }
}

async fn replay(total: usize) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(dir.path(), JournalOptions::default()).unwrap());
    let fill = Instant::now();
    let mut pending = Vec::new();
    for i in 0..total {
        pending.push(journal.append(
            format!("replay-{}", i % 1000),
            ExpectedRevision::Any,
            vec![event(i)],
        ));
        if pending.len() == 4096 {
            for t in pending.drain(..) {
                t.await.unwrap();
            }
        }
    }
    for t in pending {
        t.await.unwrap();
    }
    println!(
        "filled {total} events in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    // Live server path: a subscription from 0 that decodes and folds every event.
    let start = Instant::now();
    let mut sub = journal.subscribe(0, EventFilter::All);
    let mut folded = 0u64;
    let mut seen = 0;
    while seen < total {
        for e in sub.next_batch(4096).await.unwrap() {
            folded = folded.wrapping_add(e.position ^ e.data.len() as u64);
            seen += 1;
        }
    }
    let sub_elapsed = start.elapsed();
    journal.close().await;
    drop(sub);
    drop(journal);

    // Offline path: what `hookforge journal replay` reads.
    let reader = ReadOnlyJournal::open(dir.path()).unwrap();
    let start = Instant::now();
    let mut count = 0u64;
    for e in reader.events(0) {
        let e = e.unwrap();
        folded = folded.wrapping_add(e.revision);
        count += 1;
    }
    let offline_elapsed = start.elapsed();
    assert_eq!(count as usize, total);
    drop(reader);

    // Baseline (page cache warm by now): read the segment bytes and walk the frames by their
    // length headers, without checksums or decoding: the floor any reader of these files pays.
    let raw_start = Instant::now();
    let mut raw_bytes = 0u64;
    let mut frames = 0u64;
    for entry in std::fs::read_dir(dir.path().join("segments")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        raw_bytes += bytes.len() as u64;
        let mut at = 0;
        while at + 8 <= bytes.len() {
            at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            frames += 1;
        }
    }
    let raw = raw_start.elapsed();
    assert_eq!(frames as usize, total);
    let raw_rate = total as f64 / raw.as_secs_f64();
    println!(
        "{:<44} {:>10.0} ev/s  ({:.0} MB/s)",
        "baseline: raw segment read + frame walk",
        raw_rate,
        raw_bytes as f64 / raw.as_secs_f64() / 1e6
    );
    for (name, elapsed) in [
        ("replay: subscription decode+fold", sub_elapsed),
        ("replay: offline reader decode+fold", offline_elapsed),
    ] {
        let rate = total as f64 / elapsed.as_secs_f64();
        println!(
            "{name:<44} {rate:>10.0} ev/s  vs baseline {:.2}x",
            rate / raw_rate
        );
    }
    println!("(fold checksum {folded})");
}

fn main() {
    let events = env_usize("BENCH_EVENTS", 200_000);
    let replay_events = env_usize("BENCH_REPLAY_EVENTS", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("== durable appends, {EVENT_BYTES}-byte events ==");
    let per_event = sled_flush_per_event((events / 20).max(1000));
    print_row(&per_event, None);
    let batched = sled_batched(events, 256);
    print_row(&batched, None);
    for appenders in [1, 16, 256] {
        let n = if appenders == 1 {
            (events / 20).max(1000)
        } else {
            events
        };
        let row = runtime.block_on(journal_appenders(n, appenders));
        let baseline = if appenders == 1 {
            per_event.rate()
        } else {
            batched.rate()
        };
        print_row(&row, Some(baseline));
    }
    println!(
        "(ratios: 1 appender vs sled flush-per-event; 16/256 vs sled batch of 256 + one flush)"
    );
    println!("\n== replay ==");
    runtime.block_on(replay(replay_events));
    println!("\n== compaction ==");
    runtime.block_on(compaction(env_usize("BENCH_COMPACT_EVENTS", 12_000)));
}

/// Cuts every `bench.payload` record down to a few bytes.
struct CutAll;

impl CompactionPolicy for CutAll {
    fn payload_owner(&self, event: &RecordedEvent) -> Option<u64> {
        (event.event_type == "bench.payload").then_some(1)
    }
    fn expired_before(&self, _owner: u64) -> Option<i64> {
        Some(i64::MAX)
    }
    fn strip(&self, event: &RecordedEvent) -> Option<Vec<u8>> {
        Some(event.data[..8].to_vec())
    }
}

const PAYLOAD_BYTES: usize = 7 * 1024;

fn compaction_options(sync: bool) -> JournalOptions {
    JournalOptions {
        sync,
        segment_bytes: 8 << 20,
        ..JournalOptions::default()
    }
}

/// A journal of `events` 7 KiB payloads in 8 MiB segments, reopened with durable appends.
async fn payload_journal(dir: &Path, events: usize) -> Journal {
    let journal = Journal::open(dir, compaction_options(false)).unwrap();
    for chunk in 0..events.div_ceil(64) {
        let batch = (0..64)
            .map(|i| NewEvent {
                event_type: "bench.payload".into(),
                data: vec![b'p'; PAYLOAD_BYTES],
                ..event(chunk * 64 + i)
            })
            .collect();
        journal
            .append(
                format!("payload-{}", chunk % 100),
                ExpectedRevision::Any,
                batch,
            )
            .await
            .unwrap();
    }
    journal.close().await;
    drop(journal);
    Journal::open(dir, compaction_options(true)).unwrap()
}

/// 16 durable appenders of 256-byte events until `stop`: (appends, sorted latencies).
async fn append_until(journal: &Journal, stop: Arc<AtomicBool>) -> (usize, Vec<Duration>) {
    let mut handles = Vec::new();
    for t in 0..16 {
        let journal = journal.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let begun = Instant::now();
                journal
                    .append(format!("live-{t}"), ExpectedRevision::Any, vec![event(0)])
                    .await
                    .unwrap();
                latencies.push(begun.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    latencies.sort();
    (latencies.len(), latencies)
}

fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

async fn compaction(events: usize) {
    for (label, rate) in [
        ("paced at the default 32 MiB/s", 32u64 << 20),
        ("unpaced", u64::MAX),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let journal = payload_journal(dir.path(), events).await;
        let before = allocated(dir.path());

        let stop = Arc::new(AtomicBool::new(false));
        let alone = {
            let stop2 = stop.clone();
            let timer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                stop2.store(true, Ordering::Relaxed);
            });
            let started = Instant::now();
            let (n, latencies) = append_until(&journal, stop).await;
            timer.await.unwrap();
            (
                n as f64 / started.elapsed().as_secs_f64(),
                percentile(&latencies, 0.99),
            )
        };

        let stop = Arc::new(AtomicBool::new(false));
        let compactor = {
            let journal = journal.clone();
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let report = journal.compact(&CutAll, rate).unwrap();
                stop.store(true, Ordering::Relaxed);
                (report, started.elapsed())
            })
        };
        let started = Instant::now();
        let (n, latencies) = append_until(&journal, stop).await;
        let mixed = (
            n as f64 / started.elapsed().as_secs_f64(),
            percentile(&latencies, 0.99),
        );
        let (report, took) = compactor.await.unwrap();
        journal.close().await;
        drop(journal);

        println!(
            "compaction {label}: {events} x 7 KiB payloads, {} segments rewritten",
            report.segments_rewritten
        );
        // Each segment is read twice here: once to summarise it, once to copy it.
        println!(
            "  {} records cut in {:.2} s ({:.0} records/s, {:.0} MiB/s read); {:.1} of {:.1} MiB reclaimed",
            report.records_compacted,
            took.as_secs_f64(),
            report.records_compacted as f64 / took.as_secs_f64(),
            2.0 * before as f64 / (1 << 20) as f64 / took.as_secs_f64(),
            report.bytes_reclaimed as f64 / (1 << 20) as f64,
            before as f64 / (1 << 20) as f64,
        );
        println!(
            "  16 durable appenders: alone {:.0}/s p99 {:.2} ms; during compaction {:.0}/s p99 {:.2} ms ({:.2}x)",
            alone.0,
            alone.1.as_secs_f64() * 1e3,
            mixed.0,
            mixed.1.as_secs_f64() * 1e3,
            mixed.0 / alone.0,
        );
        let verified = ReadOnlyJournal::open(dir.path())
            .unwrap()
            .verify(|_| {})
            .unwrap();
        assert!(verified.is_ok(), "{verified:?}");
        assert_eq!(verified.compacted, report.records_compacted);
    }
}
