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
    let lib = libfaketime();
    let offset = format!("+{days}d");
    ServerProcess::spawn(
        dir,
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("FAKETIME", &offset),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("FAKETIME_DONT_RESET", "1"),
            ("HOOKFORGE_RETENTION__SWEEP_INTERVAL_SECONDS", "1"),
        ],
    )
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
        let org = self.send(
            reqwest::Method::POST,
            "/api/v2/organizations/",
            json!({"name": name, "retention": retention}),
        )["id"]
            .as_u64()
            .unwrap();
        let rule = self.send(
            reqwest::Method::POST,
            "/api/v2/event_rules/",
            json!({"name": name, "organization": org, "webhook_path": name, "webhook_key": KEY, "conditions": [{"expression": "event.n >= 0"}]}),
        )["id"]
            .as_u64()
            .unwrap();
        for i in 0..n {
            let body = serde_json::to_vec(&json!({ "n": i })).unwrap();
            let signature = hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), &body);
            let response = self
                .http
                .post(format!("{}/api/v2/eda_webhooks/{name}/", self.base))
                .header("content-type", "application/json")
                .header("x-forge-delivery", format!("{name}-{i}"))
                .header("x-forge-signature", format!("sha256={signature}"))
                .body(body)
                .send()
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
        (org, rule)
    }
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
    let body = serde_json::to_vec(&json!({"n": 99})).unwrap();
    let signature = hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), &body);
    let response = client
        .http
        .post(format!("{}/api/v2/eda_webhooks/short/", client.base))
        .header("content-type", "application/json")
        .header("x-forge-delivery", "short-late")
        .header("x-forge-signature", format!("sha256={signature}"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
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
