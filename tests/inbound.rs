//! Inbound webhooks end to end: rules, ingress, decisions, and what survives restarts and crashes.

mod common;

use std::time::Duration;

use common::{ADMIN, ServerProcess, TestServer};
use hookforge::actors::manager::Lookup;
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "inbound-test-key-0123456789";

fn sign(body: &[u8]) -> String {
    format!(
        "sha256={}",
        hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
    )
}

async fn create_rule(t: &TestServer, org: u64, path: &str, extra: Value) -> u64 {
    let mut body = json!({
        "name": path, "organization": org, "source_type": "webhook_generic", "webhook_path": path, "webhook_key": KEY,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, rule) = t.post("/api/v2/event_rules/", ADMIN, body).await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    rule["id"].as_u64().unwrap()
}

async fn send(
    t_base: &str,
    client: &reqwest::Client,
    path: &str,
    delivery: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let response = client
        .post(format!("{t_base}/api/v2/eda_webhooks/{path}/"))
        .header("content-type", "application/json")
        .header("x-forge-event", "test.event")
        .header("x-forge-delivery", delivery)
        .header("x-forge-signature", sign(&bytes))
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls an event log until the rule has decided it.
async fn decided(t: &TestServer, id: u64) -> Value {
    for _ in 0..400 {
        let (status, log) = t.get(&format!("/api/v2/event_logs/{id}/"), ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{log}");
        if log["status"] != "received" {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("event log {id} was never decided");
}

#[tokio::test]
async fn rules_decide_in_order_and_state_survives_a_restart() {
    let t = TestServer::start().await;
    let org = t.create_org("acme").await;
    create_rule(
        &t,
        org,
        "alerts",
        json!({"conditions": [{"expression": "event.severity == 'critical'"}], "throttle_seconds": 3600, "throttle_key": "event.host"}),
    )
    .await;
    let (status, first) = send(
        &t.base,
        &t.client,
        "alerts",
        "d-1",
        &json!({"severity": "critical", "host": "db1"}),
    )
    .await;
    assert_eq!(
        (status, first["status"].as_str()),
        (StatusCode::ACCEPTED, Some("received"))
    );
    let id = first["event_log_id"].as_u64().unwrap();
    let log = decided(&t, id).await;
    assert_eq!(log["status"], "matched");
    assert_eq!(log["event_type"], "test.event");
    assert_eq!(log["event_guid"], "d-1");
    assert_eq!(log["payload"]["host"], "db1");
    assert_eq!(log["headers"]["x-forge-delivery"], "d-1");
    assert_eq!(log["condition_results"][0]["result"], true);
    assert_eq!(log["throttle_key"], "db1");

    let (_, unmatched) = send(
        &t.base,
        &t.client,
        "alerts",
        "d-2",
        &json!({"severity": "info", "host": "db1"}),
    )
    .await;
    assert_eq!(
        decided(&t, unmatched["event_log_id"].as_u64().unwrap()).await["status"],
        "unmatched"
    );
    let (_, other_host) = send(
        &t.base,
        &t.client,
        "alerts",
        "d-3",
        &json!({"severity": "critical", "host": "db2"}),
    )
    .await;
    assert_eq!(
        decided(&t, other_host["event_log_id"].as_u64().unwrap()).await["status"],
        "matched"
    );

    let t = t.restart().await;
    let (status, dup) = send(
        &t.base,
        &t.client,
        "alerts",
        "d-1",
        &json!({"severity": "critical", "host": "db1"}),
    )
    .await;
    assert_eq!(
        (status, dup["status"].as_str(), dup["event_log_id"].as_u64()),
        (StatusCode::OK, Some("duplicate"), Some(id))
    );
    let (status, again) = send(
        &t.base,
        &t.client,
        "alerts",
        "d-4",
        &json!({"severity": "critical", "host": "db1", "repeat": 4}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        decided(&t, again["event_log_id"].as_u64().unwrap()).await["status"],
        "throttled",
        "throttle window survived the restart"
    );
    let (_, rule) = t.get("/api/v2/event_rules/1/", ADMIN).await;
    assert_eq!(rule["fire_count"], 2);
    assert!(rule["last_fired_at"].is_string());

    // Without snapshots, the same state is rebuilt from the log alone.
    t.app().journal.clear_snapshots().unwrap();
    let t = t.restart().await;
    let (status, dup) = send(
        &t.base,
        &t.client,
        "alerts",
        "d-3",
        &json!({"severity": "critical", "host": "db2"}),
    )
    .await;
    assert_eq!(
        (status, dup["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    let (_, again) = send(
        &t.base,
        &t.client,
        "alerts",
        "d-5",
        &json!({"severity": "critical", "host": "db2", "repeat": 5}),
    )
    .await;
    assert_eq!(
        decided(&t, again["event_log_id"].as_u64().unwrap()).await["status"],
        "throttled"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn runtime_condition_errors_are_recorded_and_the_rule_keeps_working() {
    let t = TestServer::start().await;
    let org = t.create_org("acme").await;
    create_rule(
        &t,
        org,
        "strict",
        json!({"conditions": [{"expression": "event.count > 5"}]}),
    )
    .await;
    let (_, first) = send(&t.base, &t.client, "strict", "e-1", &json!({"other": 1})).await;
    let log = decided(&t, first["event_log_id"].as_u64().unwrap()).await;
    assert_eq!(log["status"], "error");
    assert!(
        log["condition_results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("count"),
        "{log}"
    );
    assert_eq!(log["conditions_matched"], false);
    let (_, second) = send(&t.base, &t.client, "strict", "e-2", &json!({"count": 9})).await;
    assert_eq!(
        decided(&t, second["event_log_id"].as_u64().unwrap()).await["status"],
        "matched"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn a_crashed_rule_actor_is_restarted_and_keeps_deciding() {
    let t = TestServer::start().await;
    let org = t.create_org("acme").await;
    let rule = create_rule(&t, org, "resilient", json!({})).await;
    let running = |lookup| match lookup {
        Lookup::Running(actor) => Some(actor),
        _ => None,
    };
    let actor = running(
        t.app()
            .rules
            .wait_running(rule, Duration::from_secs(10))
            .await,
    )
    .expect("the rule's actor runs");
    actor.kill();
    let restarted = async {
        loop {
            if running(t.app().rules.get(rule)).is_some_and(|a| a.get_id() != actor.get_id()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), restarted)
        .await
        .expect("the supervisor restarts the rule");
    let (_, accepted) = send(&t.base, &t.client, "resilient", "r-1", &json!({})).await;
    assert_eq!(
        decided(&t, accepted["event_log_id"].as_u64().unwrap()).await["status"],
        "matched"
    );
    let metrics = t
        .client
        .get(format!("{}/metrics", t.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hookforge_actor_restarts_total{kind=\"rule\"} 1"),
        "{metrics}"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn dry_runs_record_nothing() {
    let t = TestServer::start().await;
    let org = t.create_org("acme").await;
    let (_, template) = t
        .post(
            "/api/v2/job_templates/",
            ADMIN,
            json!({"name": "noop", "organization": org, "kind": "command", "argv": ["/bin/true"]}),
        )
        .await;
    let rule = create_rule(
        &t,
        org,
        "dry",
        json!({"conditions": [{"expression": "event.x == 1", "description": "x is one"}, {"jinja2_expression": "headers['x-env'] == 'prod'"}],
               "actions": [{"action_type": "launch_job_template", "target_id": template["id"], "extra_vars": {"a": 1}}]}),
    )
    .await;
    let before = t.app().journal.next_position();
    let (status, report) = t
        .post(
            &format!("/api/v2/event_rules/{rule}/test/"),
            ADMIN,
            json!({"payload": {"x": 1}, "headers": {"X-Env": "prod"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["conditions_matched"], true);
    assert_eq!(report["throttled"], false);
    assert_eq!(report["actions"][0]["target_id"], template["id"]);
    assert_eq!(report["condition_results"].as_array().unwrap().len(), 2);
    let (_, report) = t
        .post(
            &format!("/api/v2/event_rules/{rule}/test/"),
            ADMIN,
            json!({"payload": {"x": 2}}),
        )
        .await;
    assert_eq!(report["conditions_matched"], false);
    assert_eq!(report["actions"], json!([]));
    assert_eq!(
        t.app().journal.next_position(),
        before,
        "a dry run appends nothing"
    );
    let (_, logs) = t.get("/api/v2/event_logs/", ADMIN).await;
    assert_eq!(logs["count"], 0);
    t.shutdown().await;
}

#[tokio::test]
async fn rules_api_validates_and_scopes() {
    let t = TestServer::start().await;
    let org1 = t.create_org("one").await;
    let org2 = t.create_org("two").await;
    let (_, admin1) = t.create_token(org1, "admin").await;
    let (_, member1) = t.create_token(org1, "member").await;
    let (_, admin2) = t.create_token(org2, "admin").await;
    let body = json!({"name": "r", "organization": org1, "source_type": "webhook_github", "webhook_path": "scoped"});
    assert_eq!(
        t.post("/api/v2/event_rules/", &member1, body.clone())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.post("/api/v2/event_rules/", &admin2, body.clone())
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (status, rule) = t.post("/api/v2/event_rules/", &admin1, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    let id = rule["id"].as_u64().unwrap();
    let key = rule["webhook_key"].as_str().unwrap().to_owned();
    assert!(
        key.len() >= 43,
        "generated keys carry at least 32 random bytes"
    );
    assert!(
        rule["webhook_url"]
            .as_str()
            .unwrap()
            .ends_with("/api/v2/eda_webhooks/scoped/")
    );

    // Same name in the same organization, or same path anywhere: refused, naming the field.
    let (status, err) = t.post("/api/v2/event_rules/", &admin1, body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["fields"]["name"].is_array() && err["fields"]["webhook_path"].is_array(),
        "{err}"
    );
    let (status, err) = t
        .post("/api/v2/event_rules/", ADMIN, json!({"name": "x", "organization": org1, "conditions": [{"expression": "true"}, {"expression": "event.a ="}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["fields"]["conditions"][0]
            .as_str()
            .unwrap()
            .starts_with("conditions[1]"),
        "{err}"
    );
    let (status, err) = t
        .post("/api/v2/event_rules/", ADMIN, json!({"name": "y", "organization": org1, "actions": [{"action_type": "detonate", "target_id": 1}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["fields"]["actions"][0]
            .as_str()
            .unwrap()
            .contains("detonate"),
        "{err}"
    );

    // Reading: members yes, other tenants 404; keys: admins only, masked elsewhere.
    let path = format!("/api/v2/event_rules/{id}/");
    assert_eq!(t.get(&path, &member1).await.0, StatusCode::OK);
    assert_eq!(t.get(&path, &admin2).await.0, StatusCode::NOT_FOUND);
    let (_, listed) = t.get("/api/v2/event_rules/", &admin2).await;
    assert_eq!(listed["count"], 0);
    let (_, shown) = t.get(&path, &admin1).await;
    assert!(shown["webhook_key"].as_str().unwrap().contains("***"));
    let key_path = format!("/api/v2/event_rules/{id}/webhook_key/");
    assert_eq!(t.get(&key_path, &member1).await.0, StatusCode::FORBIDDEN);
    assert_eq!(t.get(&key_path, &admin2).await.0, StatusCode::NOT_FOUND);
    let (status, revealed) = t.get(&key_path, &admin1).await;
    assert_eq!(
        (status, revealed["webhook_key"].as_str()),
        (StatusCode::OK, Some(key.as_str()))
    );
    let (status, rotated) = t
        .post(
            &key_path,
            &admin1,
            json!({"webhook_key": "pasted-from-pagerduty"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(
        t.get(&key_path, &admin1).await.1["webhook_key"],
        "pasted-from-pagerduty"
    );
    assert_eq!(
        t.post(&key_path, &admin1, json!({"webhook_key": "short"}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    // Patch, disable, delete.
    let (status, patched) = t
        .patch(
            &path,
            &admin1,
            json!({"throttle_seconds": 30, "conditions": [{"expression": "event.ok"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (
            patched["throttle_seconds"].as_u64(),
            patched["name"].as_str()
        ),
        (Some(30), Some("r"))
    );
    assert_eq!(
        t.patch(&path, &member1, json!({"throttle_seconds": 1}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.patch(&path, &admin1, json!({"organization": org2}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (_, disabled) = t.post(&format!("{path}disable/"), &admin1, json!({})).await;
    assert_eq!(disabled["enabled"], false);
    let response = t
        .client
        .post(format!("{}/api/v2/eda_webhooks/scoped/", t.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "a disabled rule's path does not exist"
    );
    let (_, enabled) = t.post(&format!("{path}enable/"), &admin1, json!({})).await;
    assert_eq!(enabled["enabled"], true);
    assert_eq!(t.delete(&path, &admin1).await.0, StatusCode::NO_CONTENT);
    assert_eq!(t.get(&path, &admin1).await.0, StatusCode::NOT_FOUND);
    let (_, audit) = t
        .get(
            &format!("/api/v2/audit_events/?resource_type=event_rule&resource_id={id}"),
            ADMIN,
        )
        .await;
    let actions: Vec<&str> = audit["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "rule.deleted",
            "rule.enabled_changed",
            "rule.enabled_changed",
            "rule.updated",
            "rule.key_rotated",
            "rule.created"
        ]
    );
    t.shutdown().await;
}

#[tokio::test]
async fn webhook_keys_are_encrypted_at_rest() {
    let t = TestServer::start().await;
    let org = t.create_org("acme").await;
    create_rule(&t, org, "secret", json!({})).await;
    let (_, rule) = t
        .post(
            "/api/v2/event_rules/",
            ADMIN,
            json!({"name": "gen", "organization": org}),
        )
        .await;
    let generated = rule["webhook_key"].as_str().unwrap().to_owned();
    let dir = t.dir.clone();
    let temp = t.shutdown().await;
    for secret in [KEY, generated.as_str()] {
        let hits = common::files_containing(&dir, secret);
        assert!(hits.is_empty(), "{secret} found in {hits:?}");
    }
    drop(temp);
}

/// Clients that hang up right after sending their request: whatever reached the journal is
/// decided, nothing is half-accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_lose_nothing() {
    use tokio::io::AsyncWriteExt;
    let t = TestServer::start().await;
    let org = t.create_org("acme").await;
    create_rule(&t, org, "hangup", json!({})).await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&json!({"n": i})).unwrap();
            let request = format!(
                "POST /api/v2/eda_webhooks/hangup/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Forge-Delivery: h-{i}\r\nX-Forge-Signature: {}\r\nContent-Length: {}\r\n\r\n",
                sign(&body),
                body.len()
            );
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            // Hang up without reading the answer: half at once (the server may not even start
            // on them), half a moment later, while their append is in flight.
            if i % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(2 + i % 7)).await;
            }
            drop(stream);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Every webhook that reached the journal gets an event log and a decision; none is stuck as
    // received. (The server may still be journaling the last requests when the clients are gone,
    // so compare against the journal each time.)
    let journaled = || {
        t.app()
            .journal
            .read_stream("rule-1", 0, 10_000)
            .unwrap()
            .iter()
            .filter(|e| e.event_type == "webhook.received")
            .count() as u64
    };
    let mut last = (0, 0, 0);
    for _ in 0..500 {
        let (_, all) = t.get("/api/v2/event_logs/?page_size=1", ADMIN).await;
        let (_, undecided) = t
            .get("/api/v2/event_logs/?status=received&page_size=1", ADMIN)
            .await;
        last = (
            all["count"].as_u64().unwrap(),
            undecided["count"].as_u64().unwrap(),
            journaled(),
        );
        if last.0 > 0 && last.1 == 0 && last.0 == last.2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (logs, undecided, journaled) = last;
    assert!(journaled > 0, "no webhook reached the journal");
    assert_eq!(undecided, 0, "webhooks left undecided: {last:?}");
    assert_eq!(logs, journaled, "every journaled webhook has an event log");
    t.shutdown().await;
}

/// Kill -9 during a burst: after a restart, every webhook that was answered 202 is present and
/// decided.
#[test]
fn every_acknowledged_webhook_is_decided_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let auth = |r: reqwest::blocking::RequestBuilder| r.bearer_auth(ADMIN);
    let org: Value = auth(client.post(format!("{}/api/v2/organizations/", server.base)))
        .json(&json!({"name": "burst"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let rule = json!({"name": "burst", "organization": org["id"], "webhook_path": "burst", "webhook_key": KEY, "conditions": [{"expression": "event.n >= 0"}]});
    assert_eq!(
        auth(client.post(format!("{}/api/v2/event_rules/", server.base)))
            .json(&rule)
            .send()
            .unwrap()
            .status(),
        201
    );

    let mut writers = Vec::new();
    for w in 0..8 {
        let base = server.base.clone();
        writers.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut accepted = Vec::new();
            for i in 0.. {
                let body = serde_json::to_vec(&json!({"n": i, "w": w})).unwrap();
                let response = client
                    .post(format!("{base}/api/v2/eda_webhooks/burst/"))
                    .header("content-type", "application/json")
                    .header("x-forge-delivery", format!("{w}-{i}"))
                    .header("x-forge-signature", sign(&body))
                    .body(body)
                    .send();
                match response {
                    Ok(r) if r.status() == 202 => {
                        accepted.push(r.json::<Value>().unwrap()["event_log_id"].as_u64().unwrap())
                    }
                    _ => break,
                }
            }
            accepted
        }));
    }
    std::thread::sleep(Duration::from_millis(800));
    server.kill9();
    let accepted: Vec<u64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        accepted.len() > 50,
        "only {} webhooks accepted before the kill",
        accepted.len()
    );

    let server = ServerProcess::spawn(dir.path(), &[]);
    let mut undecided = accepted.clone();
    for _ in 0..500 {
        undecided.retain(|id| {
            let log: Value = auth(client.get(format!("{}/api/v2/event_logs/{id}/", server.base)))
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_ne!(
                log["code"], "not_found",
                "acknowledged webhook {id} was lost"
            );
            log["status"] == "received"
        });
        if undecided.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        undecided.is_empty(),
        "{} acknowledged webhooks never decided",
        undecided.len()
    );
}
