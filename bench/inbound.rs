//! Inbound benchmark: signed ~7 KiB GitHub push deliveries at 64 connections against one rule
//! with 3 CEL conditions, with durable acknowledgement (journal.sync = true), against a baseline
//! measured in the same run: a bare warp handler that reads the body and answers 200.
//! Also reports how fast the rule actor decides (CEL evaluations/s) behind the 202s.
//!
//! Run: `cargo bench --bench inbound` (env: BENCH_SECONDS, BENCH_CONNECTIONS).

#[path = "support/github_push.rs"]
mod github_push;
#[path = "support/github_rule.rs"]
mod github_rule;
#[path = "support/load.rs"]
mod load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookforge::server::Server;
use http_body_util::Full;
use hyper::Request;
use warp::Filter;

// The same allocator as the `hookforge` binary (decision 0009), so figures match production.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print(name: &str, report: &load::LoadReport, status: u16, baseline: Option<f64>) {
    let ratio = baseline.map_or("-".to_string(), |b| {
        format!("{:.3}x", report.rate(status) / b)
    });
    println!(
        "{name:<46} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  (status {status}: {}, all: {:?})  vs baseline {ratio}",
        report.rate(status),
        report.quantile(0.5).as_secs_f64() * 1e3,
        report.quantile(0.99).as_secs_f64() * 1e3,
        report.statuses.get(&status).copied().unwrap_or(0),
        report.statuses,
    );
}

async fn baseline(payload: Bytes, seconds: Duration, connections: usize) -> load::LoadReport {
    let route = warp::post()
        .and(warp::body::bytes())
        .map(|body: Bytes| format!("{}", body.len()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(warp::serve(route).incoming(listener).run());
    let make: Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync> = Arc::new(move |_| {
        Request::post("/")
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(payload.clone()))
            .unwrap()
    });
    load::run(addr, connections, Duration::from_millis(500), make.clone()).await;
    let report = load::run(addr, connections, seconds, make).await;
    server.abort();
    report
}

async fn hookforge(
    payload: Bytes,
    seconds: Duration,
    connections: usize,
) -> (load::LoadReport, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(github_rule::config(dir.path()), listener)
        .await
        .unwrap();
    github_rule::create_rule(&format!("http://{}", server.addr)).await;
    let make = github_rule::pushes(payload);
    let started = Instant::now();
    let warm_up = load::run(
        server.addr,
        connections,
        Duration::from_millis(500),
        make.clone(),
    )
    .await;
    let warmed = warm_up.statuses.get(&202).copied().unwrap_or(0);
    let report = load::run(server.addr, connections, seconds, make).await;
    // The rule actor decides behind the 202s: wait until it has caught up.
    let total_received = report.statuses.get(&202).copied().unwrap_or(0);
    let mut decided;
    loop {
        decided = github_rule::decided(&server);
        if decided >= warmed + total_received || started.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let decide_rate = decided as f64 / started.elapsed().as_secs_f64();
    // Every request must have been a new webhook: no duplicate, no error, one event log each.
    let others: Vec<_> = report.statuses.iter().filter(|(s, _)| **s != 202).collect();
    assert!(others.is_empty(), "non-202 answers: {others:?}");
    let logs = server.app.views.event_logs.read().count().unwrap();
    assert_eq!(
        logs,
        warmed + total_received,
        "one event log per accepted webhook"
    );
    println!(
        "{:<46} {logs} event logs = {warmed} warm-up + {total_received} measured webhooks",
        "check"
    );
    let bytes = server
        .app
        .journal
        .disk_usage()
        .map(|(s, i)| s + i)
        .unwrap_or(0);
    server.shutdown().await;
    (report, decide_rate, bytes / decided.max(1))
}

fn main() {
    let seconds = Duration::from_secs(env_u64("BENCH_SECONDS", 5));
    let connections = env_u64("BENCH_CONNECTIONS", 64) as usize;
    let payload = Bytes::from(github_push::push_payload());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "== inbound: {} byte GitHub push, {connections} connections, {} s ==",
        payload.len(),
        seconds.as_secs()
    );
    // BENCH_PROFILE=1 skips the baseline, so that a profiler attached to this process sees the
    // server's work only.
    let profiling = std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "1");
    let base = if profiling {
        None
    } else {
        let base = runtime.block_on(baseline(payload.clone(), seconds, connections));
        print("baseline: bare warp POST, read body, 200", &base, 200, None);
        Some(base.rate(200))
    };
    let (report, decide_rate, bytes_per_event) =
        runtime.block_on(hookforge(payload, seconds, connections));
    print(
        "hookforge: verify + durable journal + 202",
        &report,
        202,
        base,
    );
    println!(
        "{:<46} {decide_rate:>9.0} decisions/s ({:.0} CEL evaluations/s, 3 conditions each), {bytes_per_event} bytes on disk per webhook",
        "rule actor behind the 202s",
        decide_rate * 3.0
    );
}
