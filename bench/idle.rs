//! Idle-resources benchmark: what 100,000 rules and 100,000 outbound endpoints cost when nothing
//! happens to them, and how long the server takes to start with them defined.
//!
//! Runs the real binary (so RSS is the server's alone) on one data directory:
//! 1. empty: time to ready and RSS (the baseline of this run);
//! 2. defines the rules and endpoints over the HTTP API, waits until every actor is passivated
//!    (`hookforge_actors_asleep`), and reads RSS;
//! 3. restarts: time to ready, RSS, and whether a webhook to an asleep rule is still decided and
//!    an event still reaches an asleep endpoint's receiver (waking both);
//! 4. restarts with passivation off (`actors.idle_seconds = 0`, every actor started), for
//!    comparison.
//!
//! Run: `cargo bench --bench idle` (env: BENCH_RULES, BENCH_ENDPOINTS, default 100,000 each).
//! The bench passivates after 1 s of idleness (not the default 300 s) and creates with
//! `journal.sync = false` so that defining 200,000 resources takes a minute, not an hour.

#[path = "support/server_process.rs"]
mod server_process;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_process::{ServerProcess, metric};

const ADMIN: &str = "benchmark-admin-token-0123456789";
const KEY: &str = "benchmark-webhook-key-0123456789";
const CONCURRENCY: u64 = 32;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn start(dir: &Path, idle_seconds: u64) -> ServerProcess {
    let idle = idle_seconds.to_string();
    ServerProcess::start(
        dir,
        ADMIN,
        &[
            ("HOOKFORGE_JOURNAL__SYNC", "false"),
            ("HOOKFORGE_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true"),
            ("HOOKFORGE_ACTORS__IDLE_SECONDS", &idle),
        ],
    )
    .await
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Creates `count` resources with `make(n, org)` as the body of POST `path`, CONCURRENCY at a
/// time; returns the rate and the id of resource `count / 2`.
async fn define(
    base: &str,
    path: &str,
    count: u64,
    make: fn(u64, u64) -> Value,
    org: u64,
) -> (f64, u64) {
    let started = Instant::now();
    let middle = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, middle, url) = (next.clone(), middle.clone(), format!("{base}{path}"));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let created = post(&client, url.clone(), make(n, org)).await;
                    if n == count / 2 {
                        middle.store(created["id"].as_u64().unwrap(), Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    (rate, middle.load(Ordering::Relaxed))
}

fn rule(n: u64, org: u64) -> Value {
    json!({"name": format!("rule-{n}"), "organization": org, "source_type": "webhook_generic",
        "webhook_path": format!("idle-{n}"), "webhook_key": KEY,
        "conditions": [{"expression": "event.n > 0"}], "throttle_seconds": 60, "throttle_key": "event.host"})
}

fn endpoint(n: u64, org: u64) -> Value {
    json!({"name": format!("endpoint-{n}"), "organization": org,
        "url": format!("http://127.0.0.1:9/idle/{n}"), "events": [format!("idle.{n}")]})
}

async fn asleep(base: &str) -> f64 {
    metric(base, "hookforge_actors_asleep{kind=\"rule\"}").await
        + metric(base, "hookforge_actors_asleep{kind=\"endpoint\"}").await
}

async fn wait_all_asleep(base: &str, total: f64) -> Duration {
    let started = Instant::now();
    while asleep(base).await < total {
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {} of {total} asleep",
            asleep(base).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed()
}

/// Sends one signed webhook to rule `n` and waits until it is decided; returns the time taken.
async fn webhook_decided(base: &str, n: u64) -> Duration {
    let started = Instant::now();
    let body = serde_json::to_vec(&json!({"n": 1, "host": "a"})).unwrap();
    let signature = format!(
        "sha256={}",
        hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), &body)
    );
    let client = reqwest::Client::new();
    let accepted: Value = client
        .post(format!("{base}/api/v2/eda_webhooks/idle-{n}/"))
        .header("content-type", "application/json")
        .header("x-forge-event", "bench")
        .header("x-forge-delivery", format!("wake-{n}"))
        .header("x-forge-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["event_log_id"].as_u64().expect("accepted");
    loop {
        let log: Value = client
            .get(format!("{base}/api/v2/event_logs/{id}/"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log["status"] != "received" {
            assert_eq!(log["status"], "matched", "{log}");
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never decided");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Publishes the event endpoint `n` (id `endpoint`) subscribes to; returns the time until its
/// delivery is recorded.
async fn event_delivered(base: &str, org: u64, n: u64, endpoint: u64) -> Duration {
    let started = Instant::now();
    let client = reqwest::Client::new();
    post(
        &client,
        format!("{base}/api/v2/events/"),
        json!({"organization": org, "event_type": format!("idle.{n}"), "payload": {"n": n}}),
    )
    .await;
    loop {
        let page: Value = client
            .get(format!(
                "{base}/api/v2/outbound_webhooks/{endpoint}/deliveries/"
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["count"].as_u64().unwrap_or(0) > 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never scheduled: {page}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main]
async fn main() {
    let rules = env_u64("BENCH_RULES", 100_000);
    let endpoints = env_u64("BENCH_ENDPOINTS", 100_000);
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("BENCH_DATA_DIR").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());
    let defined = dir.join("bench-idle.json");
    if let Ok(text) = std::fs::read_to_string(&defined) {
        // Defined by an earlier run (BENCH_DATA_DIR): measure the restarts only.
        let ids: Value = serde_json::from_str(&text).unwrap();
        let (org, middle) = (
            ids["org"].as_u64().unwrap(),
            ids["endpoint"].as_u64().unwrap(),
        );
        restarts(dir, rules, endpoints, org, middle, None).await;
        return;
    }

    let server = start(dir, 1).await;
    let (empty_ready, empty_rss) = (server.ready_in, server.rss_mib());
    println!(
        "empty: ready in {:.3} s, RSS {empty_rss:.0} MiB (baseline)",
        empty_ready.as_secs_f64()
    );
    let client = reqwest::Client::new();
    let org = post(
        &client,
        format!("{}/api/v2/organizations/", server.base),
        json!({"name": "idle"}),
    )
    .await["id"]
        .as_u64()
        .unwrap();
    let (rate, _) = define(&server.base, "/api/v2/event_rules/", rules, rule, org).await;
    println!("defined {rules} rules ({rate:.0}/s)");
    let (rate, middle_endpoint) = define(
        &server.base,
        "/api/v2/outbound_webhooks/",
        endpoints,
        endpoint,
        org,
    )
    .await;
    println!("defined {endpoints} endpoints ({rate:.0}/s)");
    let awake_rss = server.rss_mib();
    let slept = wait_all_asleep(&server.base, (rules + endpoints) as f64).await;
    println!(
        "all asleep {:.1} s after the last definition; RSS {:.0} MiB then (just defined, awake: {awake_rss:.0} MiB)",
        slept.as_secs_f64(),
        server.rss_mib()
    );
    server.stop();
    std::fs::write(
        &defined,
        json!({"org": org, "endpoint": middle_endpoint}).to_string(),
    )
    .unwrap();
    restarts(
        dir,
        rules,
        endpoints,
        org,
        middle_endpoint,
        Some((empty_ready, empty_rss)),
    )
    .await;
}

/// Restarts on the defined data directory: with passivation (all asleep), then without.
async fn restarts(
    dir: &Path,
    rules: u64,
    endpoints: u64,
    org: u64,
    middle_endpoint: u64,
    empty: Option<(Duration, f64)>,
) {
    let server = start(dir, 1).await;
    let asleep_now = asleep(&server.base).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ready, rss) = (server.ready_in, server.rss_mib());
    let ratios = empty.map_or(String::new(), |(empty_ready, empty_rss)| {
        format!(
            " ({:.1}x and {:.1}x empty)",
            ready.as_secs_f64() / empty_ready.as_secs_f64(),
            rss / empty_rss
        )
    });
    println!(
        "restart, {rules} rules + {endpoints} endpoints asleep ({asleep_now:.0} in the gauge): ready in {:.3} s, RSS {rss:.0} MiB{ratios}",
        ready.as_secs_f64(),
    );
    if rules > 0 {
        let woke = webhook_decided(&server.base, rules / 2).await;
        println!(
            "waking: a webhook to an asleep rule decided in {:.1} ms",
            woke.as_secs_f64() * 1e3
        );
    }
    if endpoints > 0 {
        let woke = event_delivered(&server.base, org, endpoints / 2, middle_endpoint).await;
        println!(
            "waking: an event to an asleep endpoint scheduled in {:.1} ms",
            woke.as_secs_f64() * 1e3
        );
    }
    server.stop();

    let server = start(dir, 0).await;
    let (ready_awake, started_rss) = (server.ready_in, server.rss_mib());
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "for comparison, passivation off (every actor started): ready in {:.3} s, RSS {started_rss:.0} MiB at ready, {:.0} MiB 5 s later",
        ready_awake.as_secs_f64(),
        server.rss_mib()
    );
    server.stop();
}
