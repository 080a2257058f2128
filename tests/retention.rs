//! Retention: per-organization settings over the API, and expiry through the real binary.
//!
//! Expiry is tested by running the server under libfaketime (Debian package `faketime`, which
//! `scripts/test-deps` installs; `FAKETIME_LIB` may point at the library elsewhere): webhooks
//! are received today, then the same data directory is served 40 and 400 days later.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{ADMIN, ServerProcess, TestServer, hookforge};
use reqwest::StatusCode;
use reqwest::blocking::Response;
use serde_json::{Value, json};

const KEY: &str = "retention-test-key-0123456789";

#[tokio::test]
async fn retention_settings_are_validated_shown_and_audited() {
    let t = TestServer::start().await;
    let org = t.create_org("keeps").await;
    let url = format!("/api/v2/organizations/{org}/");
    let (_, shown) = t.get(&url, ADMIN).await;
    assert_eq!(
        shown["retention"],
        json!({"event_logs_days": 30, "deliveries_days": 30, "payload_days": 30, "audit_days": 365})
    );

    for (retention, field) in [
        (json!({"event_logs_days": -1}), "retention.event_logs_days"),
        (json!({"event_logs_days": 0}), "retention.event_logs_days"),
        (
            json!({"deliveries_days": 3651}),
            "retention.deliveries_days",
        ),
        (json!({"audit_days": "30"}), "retention.audit_days"),
        (json!({"payload_days": 1.5}), "retention.payload_days"),
        (json!({"forever": true}), "retention.forever"),
        (json!(30), "retention"),
    ] {
        let (status, error) = t
            .patch(&url, ADMIN, json!({ "retention": retention }))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{retention}: {error}");
        assert_eq!(error["code"], "invalid");
        assert!(error["fields"][field].is_array(), "{retention}: {error}");
    }

    let (status, patched) = t
        .patch(
            &url,
            ADMIN,
            json!({"retention": {"event_logs_days": 7, "payload_days": 90, "audit_days": 3650}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    // A payload never outlives its event log.
    assert_eq!(
        patched["retention"],
        json!({"event_logs_days": 7, "deliveries_days": 30, "payload_days": 7, "audit_days": 3650})
    );
    let (_, reset) = t
        .patch(&url, ADMIN, json!({"retention": {"event_logs_days": null}}))
        .await;
    assert_eq!(reset["retention"]["event_logs_days"], 30);
    assert_eq!(reset["retention"]["payload_days"], 30);
    assert_eq!(reset["retention"]["audit_days"], 3650);
    assert_eq!(reset["name"], "keeps", "other fields are untouched");

    let (_, audit) = t
        .get(
            "/api/v2/audit_events/?action=organization.retention_set",
            ADMIN,
        )
        .await;
    assert_eq!(audit["count"], 2, "{audit}");
    assert_eq!(audit["results"][0]["organization"], org);
    assert_eq!(
        audit["results"][0]["details"]["retention"]["event_logs_days"],
        Value::Null
    );

    // Only a system admin sets retention.
    let (_, org_admin) = t.create_token(org, "admin").await;
    let (status, _) = t
        .patch(&url, &org_admin, json!({"retention": {"audit_days": 1}}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // And the settings survive a restart (they are events like any other).
    let t = t.restart().await;
    let (_, shown) = t.get(&url, ADMIN).await;
    assert_eq!(shown["retention"]["audit_days"], 3650);
    t.shutdown().await;
}

/// libfaketime's multi-threaded build.
fn libfaketime() -> PathBuf {
    if let Some(lib) = std::env::var_os("FAKETIME_LIB") {
        return PathBuf::from(lib);
    }
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .unwrap_or_else(|| {
        panic!("libfaketime is not installed: run scripts/test-deps (Debian package faketime), or set FAKETIME_LIB")
    })
}

/// Serves `dir` as if it were `days` days later (wall clock only; timers keep real time).
fn serve_later(dir: &std::path::Path, days: u32) -> ServerProcess {
    serve_later_with(dir, days, &[])
}

/// [`serve_later`] with more environment.
fn serve_later_with(dir: &std::path::Path, days: u32, env: &[(&str, &str)]) -> ServerProcess {
    let lib = libfaketime();
    let offset = format!("+{days}d");
    let mut all = vec![
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("FAKETIME", &offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("FAKETIME_DONT_RESET", "1"),
        ("HOOKFORGE_RETENTION__SWEEP_INTERVAL_SECONDS", "1"),
    ];
    all.extend_from_slice(env);
    ServerProcess::spawn(dir, &all)
}

struct Client {
    http: reqwest::blocking::Client,
    base: String,
}

impl Client {
    fn new(server: &ServerProcess) -> Self {
        Self {
            http: reqwest::blocking::Client::new(),
            base: server.base.clone(),
        }
    }

    fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Sends as the system admin; the answer must be a 2xx.
    fn succeed(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.succeed(method, path, Some(body)).json().unwrap()
    }

    fn delete(&self, path: &str) {
        self.succeed(reqwest::Method::DELETE, path, None);
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn count(&self, path: &str) -> u64 {
        self.get(path)["count"].as_u64().unwrap()
    }

    /// Waits until `count(path)` is `expected`.
    fn wait_count(&self, path: &str, expected: u64) {
        let mut last = 0;
        for _ in 0..300 {
            last = self.count(path);
            if last == expected {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{path}: count {last}, expected {expected}");
    }

    /// An organization with `retention` and a rule that received `n` webhooks; (org, rule).
    fn tenant(&self, name: &str, retention: Value, n: usize) -> (u64, u64) {
        self.tenant_with(name, retention, json!({}), n, 0)
    }

    /// [`Self::tenant`] with more rule settings and `pad` bytes of filler in each payload.
    fn tenant_with(
        &self,
        name: &str,
        retention: Value,
        rule: Value,
        n: usize,
        pad: usize,
    ) -> (u64, u64) {
        let org = self.send(
            reqwest::Method::POST,
            "/api/v2/organizations/",
            json!({"name": name, "retention": retention}),
        )["id"]
            .as_u64()
            .unwrap();
        let mut body = json!({"name": name, "organization": org, "webhook_path": name, "webhook_key": KEY, "conditions": [{"expression": "event.n >= 0"}]});
        body.as_object_mut()
            .unwrap()
            .extend(rule.as_object().unwrap().clone());
        let rule = self.send(reqwest::Method::POST, "/api/v2/event_rules/", body)["id"]
            .as_u64()
            .unwrap();
        for i in 0..n {
            self.deliver(name, &format!("{name}-{i}"), &payload(i, pad));
        }
        (org, rule)
    }

    /// Posts a signed webhook to `path`; the answer's JSON.
    fn deliver(&self, path: &str, delivery: &str, payload: &Value) -> Value {
        let body = serde_json::to_vec(payload).unwrap();
        let signature = hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), &body);
        let response = self
            .http
            .post(format!("{}/api/v2/eda_webhooks/{path}/", self.base))
            .header("content-type", "application/json")
            .header("x-forge-delivery", delivery)
            .header("x-forge-signature", format!("sha256={signature}"))
            .body(body)
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().unwrap()
    }
}

/// Webhook `i`'s payload, with `pad` bytes of filler.
fn payload(i: usize, pad: usize) -> Value {
    json!({"n": i, "pad": "x".repeat(pad)})
}

#[test]
fn expired_history_leaves_the_api_in_metered_batches_and_stays_gone_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let client = Client::new(&server);
    let (short, short_rule) = client.tenant("short", json!({}), 5);
    let (long, long_rule) = client.tenant(
        "long",
        json!({"event_logs_days": 60, "audit_days": 3650}),
        3,
    );
    // A tenant that leaves: its rule and organization are deleted, its history stays until it
    // expires like anyone's.
    let (gone, gone_rule) = client.tenant("gone", json!({"event_logs_days": 10}), 2);
    let short_logs = format!("/api/v2/event_logs/?event_rule={short_rule}");
    let long_logs = format!("/api/v2/event_logs/?event_rule={long_rule}");
    let gone_logs = format!("/api/v2/event_logs/?event_rule={gone_rule}");
    client.wait_count(&short_logs, 5);
    client.wait_count(&long_logs, 3);
    client.wait_count(&gone_logs, 2);
    client.delete(&format!("/api/v2/event_rules/{gone_rule}/"));
    client.delete(&format!("/api/v2/organizations/{gone}/"));
    assert_eq!(client.count(&gone_logs), 2);
    let short_audit = format!("/api/v2/audit_events/?organization={short}");
    let long_audit = format!("/api/v2/audit_events/?organization={long}");
    let audited = (client.count(&short_audit), client.count(&long_audit));
    assert!(audited.0 >= 2 && audited.1 >= 2, "{audited:?}");
    assert!(server.terminate().success());

    // 40 days on: the default 30-day event logs went, the 60-day ones stayed; audit stays.
    let mut server = serve_later(dir.path(), 40);
    let client = Client::new(&server);
    client.wait_count(&short_logs, 0);
    client.wait_count(&gone_logs, 0);
    assert_eq!(client.count(&long_logs), 3);
    assert_eq!(
        (client.count(&short_audit), client.count(&long_audit)),
        audited
    );
    let expired = r#"hookforge_retention_expired_total{kind="event_logs"}"#;
    assert_eq!(client.metric(expired), 7.0);
    assert!(client.metric("hookforge_retention_sweeps_total") >= 1.0);
    // New webhooks are received as usual, and are not expired.
    let answer = client.deliver("short", "short-late", &json!({"n": 99}));
    assert_eq!(answer["status"], "received");
    client.wait_count(&short_logs, 1);
    assert!(server.terminate().success());

    // 400 days on: every old event log has gone, and the 365-day audit trail with it; the
    // organization that keeps ten years of audit keeps it.
    let mut server = serve_later(dir.path(), 400);
    let client = Client::new(&server);
    client.wait_count(&long_logs, 0);
    client.wait_count(&short_audit, 0);
    assert!(client.count(&long_audit) >= audited.1);
    assert!(server.terminate().success());

    // Expiry is in the journal: a plain restart (views rebuilt or resumed) shows the same.
    let server = serve_later(dir.path(), 400);
    let client = Client::new(&server);
    assert_eq!(client.count(&long_logs), 0);
    assert_eq!(client.count(&short_audit), 0);
    drop(server);
    let data = dir.path().to_str().unwrap();
    let (code, out, err) = hookforge(&["journal", "verify", "--data-dir", data]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The payloads of `org`'s rule's logs, newest first.
fn payloads(client: &Client, rule: u64) -> Vec<Value> {
    let list = client.get(&format!(
        "/api/v2/event_logs/?event_rule={rule}&page_size=200"
    ));
    list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|log| log["payload"].clone())
        .collect()
}

fn journal_stats(dir: &std::path::Path) -> Value {
    let (code, out, err) = hookforge(&["journal", "stats", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap()
}

fn verify(dir: &std::path::Path) -> String {
    let (code, out, err) = hookforge(&["journal", "verify", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    out
}

#[test]
fn expired_payloads_are_compacted_out_of_the_journal_through_kill_9_and_dedup_holds() {
    let dir = tempfile::tempdir().unwrap();
    let small_segments = [("HOOKFORGE_JOURNAL__SEGMENT_MIB", "1")];
    let mut server = ServerProcess::spawn(dir.path(), &small_segments);
    let client = Client::new(&server);
    // Payloads kept one day, deliveries de-duplicated for thirty; and a tenant that keeps both.
    let dedup = json!({"dedup_window_seconds": 2_592_000});
    let (_, brief_rule) = client.tenant_with("brief", json!({"payload_days": 1}), dedup, 400, 5000);
    let (_, keeps_rule) = client.tenant_with("keeps", json!({}), json!({}), 100, 5000);
    client.wait_count(&format!("/api/v2/event_logs/?event_rule={brief_rule}"), 400);
    client.wait_count(&format!("/api/v2/event_logs/?event_rule={keeps_rule}"), 100);
    assert!(server.terminate().success());
    let before = journal_stats(dir.path());
    assert_eq!(before["compacted_records"], 0);

    // Two days on, compaction runs slowly (1 MiB/s over ~2.5 MiB of segments); kill it mid-way,
    // ten times. Each time the journal verifies, and the next start finishes the work.
    let slow = [
        ("HOOKFORGE_JOURNAL__SEGMENT_MIB", "1"),
        ("HOOKFORGE_RETENTION__COMPACTION_MIB_PER_SECOND", "1"),
    ];
    let mut interrupted = 0;
    for cycle in 0..10u64 {
        let mut server = serve_later_with(dir.path(), 2, &slow);
        std::thread::sleep(Duration::from_millis(1200 + 150 * cycle));
        server.kill9();
        let copies = std::fs::read_dir(dir.path().join("journal/segments"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".compacting")
            })
            .count();
        interrupted += copies;
        verify(dir.path());
    }
    eprintln!("kills that interrupted a copy: {interrupted} of 10");
    assert!(
        interrupted >= 1,
        "no kill landed while a segment was being copied"
    );
    let server = serve_later_with(dir.path(), 2, &small_segments);
    let client = Client::new(&server);
    for _ in 0..300 {
        if client.metric("hookforge_retention_sweeps_total") >= 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(payloads(&client, brief_rule).iter().all(|p| p == "expired"));
    let kept = payloads(&client, keeps_rule);
    assert_eq!(kept.len(), 100);
    for (i, p) in kept.iter().rev().enumerate() {
        assert_eq!(*p, payload(i, 5000), "keeps' webhook {i} is whole");
    }
    drop(server);

    let out = verify(dir.path());
    let stats = journal_stats(dir.path());
    let compacted = stats["compacted_records"].as_u64().unwrap();
    // All of brief's webhooks but those in the active (last) segment.
    assert!(compacted >= 300, "{stats}");
    assert!(out.contains(&format!("({compacted} compacted)")), "{out}");
    let reclaimed = before["segment_bytes_allocated"].as_u64().unwrap()
        - stats["segment_bytes_allocated"].as_u64().unwrap();
    assert!(reclaimed >= compacted * 5000, "{before} {stats}");
    assert!(
        stats["reclaimable_bytes"].as_u64().unwrap() < 1 << 20,
        "{stats}"
    );

    // The dedup window outlives the payloads, even when the views are rebuilt from the
    // compacted journal.
    std::fs::remove_dir_all(dir.path().join("views")).unwrap();
    let server = serve_later_with(dir.path(), 2, &small_segments);
    let client = Client::new(&server);
    let again = client.deliver("brief", "brief-0", &payload(0, 5000));
    assert_eq!(again["status"], "duplicate", "{again}");
    let fresh = client.deliver("brief", "brief-new", &payload(1, 10));
    assert_eq!(fresh["status"], "received", "{fresh}");
    assert_eq!(
        client.count(&format!("/api/v2/event_logs/?event_rule={brief_rule}")),
        401
    );
}

/// Waits until `check` answers something (up to 30 s).
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(found) = check() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_published_event_cut_by_retention_fails_its_redelivery_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("HOOKFORGE_JOURNAL__SEGMENT_MIB", "1"),
        ("HOOKFORGE_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true"),
    ];
    let mut server = ServerProcess::spawn(dir.path(), &env);
    let client = Client::new(&server);
    let post = reqwest::Method::POST;
    let org = client.send(
        post.clone(),
        "/api/v2/organizations/",
        json!({"name": "brief", "retention": {"payload_days": 1}}),
    )["id"]
        .as_u64()
        .unwrap();
    // Nobody listens there and one attempt is allowed: every delivery is dead at once.
    let endpoint = client.send(
        post.clone(),
        "/api/v2/outbound_webhooks/",
        json!({"name": "gone", "organization": org, "url": "http://127.0.0.1:9/hook",
            "events": ["build.done"], "retry": {"max_attempts": 1}}),
    )["id"]
        .as_u64()
        .unwrap();
    // Enough 5 KiB payloads to fill and close the first 1 MiB segment.
    let filler = "x".repeat(5000);
    for i in 0..300 {
        client.send(
            post.clone(),
            "/api/v2/events/",
            json!({"organization": org, "event_type": "build.done", "payload": {"i": i, "filler": filler}}),
        );
    }
    let deliveries = format!("/api/v2/outbound_webhooks/{endpoint}/deliveries/");
    client.wait_count(&format!("{deliveries}?status=dead"), 300);
    let oldest = client.get(&format!("{deliveries}?page_size=100&page=3"))["results"][99]["id"]
        .as_u64()
        .unwrap();
    assert!(server.terminate().success());

    // Two days on, the payloads have expired and are cut out of the closed segments.
    let server = serve_later_with(dir.path(), 2, &env);
    let client = Client::new(&server);
    wait_for("compaction", || {
        (client.metric("hookforge_retention_compacted_records_total") >= 100.0).then_some(())
    });
    let again = client.send(
        post,
        &format!("/api/v2/deliveries/{oldest}/redeliver/"),
        json!({}),
    );
    let id = again["id"].as_u64().unwrap();
    let dead = wait_for("the redelivery to die", || {
        let d = client.get(&format!("/api/v2/deliveries/{id}/"));
        (d["status"] == "dead").then_some(d)
    });
    let error = dead["error_message"].as_str().unwrap_or_default();
    assert!(
        error.contains("removed by retention"),
        "the attempt says why, and sent nothing: {dead}"
    );
    assert_eq!(dead["response_status"], Value::Null, "{dead}");
}
