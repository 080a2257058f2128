//! Growth benchmark: does hookforge stay as fast and as small as history grows, and does it
//! restart in constant time? Runs the real binary (so RSS is the server's alone) and sends
//! distinct signed ~7 KiB GitHub pushes at 64 connections in phases (default 4 x 500,000),
//! printing after each the phase's accepted/s (against a bare warp baseline measured in the same
//! run), its p99, and the server's RSS; then restarts the server on the same data directory and
//! prints time to ready, the first API answer, and RSS after the restart.
//!
//! Run: `cargo bench --bench growth` (env: BENCH_WEBHOOKS, BENCH_PHASE, BENCH_CONNECTIONS,
//! BENCH_DATA_DIR to keep the data directory). 2,000,000 webhooks take about 20 GB of disk.

#[path = "support/github_push.rs"]
mod github_push;
#[path = "support/github_rule.rs"]
mod github_rule;
#[path = "support/load.rs"]
mod load;
#[path = "support/server_process.rs"]
mod server_process;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use server_process::ServerProcess;
use warp::Filter;

/// Load is sent in slices this long; a phase ends with the slice that reaches its count.
const SLICE: Duration = Duration::from_secs(5);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn baseline(payload: Bytes, connections: usize) -> f64 {
    let route = warp::post()
        .and(warp::body::bytes())
        .map(|body: Bytes| format!("{}", body.len()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(warp::serve(route).incoming(listener).run());
    let make: std::sync::Arc<
        dyn Fn(u64) -> hyper::Request<http_body_util::Full<Bytes>> + Send + Sync,
    > = std::sync::Arc::new(move |_| {
        hyper::Request::post("/")
            .header("host", "bench")
            .body(http_body_util::Full::new(payload.clone()))
            .unwrap()
    });
    let report = load::run(addr, connections, SLICE, make).await;
    server.abort();
    report.rate(200)
}

/// The API's exact count of event logs (`query` filters them).
async fn event_logs(base: &str, query: &str) -> u64 {
    let page: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/v2/event_logs/?page_size=1{query}"))
        .bearer_auth(github_rule::ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["count"].as_u64().expect("a count")
}

/// Waits until the rule has decided `expected` webhooks (every push matches).
async fn wait_decided(base: &str, expected: u64) {
    let started = Instant::now();
    while event_logs(base, "&status=matched").await < expected
        && started.elapsed() < Duration::from_secs(900)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Bytes the files under `dir` take on disk.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

async fn run(payload: Bytes, total: u64, phase: u64, connections: usize, base: f64) {
    let kept = std::env::var_os("BENCH_DATA_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.unwrap_or_else(|| temp.path().to_path_buf());
    let server = ServerProcess::start(&dir, github_rule::ADMIN, &[]).await;
    github_rule::create_rule(&server.base).await;
    let make = github_rule::pushes(payload);
    let mut accepted = 0u64;
    let mut first_rate = None;
    println!(
        "{:>10} {:>12} {:>8} {:>10} {:>9}",
        "webhooks", "accepted/s", "ratio", "p99 ms", "RSS MiB"
    );
    while accepted < total {
        let target = (accepted + phase).min(total);
        let (start, mut latencies, mut answered) = (Instant::now(), Vec::new(), 0u64);
        while accepted < target {
            let report = load::run(server.addr, connections, SLICE, make.clone()).await;
            let others: Vec<_> = report.statuses.iter().filter(|(s, _)| **s != 202).collect();
            assert!(others.is_empty(), "non-202 answers: {others:?}");
            let ok = report.statuses.get(&202).copied().unwrap_or(0);
            accepted += ok;
            answered += ok;
            latencies.extend(report.latencies);
        }
        let rate = answered as f64 / start.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let phase_report = load::LoadReport {
            statuses: [(202, answered)].into(),
            latencies,
            elapsed: start.elapsed(),
        };
        let p99 = phase_report.quantile(0.99);
        let first = *first_rate.get_or_insert(rate);
        println!(
            "{accepted:>10} {rate:>12.0} {:>7.3}x {:>10.2} {:>9.0}   (rate vs first phase {:.2})",
            rate / base,
            p99.as_secs_f64() * 1e3,
            server.rss_mib(),
            rate / first
        );
    }
    wait_decided(&server.base, accepted).await;
    let logs = event_logs(&server.base, "").await;
    assert_eq!(logs, accepted, "one event log per accepted webhook");
    let rss_loaded = server.rss_mib();
    server.stop();
    let journal = disk_bytes(&dir.join("journal"));
    println!(
        "check: {logs} event logs = {accepted} accepted webhooks; journal {:.1} GiB ({} bytes per webhook; its index {:.2} GiB); views {:.2} GiB; RSS {rss_loaded:.0} MiB once decided",
        gib(journal),
        journal / accepted.max(1),
        gib(disk_bytes(&dir.join("journal").join("index"))),
        gib(disk_bytes(&dir.join("views"))),
    );

    let server = ServerProcess::start(&dir, github_rule::ADMIN, &[]).await;
    let asked = Instant::now();
    let count = event_logs(&server.base, "").await;
    let first_answer = asked.elapsed();
    assert_eq!(count, accepted, "every event log is still there");
    let rss_ready = server.rss_mib();
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "restart at {accepted} webhooks: ready in {:.0} ms; first API answer in {:.1} ms (count {count}); RSS {rss_ready:.0} MiB at ready, {:.0} MiB 5 s later",
        server.ready_in.as_secs_f64() * 1e3,
        first_answer.as_secs_f64() * 1e3,
        server.rss_mib()
    );
    server.stop();
}

fn main() {
    let total = env_u64("BENCH_WEBHOOKS", 2_000_000);
    let phase = env_u64("BENCH_PHASE", 500_000).max(1);
    let connections = env_u64("BENCH_CONNECTIONS", 64) as usize;
    let payload = Bytes::from(github_push::push_payload());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "== growth: {total} x {} byte GitHub pushes, {connections} connections, phases of {phase} ==",
        payload.len()
    );
    let base = runtime.block_on(baseline(payload.clone(), connections));
    println!("baseline: bare warp POST, read body, 200: {base:.0} req/s");
    runtime.block_on(run(payload, total, phase, connections, base));
}
