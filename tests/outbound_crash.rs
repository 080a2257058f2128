//! Crash safety of outbound delivery: the real binary is SIGKILLed again and again while it
//! delivers to a receiver that fails the first attempts. Afterwards every accepted event has
//! exactly one delivery, every delivery ends delivered, and the only duplicates the receiver
//! saw are attempts a crash between sending and recording explains.

mod outbound_support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use outbound_support::{ADMIN_TOKEN, Receiver, Reply};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const EVENTS: u64 = 150;
const KILLS: usize = 6;
const MAX_IN_FLIGHT: u64 = 4;

struct Binary {
    child: Child,
    base: String,
}

/// The binary under test. `OUTBOUND_TEST_BIN` overrides it (not `HOOKFORGE_`-prefixed: the server reads those as configuration): with a target directory shared
/// by several checkouts, `target/debug/hookforge` may have been rebuilt from another one.
fn binary() -> String {
    std::env::var("OUTBOUND_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookforge").to_owned())
}

async fn spawn(dir: &std::path::Path) -> Binary {
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("HOOKFORGE_ADMIN_TOKEN", ADMIN_TOKEN)
        // The receiver is on loopback: operators allow that with exactly this variable.
        .env("HOOKFORGE_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true")
        .env("HOOKFORGE_LOG_LEVEL", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the hookforge binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("started in time")
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("hookforge listening on ")
        .expect("the documented start-up line")
        .to_owned();
    // Read models catch up from their snapshots after start-up; /readyz says when.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
        != Some(200)
    {
        assert!(Instant::now() < deadline, "not ready in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let root: Value = client
        .get(format!("{base}/api/v2/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        root["outbound_webhooks"].is_string(),
        "{} is not a build with outbound webhooks (shared target dir?)",
        binary()
    );
    Binary { child, base }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn all_deliveries(client: &reqwest::Client, base: &str, endpoint: u64) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let url = format!(
            "{base}/api/v2/outbound_webhooks/{endpoint}/deliveries/?page_size=200&page={page}"
        );
        let (status, body) = call(client, reqwest::Method::GET, url, None).await;
        if status != 200 {
            let (_, ready) =
                call(client, reqwest::Method::GET, format!("{base}/readyz"), None).await;
            let (_, list) = call(
                client,
                reqwest::Method::GET,
                format!("{base}/api/v2/outbound_webhooks/"),
                None,
            )
            .await;
            let (_, orgs) = call(
                client,
                reqwest::Method::GET,
                format!("{base}/api/v2/organizations/"),
                None,
            )
            .await;
            panic!("{status} {body}\nready: {ready}\nendpoints: {list}\norgs: {orgs}");
        }
        all.extend(body["results"].as_array().unwrap().iter().cloned());
        if body["next"].is_null() {
            break;
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkill_during_delivery_loses_nothing() {
    // Each delivery fails twice, then succeeds, and every answer takes a moment: plenty of
    // attempts in flight and retries pending at every kill.
    let receiver = Receiver::start(|_, nth| {
        if nth <= 2 {
            Reply::status(500)
        } else {
            Reply::status(204)
        }
        .after(Duration::from_millis(25))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut server = spawn(dir.path()).await;
    let (_, org) = call(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v2/organizations/", server.base),
        Some(json!({"name": "acme"})),
    )
    .await;
    let body = json!({
        "name": "crash", "organization": org["id"], "url": receiver.url("/hook"), "events": ["*"],
        "max_in_flight": MAX_IN_FLIGHT, "retry": {"max_attempts": 10, "initial_delay_seconds": 0.1, "max_delay_seconds": 0.4},
    });
    let (status, endpoint) = call(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v2/outbound_webhooks/", server.base),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{endpoint}");
    let endpoint_id = endpoint["id"].as_u64().unwrap();
    for seq in 0..EVENTS {
        let body =
            json!({"organization": org["id"], "event_type": "build.done", "payload": {"seq": seq}});
        let (status, answer) = call(
            &client,
            reqwest::Method::POST,
            format!("{}/api/v2/events/", server.base),
            Some(body),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
    }

    let started = Instant::now();
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(120 + 70 * kill as u64)).await;
        server.child.start_kill().unwrap();
        server.child.wait().await.unwrap();
        server = spawn(dir.path()).await;
    }
    let kills_done = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(90);
    let deliveries = loop {
        let deliveries = all_deliveries(&client, &server.base, endpoint_id).await;
        if deliveries.len() as u64 >= EVENTS && deliveries.iter().all(|d| d["status"] != "pending")
        {
            break deliveries;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not settle: {} recorded",
            deliveries.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // None lost, none scheduled twice: exactly one delivery per accepted event.
    assert_eq!(deliveries.len() as u64, EVENTS);
    let mut by_event: HashMap<u64, usize> = HashMap::new();
    for d in &deliveries {
        assert_eq!(d["status"], "delivered", "{d}");
        *by_event.entry(d["event_id"].as_u64().unwrap()).or_default() += 1;
    }
    assert!(
        by_event.values().all(|n| *n == 1),
        "a delivery scheduled twice for one event"
    );

    // The receiver saw every event, each under a single webhook-id.
    let got = receiver.received_at("/hook");
    let mut ids_per_seq: HashMap<u64, std::collections::HashSet<String>> = HashMap::new();
    let mut successes: HashMap<String, usize> = HashMap::new();
    for r in &got {
        let seq = r.json()["payload"]["seq"].as_u64().unwrap();
        ids_per_seq
            .entry(seq)
            .or_default()
            .insert(r.webhook_id().to_owned());
        if r.nth > 2 {
            *successes.entry(r.webhook_id().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(
        ids_per_seq.len() as u64,
        EVENTS,
        "every event reached the receiver"
    );
    assert!(
        ids_per_seq.values().all(|ids| ids.len() == 1),
        "one webhook-id per event across crashes"
    );
    assert_eq!(successes.len() as u64, EVENTS);
    let duplicates: usize = successes.values().map(|n| n - 1).sum();
    let recorded_attempts: u64 = deliveries
        .iter()
        .map(|d| d["attempt_count"].as_u64().unwrap())
        .sum();
    let unrecorded = got.len() as u64 - recorded_attempts;
    eprintln!(
        "{KILLS} SIGKILLs in {kills_done:?}: {EVENTS} events, {} requests received, {recorded_attempts} attempts recorded, \
         {unrecorded} sent but unrecorded (crash between send and record), {duplicates} duplicate successful deliveries",
        got.len()
    );
    // Only a crash between sending and recording explains a repeat: at most the attempts in
    // flight at each kill.
    assert!(
        unrecorded <= KILLS as u64 * MAX_IN_FLIGHT,
        "{unrecorded} unrecorded attempts"
    );
    assert!(
        duplicates as u64 <= KILLS as u64 * MAX_IN_FLIGHT,
        "{duplicates} duplicates"
    );

    // The delivery history on disk, written through every kill, equals a full rebuild from
    // the journal (views deleted, every view folded again from position 0).
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    std::fs::remove_dir_all(dir.path().join("views")).unwrap();
    let server = spawn(dir.path()).await;
    let rebuilt = all_deliveries(&client, &server.base, endpoint_id).await;
    assert_eq!(
        rebuilt, deliveries,
        "the delivery history differs from a rebuild"
    );
    let detail = |id: &Value| format!("{}/api/v2/deliveries/{id}/", server.base);
    let (_, first) = call(
        &client,
        reqwest::Method::GET,
        detail(&deliveries[0]["id"]),
        None,
    )
    .await;
    assert_eq!(
        first["attempts"].as_array().unwrap().len() as u64,
        deliveries[0]["attempt_count"].as_u64().unwrap(),
        "{first}"
    );
    drop(server);
}
