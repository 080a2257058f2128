//! Outbound benchmark, against the real `hookforge serve` binary (a separate process, so its
//! memory is measured alone) and a local receiver answering 204:
//!
//! 1. Throughput: events published to 100 endpoints, deliveries/s from the first publish to the
//!    last receiver acknowledgement, against a baseline measured in the same run: the same
//!    receiver loaded directly by the same client (`DeliveryClient`, signed requests of the same
//!    size, as many in flight as the server allows: 100 endpoints x `max_in_flight` 4).
//! 2. Latency, not saturated: one event every 50 ms to the 100 endpoints, p50/p99 from the start
//!    of the publish request to each delivery's arrival at the receiver.
//! 3. Intake under delivery load: signed webhooks (unique delivery ids, 16 connections) for 5 s,
//!    first alone, then while the server delivers to the 100 endpoints; accepted/s and p99 of the
//!    202s in both, and the count of event logs checked against the requests.
//! 4. Memory: resident set of the server with 100,000 pending retries (1,000 events to 100
//!    endpoints whose receiver answers 500, next retry an hour away).
//!
//! Run: `cargo bench --bench outbound` (env: BENCH_EVENTS, default 400, i.e. 40,000 deliveries;
//! BENCH_PENDING_EVENTS, default 1000; BENCH_PUBLISHERS, concurrent publishing clients, default 16).

#[path = "support/server_process.rs"]
mod server_process;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookforge::delivery::signing::signed_headers;
use hookforge::delivery::{ClientConfig, DeliveryClient, OutboundRequest};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use warp::Filter;

const TOKEN: &str = "bench-admin-token-0123456789";
const ENDPOINTS: usize = 100;
const MAX_IN_FLIGHT: usize = 4;
const INTAKE_KEY: &str = "bench-intake-key";
const INTAKE_CONNECTIONS: usize = 16;
const INTAKE_WINDOW: Duration = Duration::from_secs(5);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A receiver that counts requests per path and notes when each event (by `payload.seq`)
/// arrived, when asked to.
#[derive(Clone, Default)]
struct Receiver {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    track: Arc<std::sync::atomic::AtomicBool>,
    arrivals: Arc<Mutex<Vec<(u64, Instant)>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        let filter = warp::path::full().and(warp::body::bytes()).map(
            move |path: warp::path::FullPath, body: Bytes| {
                let status = if path.as_str() == "/fail" {
                    me.failed.fetch_add(1, Ordering::Relaxed);
                    500
                } else {
                    if me.track.load(Ordering::Relaxed)
                        && let Ok(v) = serde_json::from_slice::<Value>(&body)
                        && let Some(seq) = v["payload"]["seq"].as_u64()
                    {
                        me.arrivals.lock().unwrap().push((seq, Instant::now()));
                    }
                    me.ok.fetch_add(1, Ordering::Relaxed);
                    204
                };
                warp::reply::with_status(
                    warp::reply(),
                    warp::http::StatusCode::from_u16(status).unwrap(),
                )
            },
        );
        tokio::spawn(warp::serve(filter).incoming(listener).run());
        format!("http://{addr}")
    }
}

struct Server {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(dir: &std::path::Path) -> Server {
        // OUTBOUND_BENCH_BIN overrides the binary (a target directory shared by several
        // checkouts may hold another checkout's build).
        let binary = std::env::var("OUTBOUND_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookforge").to_owned());
        let mut child = tokio::process::Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("HOOKFORGE_ADMIN_TOKEN", TOKEN)
            .env("HOOKFORGE_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true")
            .env("HOOKFORGE_LOG_LEVEL", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("hookforge starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next_line().await.unwrap().expect("start-up line");
        let base = line
            .trim_start_matches("hookforge listening on ")
            .to_owned();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        Server {
            child,
            base,
            client,
        }
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn metric(&self, name: &str) -> f64 {
        server_process::metric(&self.base, name).await
    }

    fn rss_mib(&self) -> f64 {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        kb / 1024.0
    }

    async fn setup(&self, url: &str, retry: Value) -> u64 {
        let org = self
            .call("/api/v2/organizations/", json!({"name": "bench"}))
            .await["id"]
            .as_u64()
            .unwrap();
        for i in 0..ENDPOINTS {
            self.call(
                "/api/v2/outbound_webhooks/",
                json!({"name": format!("e{i}"), "organization": org, "url": url, "events": ["bench.*"], "retry": retry}),
            )
            .await;
        }
        org
    }

    async fn intake_rule(&self, org: u64) -> u64 {
        self.call(
            "/api/v2/event_rules/",
            json!({"name": "intake", "organization": org, "webhook_path": "intake", "webhook_key": INTAKE_KEY, "conditions": [{"expression": "event.n >= 0"}]}),
        )
        .await["id"]
            .as_u64()
            .unwrap()
    }

    /// Sends signed webhooks with unique delivery ids (`tag-<n>`) on `INTAKE_CONNECTIONS`
    /// connections for `INTAKE_WINDOW`; every answer must be a 202. The latencies, sorted.
    async fn intake(&self, tag: &str) -> Vec<Duration> {
        let url = format!("{}/api/v2/eda_webhooks/intake/", self.base);
        let seq = AtomicU64::new(0);
        let deadline = Instant::now() + INTAKE_WINDOW;
        let senders = (0..INTAKE_CONNECTIONS).map(|_| async {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let body =
                    serde_json::to_vec(&json!({"n": n, "tag": tag, "pad": "x".repeat(1000)}))
                        .unwrap();
                let signature = hookforge::signing::hmac_sha256_hex(INTAKE_KEY.as_bytes(), &body);
                let sent = Instant::now();
                let response = self
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-forge-delivery", format!("{tag}-{n}"))
                    .header("x-forge-signature", format!("sha256={signature}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
                latencies.push(sent.elapsed());
            }
            latencies
        });
        let mut all: Vec<Duration> = futures::future::join_all(senders)
            .await
            .into_iter()
            .flatten()
            .collect();
        all.sort();
        all
    }

    async fn event_logs(&self, rule: u64) -> u64 {
        let response = self
            .client
            .get(format!(
                "{}/api/v2/event_logs/?event_rule={rule}&page_size=1",
                self.base
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let page: Value = response.json().await.unwrap();
        page["count"].as_u64().unwrap()
    }

    async fn publish(&self, org: u64, seq: u64) {
        let body = json!({"organization": org, "event_type": "bench.event", "payload": {"seq": seq, "pad": "x".repeat(200)}});
        self.call("/api/v2/events/", body).await;
    }
}

async fn wait_for(counter: &AtomicU64, target: u64, limit: Duration) -> Instant {
    let started = Instant::now();
    while counter.load(Ordering::Relaxed) < target {
        assert!(
            started.elapsed() < limit,
            "only {} of {target} after {limit:?}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Instant::now()
}

/// The direct baseline: the same receiver, the same client, `MAX_IN_FLIGHT * ENDPOINTS` in flight.
async fn baseline(url: &str, requests: usize) -> f64 {
    let client = DeliveryClient::new(&ClientConfig {
        allow_private_networks: true,
        ..ClientConfig::default()
    })
    .unwrap();
    let url = url::Url::parse(url).unwrap();
    let body = Bytes::from(json!({"event": "bench.event", "delivery_id": "msg_x", "organization_id": "1", "resource_type": "",
        "resource_id": "", "payload": {"seq": 0, "pad": "x".repeat(200)}, "occurred_at": "2025-01-01T00:00:00Z"}).to_string());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..ENDPOINTS * MAX_IN_FLIGHT)
        .map(|_| {
            let (client, url, body, next) =
                (client.clone(), url.clone(), body.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < requests as u64 {
                    let now = chrono::Utc::now().timestamp();
                    let headers = signed_headers(
                        "bench.event",
                        "msg_x",
                        now,
                        &body,
                        &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                        &[],
                    )
                    .unwrap();
                    let request = OutboundRequest {
                        url: url.clone(),
                        headers,
                        body: body.clone(),
                        timeout: Duration::from_secs(10),
                        ssl_verify: true,
                    };
                    assert!(client.send(&request).await.is_success());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

async fn run() {
    let events = env_usize("BENCH_EVENTS", 400) as u64;
    let pending_events = env_usize("BENCH_PENDING_EVENTS", 1000) as u64;
    let receiver = Receiver::default();
    let base = receiver.start().await;
    let ok_url = format!("{base}/ok");

    // 1. Throughput.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let org = server.setup(&ok_url, json!({})).await;
    let idle_rss = server.rss_mib();
    let deliveries = events * ENDPOINTS as u64;
    let before = receiver.ok.load(Ordering::Relaxed);
    let started = Instant::now();
    let seq = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..env_usize("BENCH_PUBLISHERS", 16))
        .map(|_| {
            let (server, seq) = (&server, seq.clone());
            async move {
                loop {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    if n >= events {
                        break;
                    }
                    server.publish(org, n).await;
                }
            }
        })
        .collect();
    futures::future::join_all(publishers).await;
    let published = started.elapsed();
    let done = wait_for(&receiver.ok, before + deliveries, Duration::from_secs(600)).await;
    let elapsed = done - started;
    let e2e = deliveries as f64 / elapsed.as_secs_f64();
    let loaded_rss = server.rss_mib();
    let direct = baseline(&ok_url, deliveries as usize).await;
    println!("Throughput: {events} events x {ENDPOINTS} endpoints = {deliveries} deliveries");
    println!(
        "  published in {published:.2?} ({:.0} events/s accepted)",
        events as f64 / published.as_secs_f64()
    );
    println!("  delivered in {elapsed:.2?}: {e2e:.0} deliveries/s end to end");
    println!(
        "  direct baseline (same receiver, same client, {} in flight): {direct:.0} requests/s",
        ENDPOINTS * MAX_IN_FLIGHT
    );
    println!("  ratio end-to-end / direct: {:.2}", e2e / direct);
    println!(
        "  server RSS: {idle_rss:.0} MiB idle with {ENDPOINTS} endpoints, {loaded_rss:.0} MiB after the run"
    );

    // 2. Latency when not saturated.
    receiver.arrivals.lock().unwrap().clear();
    receiver.track.store(true, Ordering::Relaxed);
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let latency_events = 100u64;
    let before = receiver.ok.load(Ordering::Relaxed);
    for n in 0..latency_events {
        let seq = 1_000_000 + n;
        sent.insert(seq, Instant::now());
        server.publish(org, seq).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(
        &receiver.ok,
        before + latency_events * ENDPOINTS as u64,
        Duration::from_secs(60),
    )
    .await;
    receiver.track.store(false, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = receiver
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(seq, at)| sent.get(seq).map(|s| *at - *s))
        .collect();
    latencies.sort();
    println!(
        "Latency (1 event / 50 ms to {ENDPOINTS} endpoints = {} deliveries/s): publish-to-delivery p50 {:.1?}, p99 {:.1?}, max {:.1?} over {} deliveries",
        ENDPOINTS * 20,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );

    // 3. Intake alone, then while deliveries run on the same cores.
    let rule = server.intake_rule(org).await;
    let alone = server.intake("alone").await;
    let before = receiver.ok.load(Ordering::Relaxed);
    let publishing = async {
        for n in 0..events {
            server.publish(org, 2_000_000 + n).await;
        }
    };
    let (mixed, ()) = tokio::join!(server.intake("mixed"), publishing);
    let delivered_meanwhile = receiver.ok.load(Ordering::Relaxed) - before;
    let requests = (alone.len() + mixed.len()) as u64;
    let started = Instant::now();
    while server.event_logs(rule).await < requests {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "event logs missing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.event_logs(rule).await,
        requests,
        "one event log per request"
    );
    let rate = |l: &[Duration]| l.len() as f64 / INTAKE_WINDOW.as_secs_f64();
    println!(
        "Intake ({INTAKE_CONNECTIONS} connections, 1 KiB signed webhooks, {requests} event logs = requests):"
    );
    println!(
        "  alone:                 {:.0} accepted/s, p50 {:.1?}, p99 {:.1?}",
        rate(&alone),
        percentile(&alone, 0.5),
        percentile(&alone, 0.99)
    );
    println!(
        "  while delivering:      {:.0} accepted/s, p50 {:.1?}, p99 {:.1?} ({delivered_meanwhile} deliveries in the window and after)",
        rate(&mixed),
        percentile(&mixed, 0.5),
        percentile(&mixed, 0.99)
    );
    println!(
        "  ratio mixed / alone:   {:.2} accepted/s",
        rate(&mixed) / rate(&alone)
    );
    drop(server);

    // 4. Memory with 100,000 pending retries.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let org = server
        .setup(
            &format!("{base}/fail"),
            json!({"initial_delay_seconds": 3600, "max_delay_seconds": 3600}),
        )
        .await;
    let idle_rss = server.rss_mib();
    let started = Instant::now();
    for n in 0..pending_events {
        server.publish(org, n).await;
    }
    let target = pending_events * ENDPOINTS as u64;
    wait_for(&receiver.failed, target, Duration::from_secs(900)).await;
    loop {
        if server
            .metric("hookforge_outbound_attempts_failed_total")
            .await as u64
            >= target
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = server.metric("hookforge_outbound_pending_deliveries").await;
    let rss = server.rss_mib();
    println!(
        "Memory: {pending:.0} pending retries (first attempt failed, next in 1 h) after {:.1?}: server RSS {rss:.0} MiB ({idle_rss:.0} MiB before)",
        started.elapsed()
    );

    // The same state after a clean restart: rebuilt from snapshots, without what the run itself
    // left in the allocator.
    let mut server = server;
    let pid = server.child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    server.child.wait().await.unwrap();
    let restarted = Server::start(dir.path()).await;
    let started = Instant::now();
    loop {
        if restarted
            .metric("hookforge_outbound_pending_deliveries")
            .await
            >= pending
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "pending retries not restored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  after a clean restart: {} pending retries restored in {:.1?}, server RSS {:.0} MiB",
        restarted
            .metric("hookforge_outbound_pending_deliveries")
            .await,
        started.elapsed(),
        restarted.rss_mib()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}
