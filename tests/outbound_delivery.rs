//! Outbound delivery end to end over loopback: signatures checked independently, retries,
//! Retry-After, dead-lettering, disabling, ordering, limits, filters, cancellation, restarts.

mod outbound_support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use outbound_support::{Harness, Received, Receiver, Reply, config};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const SETTLE: Duration = Duration::from_secs(20);

fn id(body: &Value) -> u64 {
    body["id"].as_u64().unwrap()
}

fn seq(r: &Received) -> u64 {
    r.json()["payload"]["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn a_published_event_is_delivered_signed_with_the_documented_envelope() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let endpoint = h
        .endpoint(org, &receiver.url("/hook"), json!({"events": ["validation.*"], "custom_headers": {"X-Tenant": "acme-tenant-token-42"}}))
        .await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_")
            && base64::engine::general_purpose::STANDARD
                .decode(&secret[6..])
                .unwrap()
                .len()
                == 32
    );
    assert_eq!(
        endpoint["custom_headers"]["X-Tenant"], "acm***-42",
        "custom header values are masked"
    );
    let (status, published) = h
        .post(
            "/api/v2/events/",
            json!({"organization": org, "event_type": "validation.completed", "resource_type": "analysis",
                   "resource_id": 77, "payload": {"elapsed": 12, "ok": true}}),
        )
        .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(published["deliveries_scheduled"], 1);
    assert_eq!(published["event_type"], "validation.completed");
    let got = receiver.wait_for("/hook", 1, SETTLE).await;
    let request = &got[0];
    let body = request.json();
    assert_eq!(body["event"], "validation.completed");
    assert_eq!(body["payload"], json!({"elapsed": 12, "ok": true}));
    assert_eq!(body["organization_id"], org, "ids are JSON numbers");
    assert_eq!(
        (body["resource_type"].as_str(), body["resource_id"].as_u64()),
        (Some("analysis"), Some(77))
    );
    assert!(body["occurred_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["delivery_id"], request.webhook_id());
    assert!(request.webhook_id().starts_with("msg_"));
    assert_eq!(request.header("x-forge-event"), "validation.completed");
    assert_eq!(request.header("x-forge-delivery"), request.webhook_id());
    assert_eq!(
        request.header("x-forge-timestamp"),
        request.header("webhook-timestamp")
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("hookforge/"));
    assert_eq!(request.header("x-tenant"), "acme-tenant-token-42");
    let expected = hookforge::signing::hmac_sha256_hex(secret.as_bytes(), &request.body);
    assert_eq!(
        request.header("x-forge-signature"),
        format!("sha256={expected}")
    );
    let deliveries = h.settle(id(&endpoint), 1, SETTLE).await;
    assert_eq!(deliveries[0]["status"], "delivered");
    assert_eq!(deliveries[0]["response_status"], 204);
    assert_eq!(deliveries[0]["webhook_id"], request.webhook_id());
    assert_eq!(deliveries[0]["event_id"], published["id"]);
    // Events the endpoint does not subscribe to are not delivered.
    let other = h.publish(org, "build.done", json!({})).await;
    assert_eq!(other["deliveries_scheduled"], 0);
    h.server.shutdown().await;
}

/// Verifies each case with the `standardwebhooks` Python package; `None` if Python is missing.
fn verify_with_python(cases: &[(String, &Received)]) -> Option<String> {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!(
            "\n\n*** SKIPPING the Standard Webhooks cross-check: python3 is not installed ***\n"
        );
        return None;
    }
    let cases: Vec<Value> = cases
        .iter()
        .map(|(secret, r)| {
            json!({
                "secret": secret,
                "body": base64::engine::general_purpose::STANDARD.encode(&r.body),
                "headers": {
                    "webhook-id": r.header("webhook-id"),
                    "webhook-timestamp": r.header("webhook-timestamp"),
                    "webhook-signature": r.header("webhook-signature"),
                },
            })
        })
        .collect();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(serde_json::to_string(&cases).unwrap().as_bytes())
        .unwrap();
    // As a receiver would: whsec_ secrets as given, other secrets as their raw bytes.
    let script = r#"
import base64, json, sys
from standardwebhooks.webhooks import Webhook
cases = json.load(open(sys.argv[1]))
for case in cases:
    secret = case["secret"]
    hook = Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())
    hook.verify(base64.b64decode(case["body"]), case["headers"])
print("verified", len(cases))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "standardwebhooks verification failed (pip install standardwebhooks): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[tokio::test]
async fn signatures_verify_with_the_standard_webhooks_library_and_plain_hmac_across_a_rotation() {
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let generated = h
        .endpoint(org, &receiver.url("/generated"), json!({}))
        .await;
    h.endpoint(
        org,
        &receiver.url("/plain"),
        json!({"secret": "plain-text-secret-0042"}),
    )
    .await;
    let old_secret = generated["secret"].as_str().unwrap().to_owned();
    h.publish(org, "build.done", json!({"n": 1})).await;
    let before = receiver.wait_for("/generated", 1, SETTLE).await;
    let plain_got = receiver.wait_for("/plain", 1, SETTLE).await;

    let (status, rotated) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/secret/", id(&generated)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    h.publish(org, "build.done", json!({"n": 2})).await;
    let after = receiver.wait_for("/generated", 2, SETTLE).await;
    let after = &after[1];
    assert_eq!(
        after.header("webhook-signature").split(' ').count(),
        2,
        "new and old secret during the grace period"
    );
    assert_eq!(before[0].header("webhook-signature").split(' ').count(), 1);

    // Plain HMAC of X-Forge-Signature, under the newest secret's UTF-8 bytes.
    for (secret, r) in [(&old_secret, &before[0]), (&new_secret, after)] {
        let mac = hookforge::signing::hmac_sha256_hex(secret.as_bytes(), &r.body);
        assert_eq!(r.header("x-forge-signature"), format!("sha256={mac}"));
    }
    let plain_mac =
        hookforge::signing::hmac_sha256_hex(b"plain-text-secret-0042", &plain_got[0].body);
    assert_eq!(
        plain_got[0].header("x-forge-signature"),
        format!("sha256={plain_mac}")
    );

    // The Standard Webhooks reference library accepts every request, the rotated one under
    // either secret.
    let cases = vec![
        (old_secret.clone(), &before[0]),
        ("plain-text-secret-0042".to_owned(), &plain_got[0]),
        (old_secret.clone(), after),
        (new_secret.clone(), after),
    ];
    if let Some(report) = verify_with_python(&cases) {
        assert_eq!(report, "verified 4");
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn retries_honour_retry_after_and_keep_the_webhook_id() {
    let receiver = Receiver::start(|_, nth| match nth {
        1 => Reply::status(429)
            .with_header("Retry-After", "2")
            .body("slow down"),
        2 => Reply::status(503),
        _ => Reply::status(204),
    })
    .await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let endpoint = h
        .endpoint(org, &receiver.url("/hook"), json!({"retry": {"max_attempts": 5, "initial_delay_seconds": 0.1, "max_delay_seconds": 5}}))
        .await;
    h.publish(org, "build.done", json!({})).await;
    let got = receiver.wait_for("/hook", 3, SETTLE).await;
    assert!(
        got[1].at - got[0].at >= Duration::from_secs(2),
        "Retry-After: 2 honoured ({:?})",
        got[1].at - got[0].at
    );
    assert!(
        got[2].at - got[1].at < Duration::from_millis(1500),
        "the next retry follows the backoff"
    );
    assert!(got.iter().all(|r| r.webhook_id() == got[0].webhook_id()
        && r.header("x-forge-delivery") == got[0].webhook_id()));
    assert_ne!(
        got[0].header("webhook-timestamp"),
        got[1].header("webhook-timestamp"),
        "a fresh timestamp per attempt"
    );
    assert_ne!(
        got[0].header("webhook-signature"),
        got[1].header("webhook-signature"),
        "and a fresh signature"
    );
    let deliveries = h.settle(id(&endpoint), 1, SETTLE).await;
    let (status, detail) = h
        .get(&format!("/api/v2/deliveries/{}/", deliveries[0]["id"]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["status"], "delivered");
    assert_eq!(detail["attempt_count"], 3);
    let statuses: Vec<Value> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(429), json!(503), json!(204)]);
    assert_eq!(detail["attempts"][0]["error"], "HTTP 429 Too Many Requests");
    assert!(detail["delivered_at"].is_string() && detail["next_retry_at"].is_null());
    h.server.shutdown().await;
}

#[tokio::test]
async fn deliveries_are_dead_lettered_after_max_attempts_and_announced() {
    let receiver = Receiver::start(|path, _| {
        if path == "/fail" {
            Reply::status(500).body("boom")
        } else {
            Reply::status(204)
        }
    })
    .await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let failing = h
        .endpoint(org, &receiver.url("/fail"), json!({"events": ["build.*"], "retry": {"max_attempts": 3, "initial_delay_seconds": 0.1, "max_delay_seconds": 0.2}}))
        .await;
    let ops = h
        .endpoint(
            org,
            &receiver.url("/ops"),
            json!({"events": ["delivery.dead_lettered"]}),
        )
        .await;
    h.publish(org, "build.done", json!({"n": 1})).await;
    let dead = h.settle(id(&failing), 1, SETTLE).await;
    assert_eq!(dead[0]["status"], "dead");
    assert_eq!(dead[0]["attempt_count"], 3);
    assert_eq!(dead[0]["response_snippet"], "boom");
    assert_eq!(receiver.received_at("/fail").len(), 3);
    let announced = receiver.wait_for("/ops", 1, SETTLE).await;
    let body = announced[0].json();
    assert_eq!(body["event"], "delivery.dead_lettered");
    assert_eq!(body["payload"]["delivery_id"], dead[0]["id"]);
    assert_eq!(body["payload"]["endpoint_id"], failing["id"]);
    assert_eq!(body["payload"]["event_type"], "build.done");
    assert_eq!(body["payload"]["attempts"], 3);
    assert_eq!(body["payload"]["last_response_status"], 500);
    h.settle(id(&ops), 1, SETTLE).await;
    let (_, endpoint) = h
        .get(&format!("/api/v2/outbound_webhooks/{}/", id(&failing)))
        .await;
    assert_eq!(
        (
            endpoint["failure_count"].as_u64(),
            endpoint["enabled"].as_bool()
        ),
        (Some(3), Some(true))
    );

    // Redeliver the dead one once the receiver is fixed: a new delivery, a new attempt chain.
    receiver.set_script(|_, _| Reply::status(204));
    let (status, again) = h
        .post(
            &format!("/api/v2/deliveries/{}/redeliver/", dead[0]["id"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["redelivery_of"], dead[0]["id"]);
    assert_ne!(again["webhook_id"], dead[0]["webhook_id"]);
    let settled = h.settle(id(&failing), 2, SETTLE).await;
    assert_eq!(settled[0]["status"], "delivered");
    let (_, original) = h
        .get(&format!("/api/v2/deliveries/{}/", dead[0]["id"]))
        .await;
    assert_eq!(original["redelivered_by"], again["id"]);
    let (status, _) = h
        .post(
            &format!("/api/v2/deliveries/{}/redeliver/", 999_999),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_recover_resends_after_enable() {
    let receiver = Receiver::start(|path, _| {
        if path == "/gone" {
            Reply::status(410)
        } else {
            Reply::status(204)
        }
    })
    .await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let gone = h
        .endpoint(
            org,
            &receiver.url("/gone"),
            json!({"events": ["build.done"]}),
        )
        .await;
    h.endpoint(
        org,
        &receiver.url("/ops"),
        json!({"events": ["endpoint.disabled"]}),
    )
    .await;
    let started = chrono::Utc::now();
    h.publish(org, "build.done", json!({"n": 1})).await;
    let failed = h.settle(id(&gone), 1, SETTLE).await;
    assert_eq!(failed[0]["status"], "failed");
    assert_eq!(failed[0]["response_status"], 410);
    let (_, endpoint) = h
        .get(&format!("/api/v2/outbound_webhooks/{}/", id(&gone)))
        .await;
    assert_eq!(endpoint["enabled"], false);
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{endpoint}"
    );
    let announced = receiver.wait_for("/ops", 1, SETTLE).await;
    let body = announced[0].json();
    assert_eq!(body["event"], "endpoint.disabled");
    assert_eq!(body["payload"]["endpoint_id"], gone["id"]);
    assert_eq!(body["resource_type"], "outbound_webhook");

    // Disabled: new events are not delivered to it, and recover is refused.
    let second = h.publish(org, "build.done", json!({"n": 2})).await;
    assert_eq!(second["deliveries_scheduled"], 0);
    let since = json!({"since": started.to_rfc3339()});
    let (status, _) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/recover/", id(&gone)),
            since.clone(),
        )
        .await;
    assert_eq!(status, 409);

    receiver.set_script(|_, _| Reply::status(204));
    let (status, enabled) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/enable/", id(&gone)),
            json!({}),
        )
        .await;
    assert_eq!(
        (
            status,
            enabled["enabled"].as_bool(),
            enabled["disabled_reason"].is_null()
        ),
        (200, Some(true), true)
    );
    let (status, recovered) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/recover/", id(&gone)),
            since.clone(),
        )
        .await;
    assert_eq!(status, 202, "{recovered}");
    assert_eq!(recovered, json!({"redelivered": 1, "truncated": false}));
    let settled = h.settle(id(&gone), 2, SETTLE).await;
    assert_eq!(settled[0]["status"], "delivered");
    assert_eq!(settled[0]["kind"], "redelivery");
    // Recovering again finds nothing new: the failed delivery was already redelivered.
    let (_, again) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/recover/", id(&gone)),
            since,
        )
        .await;
    assert_eq!(again["redelivered"], 0);
    let (status, bad) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/recover/", id(&gone)),
            json!({"since": "yesterday"}),
        )
        .await;
    assert_eq!((status, bad["fields"]["since"].is_array()), (400, true));
    h.server.shutdown().await;
}

#[tokio::test]
async fn ordered_endpoints_keep_journal_order_across_failures() {
    // Every delivery fails its first attempt: an ordered endpoint must retry it before moving on.
    let receiver = Receiver::start(|_, nth| {
        if nth == 1 {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
        .after(Duration::from_millis(5))
    })
    .await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let endpoint = h
        .endpoint(
            org,
            &receiver.url("/ordered"),
            json!({"ordered": true, "max_in_flight": 8}),
        )
        .await;
    for n in 0..10 {
        h.publish(org, "build.done", json!({"seq": n})).await;
    }
    let got = receiver.wait_for("/ordered", 20, SETTLE).await;
    let order: Vec<u64> = got.iter().map(seq).collect();
    let expected: Vec<u64> = (0..10).flat_map(|n| [n, n]).collect();
    assert_eq!(
        order, expected,
        "each event is retried until delivered before the next is sent"
    );
    assert_eq!(receiver.max_concurrency(), 1);
    for pair in got.windows(2) {
        assert!(pair[1].at >= pair[0].done, "one at a time");
    }
    h.settle(id(&endpoint), 10, SETTLE).await;
    h.server.shutdown().await;
}

/// Most request starts within any one-second window.
fn busiest_second(got: &[Received]) -> usize {
    let mut starts: Vec<Instant> = got.iter().map(|r| r.at).collect();
    starts.sort();
    (0..starts.len())
        .map(|i| {
            starts[i..]
                .iter()
                .take_while(|t| **t < starts[i] + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn rate_limit_and_max_in_flight_hold_under_a_burst() {
    let limited_rx = Receiver::start(|_, _| Reply::status(204)).await;
    let parallel_rx =
        Receiver::start(|_, _| Reply::status(204).after(Duration::from_millis(150))).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let limited = h
        .endpoint(
            org,
            &limited_rx.url("/limited"),
            json!({"rate_limit_per_second": 10, "max_in_flight": 16}),
        )
        .await;
    let parallel = h
        .endpoint(
            org,
            &parallel_rx.url("/parallel"),
            json!({"max_in_flight": 3}),
        )
        .await;
    let burst_started = Instant::now();
    let publishes: Vec<_> = (0..30)
        .map(|n| h.publish(org, "build.done", json!({"seq": n})))
        .collect();
    futures::future::join_all(publishes).await;
    let limited_got = limited_rx.wait_for("/limited", 30, SETTLE).await;
    parallel_rx.wait_for("/parallel", 30, SETTLE).await;
    let busiest = busiest_second(&limited_got);
    assert!(
        busiest <= 11,
        "rate limit 10/s (burst capacity 1): {busiest} starts in one second"
    );
    let span = limited_got.iter().map(|r| r.at).max().unwrap() - burst_started;
    assert!(
        span >= Duration::from_millis(2800),
        "30 deliveries at 10/s take about 3 s, took {span:?}"
    );
    assert_eq!(
        parallel_rx.max_concurrency(),
        3,
        "max_in_flight 3 is reached and never exceeded"
    );
    h.settle(id(&limited), 30, SETTLE).await;
    h.settle(id(&parallel), 30, SETTLE).await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn cel_filters_select_events_by_envelope() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let slow = h
        .endpoint(
            org,
            &receiver.url("/slow"),
            json!({"filter": "event.payload.elapsed > 600"}),
        )
        .await;
    h.endpoint(
        org,
        &receiver.url("/seven"),
        json!({"filter": "event.resource_id == 7"}),
    )
    .await;
    let quick = h
        .publish(org, "analysis.report", json!({"elapsed": 100}))
        .await;
    assert_eq!(quick["deliveries_scheduled"], 0);
    let (_, long) = h
        .post("/api/v2/events/", json!({"organization": org, "event_type": "analysis.report", "resource_id": 7, "payload": {"elapsed": 700}}))
        .await;
    assert_eq!(long["deliveries_scheduled"], 2);
    let got = receiver.wait_for("/slow", 1, SETTLE).await;
    assert_eq!(got[0].json()["payload"]["elapsed"], 700);
    receiver.wait_for("/seven", 1, SETTLE).await;
    assert_eq!(h.settle(id(&slow), 1, SETTLE).await.len(), 1);
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_client_hanging_up_never_strands_an_accepted_event() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let endpoint = h.endpoint(org, &receiver.url("/hook"), json!({})).await;
    let addr = h.server.addr;
    let mut clients = Vec::new();
    for n in 0..60u64 {
        clients.push(tokio::spawn(async move {
            let body = json!({"organization": org, "event_type": "build.done", "payload": {"seq": n}}).to_string();
            let request = format!(
                "POST /api/v2/events/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                outbound_support::ADMIN_TOKEN,
                body.len()
            );
            let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            socket.write_all(request.as_bytes()).await.unwrap();
            // Hang up at once, or after a moment: before, during or after the append.
            tokio::time::sleep(Duration::from_micros(n * 100)).await;
            drop(socket);
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted = h
        .server
        .app
        .views
        .outbound
        .read()
        .custom_types()
        .map(|t| t.count)
        .sum::<u64>() as usize;
    let deliveries = h.settle(id(&endpoint), accepted, SETTLE).await;
    assert_eq!(
        deliveries.len(),
        accepted,
        "every event that reached the journal is delivered"
    );
    let got = receiver.wait_for("/hook", accepted, SETTLE).await;
    let mut seqs: Vec<u64> = got.iter().map(seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), accepted);
    eprintln!(
        "clients that hung up: 60; events accepted before the hang-up: {accepted}; all delivered"
    );
    assert!(accepted > 0, "the test must exercise accepted events");
    h.server.shutdown().await;
}

#[tokio::test]
async fn pending_retries_resume_after_a_restart() {
    let receiver = Receiver::start(|_, nth| {
        if nth == 1 {
            Reply::status(503)
        } else {
            Reply::status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: &std::path::Path| {
        let config = config(dir, true);
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            hookforge::server::Server::start(config, listener)
                .await
                .unwrap()
        }
    };
    let server = start(dir.path()).await;
    let h = Harness {
        server,
        client: reqwest::Client::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    let org = h.organization("acme").await;
    let endpoint = h
        .endpoint(org, &receiver.url("/hook"), json!({"retry": {"max_attempts": 4, "initial_delay_seconds": 3, "max_delay_seconds": 3}}))
        .await;
    h.publish(org, "build.done", json!({})).await;
    let first = receiver.wait_for("/hook", 1, SETTLE).await;
    let pending = h.settle_pending(id(&endpoint)).await;
    let next_retry_at =
        chrono::DateTime::parse_from_rfc3339(pending["next_retry_at"].as_str().unwrap()).unwrap();
    h.server.shutdown().await;

    let server = start(dir.path()).await;
    let h = Harness {
        server,
        client: reqwest::Client::new(),
        dir: h.dir,
    };
    let got = receiver.wait_for("/hook", 2, SETTLE).await;
    assert_eq!(got[1].webhook_id(), first[0].webhook_id());
    let retried_at = chrono::Utc::now() - chrono::TimeDelta::from_std(got[1].at.elapsed()).unwrap();
    assert!(
        retried_at >= next_retry_at - chrono::TimeDelta::milliseconds(50),
        "not before its next_attempt_at"
    );
    let settled = h.settle(id(&endpoint), 1, SETTLE).await;
    assert_eq!(
        (
            settled[0]["status"].as_str(),
            settled[0]["attempt_count"].as_u64()
        ),
        (Some("delivered"), Some(2))
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_publish_dropped_right_after_its_first_poll_is_still_delivered() {
    // The strongest form of a client hanging up: the handler's future is dropped at its first
    // suspension point. The append was submitted before it, so the event is accepted and
    // delivered by the dispatcher, which works from the journal, not from the request.
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let endpoint = h.endpoint(org, &receiver.url("/hook"), json!({})).await;
    let body =
        json!({"organization": org, "event_type": "build.done", "payload": {"dropped": true}})
            .to_string();
    let mut headers = warp::http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", outbound_support::ADMIN_TOKEN)
            .parse()
            .unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    let request = hookforge::http::Request {
        method: warp::http::Method::POST,
        path: "/api/v2/events/".into(),
        params: Vec::new(),
        query: Vec::new(),
        headers,
        body: body.into(),
        remote: None,
        correlation_id: "dropped-client".into(),
    };
    let mut handler = Box::pin(hookforge::http::admin::events::publish(
        h.server.app.clone(),
        request,
    ));
    assert!(
        futures::poll!(handler.as_mut()).is_pending(),
        "the handler waits for durability"
    );
    drop(handler);
    let got = receiver.wait_for("/hook", 1, SETTLE).await;
    assert_eq!(got[0].json()["payload"], json!({"dropped": true}));
    h.settle(id(&endpoint), 1, SETTLE).await;
    h.server.shutdown().await;
}
