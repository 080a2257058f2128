//! Growth benchmark: does hookforge stay as fast and as small as history grows, and does it
//! restart in constant time? Sends distinct signed ~7 KiB GitHub pushes at 64 connections in
//! phases (default 4 x 500,000), printing after each the phase's accepted/s (against a bare warp
//! baseline measured in the same run), its p99, and the process RSS; then restarts the server on
//! the same data directory and prints time to ready and the first API answer.
//!
//! Run: `cargo bench --bench growth` (env: BENCH_WEBHOOKS, BENCH_PHASE, BENCH_CONNECTIONS,
//! BENCH_DATA_DIR to keep the data directory). 2,000,000 webhooks take about 14 GB of disk.

#[path = "support/github_push.rs"]
mod github_push;
#[path = "support/github_rule.rs"]
mod github_rule;
#[path = "support/load.rs"]
mod load;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hookforge::server::Server;
use warp::Filter;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Load is sent in slices this long; a phase ends with the slice that reaches its count.
const SLICE: Duration = Duration::from_secs(5);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's resident set (server and load generator), in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
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

async fn wait_decided(server: &Server, expected: u64) {
    let started = Instant::now();
    while github_rule::decided(server) < expected && started.elapsed() < Duration::from_secs(900) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(payload: Bytes, total: u64, phase: u64, connections: usize, base: f64) {
    let kept = std::env::var_os("BENCH_DATA_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.unwrap_or_else(|| temp.path().to_path_buf());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(github_rule::config(&dir), listener)
        .await
        .unwrap();
    github_rule::create_rule(&format!("http://{}", server.addr)).await;
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
            rss_mib(),
            rate / first
        );
    }
    wait_decided(&server, accepted).await;
    let logs = server.app.views.event_logs.read().count().unwrap();
    assert_eq!(logs, accepted, "one event log per accepted webhook");
    let bytes = server
        .app
        .journal
        .disk_usage()
        .map(|(s, i)| s + i)
        .unwrap_or(0);
    println!(
        "check: {logs} event logs = {accepted} accepted webhooks; journal {:.1} GiB ({} bytes per webhook); views {:.1} GiB",
        bytes as f64 / (1u64 << 30) as f64,
        bytes / accepted.max(1),
        server.app.store.size_on_disk() as f64 / (1u64 << 30) as f64
    );
    server.shutdown().await;

    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(github_rule::config(&dir), listener)
        .await
        .unwrap();
    let ready = started.elapsed();
    let asked = Instant::now();
    let answer = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v2/event_logs/?page_size=1",
            server.addr
        ))
        .bearer_auth(github_rule::ADMIN)
        .send()
        .await
        .unwrap();
    let first_answer = asked.elapsed();
    assert_eq!(answer.status(), 200);
    let count = answer.json::<serde_json::Value>().await.unwrap()["count"].clone();
    println!(
        "restart at {accepted} webhooks: ready in {:.0} ms; first API answer in {:.1} ms (count {count})",
        ready.as_secs_f64() * 1e3,
        first_answer.as_secs_f64() * 1e3
    );
    server.shutdown().await;
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
