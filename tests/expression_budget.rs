//! User-supplied expressions within their limits, through the real server: structural limits at
//! create time, the evaluation budget on conditions, dry runs and filters, and one tenant's
//! expensive filter never delaying another tenant's deliveries.

mod outbound_support;

use std::time::{Duration, Instant};

use hookforge::conditions::{Budget, Json, RuleProgram};
use outbound_support::{Harness, Receiver, Reply};
use serde_json::{Value, json};

const KEY: &str = "budget-test-key-0123456789";

/// A boolean expression of nested loops over literal lists whose estimated cost is as close to
/// `share` of the default budget as the list length allows.
fn loops_costing(share: f64) -> String {
    let budget = Budget::default().max_cost as f64 * share;
    let nest = |len: usize| {
        let list: Vec<String> = (1..=len).map(|i| i.to_string()).collect();
        let list = format!("[{}]", list.join(","));
        (0..5).fold("true".to_owned(), |inner, i| {
            format!("{list}.all(v{i}, {inner})")
        })
    };
    let cost = |source: &str| {
        let program = RuleProgram::compile(&[source], None).unwrap();
        program.prepare(Json::Bytes(b"{}"), []).cost() as f64
    };
    let len = (2..40)
        .take_while(|len| cost(&nest(*len)) <= budget)
        .last()
        .unwrap();
    nest(len)
}

fn sign(body: &[u8]) -> String {
    format!(
        "sha256={}",
        hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
    )
}

async fn rule(h: &Harness, org: u64, path: &str, condition: &str) -> (u16, Value) {
    h.post(
        "/api/v2/event_rules/",
        json!({"name": path, "organization": org, "source_type": "webhook_generic",
               "webhook_path": path, "webhook_key": KEY, "conditions": [{"expression": condition}]}),
    )
    .await
}

async fn webhook(h: &Harness, path: &str, body: &Value) -> u64 {
    let bytes = serde_json::to_vec(body).unwrap();
    let response = h
        .client
        .post(h.url(&format!("/api/v2/eda_webhooks/{path}/")))
        .header("content-type", "application/json")
        .header("x-forge-signature", sign(&bytes))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["event_log_id"]
        .as_u64()
        .unwrap()
}

async fn decided(h: &Harness, id: u64) -> Value {
    let started = Instant::now();
    loop {
        let (_, log) = h.get(&format!("/api/v2/event_logs/{id}/")).await;
        if log["status"] != "received" {
            return log;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expressions_past_the_structural_limits_are_refused_naming_the_field() {
    let h = Harness::start(true).await;
    let org = h.organization("limits").await;
    let chain = format!("{}1 == 1", "1+".repeat(1999));
    let (status, error) = rule(&h, org, "chain", &chain).await;
    assert_eq!(status, 400, "{error}");
    let message = error["fields"]["conditions"][0].as_str().unwrap();
    assert!(
        message.contains("conditions[0]") && message.contains("the limit is 100"),
        "{message}"
    );
    let long = format!("{}1 == 1", "1 + ".repeat(5000));
    let (status, error) = rule(&h, org, "long", &long).await;
    assert_eq!(status, 400);
    assert!(
        error["fields"]["conditions"][0]
            .as_str()
            .unwrap()
            .contains("4096"),
        "{error}"
    );
    let (status, error) = h
        .post(
            "/api/v2/outbound_webhooks/",
            json!({"name": "deep", "organization": org, "url": "https://example.com/h", "events": ["*"],
                   "filter": format!("{}true", "!(".repeat(40)) + &")".repeat(40)}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["fields"]["filter"][0]
            .as_str()
            .unwrap()
            .contains("the limit is 32"),
        "{error}"
    );
    // The server is still there, and a sane rule is fine.
    let (status, _) = rule(&h, org, "fine", "event.a == 1").await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_over_the_budget_are_errors_in_the_event_log_and_the_dry_run() {
    let h = Harness::start(true).await;
    let org = h.organization("budget").await;
    let heavy = loops_costing(4.0);
    let (status, created) = rule(&h, org, "heavy", &heavy).await;
    assert_eq!(
        status, 201,
        "accepted at create time: the budget depends on the input ({created})"
    );
    let started = Instant::now();
    let id = webhook(&h, "heavy", &json!({"n": 1})).await;
    let log = decided(&h, id).await;
    assert_eq!(log["status"], "error", "{log}");
    assert!(
        log["error"]
            .as_str()
            .unwrap()
            .contains("evaluation budget exceeded"),
        "{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused before running"
    );
    let (status, dry) = h
        .post(
            &format!("/api/v2/event_rules/{}/test/", created["id"]),
            json!({"payload": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["conditions_matched"], false);
    assert!(
        dry["condition_results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("budget"),
        "{dry}"
    );
    // Within the budget, the same shape is evaluated (on the evaluation pool).
    let (status, _) = rule(&h, org, "within", &loops_costing(0.5)).await;
    assert_eq!(status, 201);
    let log = decided(&h, webhook(&h, "within", &json!({"n": 2})).await).await;
    assert_eq!(log["status"], "matched", "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_over_the_budget_records_a_filter_error_delivery() {
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let h = Harness::start(true).await;
    let org = h.organization("filters").await;
    let endpoint = h
        .endpoint(
            org,
            &receiver.url("/heavy"),
            json!({"filter": loops_costing(4.0)}),
        )
        .await;
    let id = endpoint["id"].as_u64().unwrap();
    let published = h.publish(org, "build.done", json!({"n": 1})).await;
    assert_eq!(published["deliveries_scheduled"], 1, "{published}");
    let deliveries = h.settle(id, 1, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0]["status"], "filter_error", "{deliveries:?}");
    let reason = deliveries[0]["error_message"].as_str().unwrap();
    assert!(reason.contains("evaluation budget exceeded"), "{reason}");
    assert!(receiver.received().is_empty(), "nothing was sent");
    assert_eq!(
        h.metric("hookforge_outbound_filter_errors_total").await,
        1.0
    );
    let (_, listed) = h
        .get(&format!(
            "/api/v2/outbound_webhooks/{id}/deliveries/?status=filter_error"
        ))
        .await;
    assert_eq!(listed["count"], 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_worst_case_filter_does_not_delay_another_tenants_deliveries() {
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let h = Harness::start(true).await;
    let (a, b) = (h.organization("a").await, h.organization("b").await);
    // Organization A: a filter just within the budget, on every event it publishes.
    let heavy = loops_costing(0.95);
    h.endpoint(a, &receiver.url("/a"), json!({"filter": heavy}))
        .await;
    h.endpoint(b, &receiver.url("/b"), json!({})).await;
    let flood = {
        let client = h.client.clone();
        let url = h.url("/api/v2/events/");
        tokio::spawn(async move {
            for i in 0..60 {
                let body = json!({"organization": a, "event_type": "a.heavy", "payload": {"i": i}});
                let _ = client
                    .post(&url)
                    .bearer_auth(outbound_support::ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let sent = Instant::now();
        h.publish(b, "b.light", json!({"i": i})).await;
        let arrived = receiver.wait_for("/b", i + 1, Duration::from_secs(5)).await;
        let at = arrived.last().unwrap().at;
        worst = worst.max(at.duration_since(sent));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        worst < Duration::from_millis(100),
        "organization B's deliveries arrived up to {worst:?} after their publish"
    );
    flood.await.unwrap();
    // A's filter matched every one of its events (each taking ~10 ms of the evaluation pool).
    let a_done = receiver.wait_for("/a", 60, Duration::from_secs(30)).await;
    assert_eq!(a_done.len(), 60);
}
