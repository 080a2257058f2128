//! Passivation end to end: idle rule and endpoint actors stop, and wake on their next message,
//! on the next event of their stream, or (endpoints) when a pending retry falls due, with their
//! throttle windows, dedup entries and retries where they were, across restarts.

mod common;
mod outbound_support;

use std::time::{Duration, Instant};

use common::{ADMIN, TestServer, eventually};
use outbound_support::{Harness, Receiver, Reply};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "passivation-test-key-0123456789";

/// The value of `hookforge_<name>{kind="<kind>"}` in the server's `/metrics`.
async fn metric(client: &reqwest::Client, base: &str, name: &str, kind: &str) -> i64 {
    series(
        client,
        base,
        &format!("hookforge_{name}{{kind=\"{kind}\"}}"),
    )
    .await
}

/// The value of the metric series `series` (name and labels) in the server's `/metrics`.
async fn series(client: &reqwest::Client, base: &str, series: &str) -> i64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
        .parse()
        .unwrap()
}

async fn asleep(t: &TestServer, kind: &str) -> i64 {
    metric(&t.client, &t.base, "actors_asleep", kind).await
}

fn passivating(dir: &std::path::Path) -> hookforge::config::Config {
    let mut config = common::config(dir);
    config.actors.idle_seconds = 1;
    config
}

async fn send(t: &TestServer, delivery: &str, body: &Value) -> (StatusCode, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let signature = format!(
        "sha256={}",
        hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), &bytes)
    );
    t.deliver(
        "sleepy",
        &[
            ("content-type", "application/json"),
            ("x-forge-event", "test.event"),
            ("x-forge-delivery", delivery),
            ("x-forge-signature", &signature),
        ],
        bytes,
    )
    .await
}

async fn wait_asleep(t: &TestServer, kind: &str, count: i64) {
    eventually(
        Duration::from_secs(10),
        &format!("{count} {kind} actor(s) asleep"),
        || async move { (asleep(t, kind).await == count).then_some(()) },
    )
    .await;
}

/// Whether the supervisor runs an actor for rule `rule` (asked without waking it).
async fn rule_running(t: &TestServer, rule: u64) -> bool {
    let children = ractor::call!(
        t.app().supervisor,
        hookforge::actors::SupervisorMsg::Children
    )
    .unwrap();
    children.contains(&format!("rule:{rule}"))
}

#[tokio::test]
async fn an_idle_rule_sleeps_wakes_on_its_next_webhook_and_keeps_its_state_across_restarts() {
    let temp = tempfile::tempdir().unwrap();
    let mut t = TestServer::start_with(passivating(temp.path())).await;
    t.keep(temp);
    let org = t.create_org("acme").await;
    let rule = t
        .create_rule(json!({
            "name": "sleepy", "organization": org, "source_type": "webhook_generic",
            "webhook_path": "sleepy", "webhook_key": KEY,
            "throttle_seconds": 3600, "throttle_key": "event.host",
        }))
        .await["id"]
        .as_u64()
        .unwrap();
    let (status, first) = send(&t, "d-1", &json!({"host": "web-1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let first = t
        .decided_event_log(first["event_log_id"].as_u64().unwrap())
        .await;
    assert_eq!(first["status"], "matched", "{first}");

    wait_asleep(&t, "rule", 1).await;
    assert!(!rule_running(&t, rule).await, "an asleep rule has no actor");

    // The next webhook wakes it, and the throttle window it had is still there.
    let (_, second) = send(&t, "d-2", &json!({"host": "web-1", "n": 2})).await;
    let second = t
        .decided_event_log(second["event_log_id"].as_u64().unwrap())
        .await;
    assert_eq!(second["status"], "throttled", "{second}");
    assert!(metric(&t.client, &t.base, "actor_wakes_total", "rule").await >= 1);

    // Asleep again, then restarted: it stays asleep (no actor started for it) ...
    wait_asleep(&t, "rule", 1).await;
    let t = t.restart().await;
    assert_eq!(asleep(&t, "rule").await, 1, "still asleep after a restart");
    assert!(!rule_running(&t, rule).await);
    // ... its dedup entries hold (a repeat is answered as a duplicate) ...
    let (status, repeat) = send(&t, "d-1", &json!({"host": "web-1"})).await;
    assert_eq!(
        (status, repeat["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "{repeat}"
    );
    // ... and a dry run wakes it and sees the same throttle window.
    let (status, report) = t
        .post(
            &format!("/api/v2/event_rules/{rule}/test/"),
            ADMIN,
            json!({"payload": {"host": "web-1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["throttled"], true, "{report}");
    let (_, third) = send(&t, "d-3", &json!({"host": "web-2", "n": 3})).await;
    let third = t
        .decided_event_log(third["event_log_id"].as_u64().unwrap())
        .await;
    assert_eq!(
        third["status"], "matched",
        "another host is not throttled: {third}"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn a_webhook_journaled_for_an_asleep_rule_is_decided_after_a_crash_and_restart() {
    let temp = tempfile::tempdir().unwrap();
    let mut t = TestServer::start_with(passivating(temp.path())).await;
    t.keep(temp);
    let org = t.create_org("acme").await;
    t.create_rule(json!({
        "name": "sleepy", "organization": org, "source_type": "webhook_generic",
        "webhook_path": "sleepy", "webhook_key": KEY,
    }))
    .await;
    wait_asleep(&t, "rule", 1).await;
    let (_, accepted) = send(&t, "d-1", &json!({})).await;
    let id = accepted["event_log_id"].as_u64().unwrap();
    let t = t.restart().await;
    assert_eq!(t.decided_event_log(id).await["status"], "matched");
    t.shutdown().await;
}

fn webhook_id(request: &outbound_support::Received) -> String {
    request.webhook_id().to_owned()
}

#[tokio::test]
async fn an_idle_endpoint_sleeps_and_its_due_retry_wakes_it_on_time() {
    // The first attempt fails; the retry is due exactly 4 s later (Retry-After, and a backoff
    // ceiling of 4 s), long after the actor fell asleep.
    let receiver = Receiver::start(|_, nth| {
        if nth == 1 {
            Reply::status(503).with_header("retry-after", "4")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let h = Harness::start_with(true, |c| c.actors.idle_seconds = 1).await;
    let base = h.url("");
    let org = h.organization("acme").await;
    let endpoint = h
        .endpoint(
            org,
            &receiver.url("/hook"),
            json!({"retry": {"max_attempts": 3, "initial_delay_seconds": 4, "max_delay_seconds": 4, "multiplier": 1}}),
        )
        .await["id"]
        .as_u64()
        .unwrap();
    let (client, base) = (&h.client, base.as_str());
    let asleep = || async move {
        (metric(client, base, "actors_asleep", "endpoint").await == 1).then_some(())
    };
    // Idle since its creation: asleep before anything is published.
    eventually(Duration::from_secs(10), "the endpoint asleep", asleep).await;
    h.publish(org, "build.finished", json!({"build": 1})).await;
    let first = receiver.wait_for("/hook", 1, Duration::from_secs(10)).await;
    let failed_at = Instant::now();
    let passivations = || async move {
        (metric(client, base, "actor_passivations_total", "endpoint").await >= 2).then_some(())
    };
    eventually(
        Duration::from_secs(10),
        "the endpoint asleep again",
        passivations,
    )
    .await;
    assert_eq!(
        receiver.received_at("/hook").len(),
        1,
        "asleep before the retry"
    );
    let both = receiver.wait_for("/hook", 2, Duration::from_secs(10)).await;
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_millis(3_500) && waited < Duration::from_millis(6_000),
        "the retry fired on time (4 s, timer resolution 1 s): {waited:?}"
    );
    assert_eq!(webhook_id(&both[1]), webhook_id(&first[0]), "same delivery");
    let delivered = h.settle(endpoint, 1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0]["status"], "delivered", "{}", delivered[0]);
    assert!(metric(client, base, "actor_wakes_total", "endpoint").await >= 2);
}
