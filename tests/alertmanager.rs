//! A real Prometheus Alertmanager, started by the test, notifies a hookforge rule through its
//! webhook receiver with a Bearer credential (all Alertmanager's `http_config` can send); an
//! alert posted to Alertmanager's API must become an event log, firing and then resolved.
//!
//! Needs the `alertmanager` binary (Debian/Ubuntu package `prometheus-alertmanager`, which installs
//! it as `prometheus-alertmanager`): run `scripts/test-deps`, or point `ALERTMANAGER_BIN` at one.
//! Without it this test fails rather than skips, so CI cannot pass without having run it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestServer, eventually};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How long Alertmanager may take to start, and then to deliver a notification.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// `ALERTMANAGER_BIN`, else `alertmanager` or `prometheus-alertmanager` on `PATH`.
fn alertmanager_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ALERTMANAGER_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["alertmanager", "prometheus-alertmanager"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Alertmanager is not installed: run scripts/test-deps (it installs the Debian package \
         prometheus-alertmanager), or set ALERTMANAGER_BIN to an alertmanager binary"
    );
}

/// A running Alertmanager; killed (by its pid) when dropped.
struct Alertmanager {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The configuration under test: every alert goes to hookforge, grouped by alertname, flushed
/// after a second; the webhook authenticates with `Authorization: Bearer <key>`.
fn config(webhook_url: &str, key: &str) -> String {
    format!(
        r#"route:
  receiver: hookforge
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hookforge
    webhook_configs:
      - url: "{webhook_url}"
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: "{key}"
"#
    )
}

impl Alertmanager {
    async fn start(config: &str) -> Self {
        let binary = alertmanager_binary();
        let dir = tempfile::tempdir().unwrap();
        let config_file = dir.path().join("alertmanager.yml");
        std::fs::write(&config_file, config).unwrap();
        let storage = dir.path().join("data");
        let port = free_port();
        let log = dir.path().join("alertmanager.log");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: no second port, and no clash with a system Alertmanager on 9094.
            .arg("--cluster.listen-address=")
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut am = Alertmanager {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        am.wait_ready(&log).await;
        am
    }

    async fn wait_ready(&mut self, log: &Path) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "alertmanager exited ({status}) during start:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Ok(response) = client.get(format!("{}/-/ready", self.base)).send().await
                && response.status().is_success()
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "alertmanager not ready after {START_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /api/v2/alerts`, as Prometheus does.
    async fn post_alerts(&self, alerts: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.base))
            .json(&alerts)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "{status}: {}",
            response.text().await.unwrap()
        );
    }
}

/// hookforge's delivery id for an Alertmanager notification, recomputed from the payload:
/// SHA-256 of the JSON array `[groupKey, status, [sorted alert fingerprints]]`.
fn expected_guid(payload: &Value) -> String {
    let mut fingerprints: Vec<&str> = payload["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| alert["fingerprint"].as_str().unwrap())
        .collect();
    fingerprints.sort_unstable();
    let canonical = json!([payload["groupKey"], payload["status"], fingerprints]).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// The first event log of `rule` with `event_type`, once its rule has decided it.
async fn notification(t: &TestServer, rule: u64, event_type: &str) -> Value {
    let id = eventually(
        DELIVERY_TIMEOUT,
        &format!("Alertmanager to deliver an {event_type} notification to hookforge"),
        || async move {
            let logs = t
                .event_logs(&format!("event_rule={rule}&event_type={event_type}"))
                .await;
            logs.last().map(|log| log["id"].as_u64().unwrap())
        },
    )
    .await;
    t.decided_event_log(id).await
}

#[tokio::test]
async fn an_alert_posted_to_alertmanager_becomes_an_event_log() {
    // Fail fast, before starting anything, if the binary is missing.
    alertmanager_binary();
    let t = TestServer::start().await;
    let org = t.create_org("monitoring").await;
    let key = "am-e2e-bearer-credential-0c4f";
    let rule = t
        .create_rule(json!({
            "name": "database alerts",
            "organization": org,
            "source_type": "alertmanager",
            "webhook_key": key,
            "conditions": [
                {"expression": r#"event.commonLabels.alertname == "HookforgeE2EDatabaseDown""#},
                {"expression": r#"event.commonLabels.severity == "critical""#},
            ],
        }))
        .await;
    let rule_id = rule["id"].as_u64().unwrap();
    let am = Alertmanager::start(&config(rule["webhook_url"].as_str().unwrap(), key)).await;

    let starts_at = chrono::Utc::now();
    let alert = json!({
        "labels": {"alertname": "HookforgeE2EDatabaseDown", "severity": "critical", "instance": "db-1:9187"},
        "annotations": {"summary": "PostgreSQL on db-1 is down"},
        "startsAt": starts_at.to_rfc3339(),
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=pg_up+%3D%3D+0",
    });
    am.post_alerts(json!([alert])).await;

    let firing = notification(&t, rule_id, "alert:firing").await;
    assert_eq!(firing["status"], "matched", "{firing}");
    assert_eq!(firing["conditions_matched"], true);
    assert_eq!(firing["source_type"], "alertmanager");
    let payload = &firing["payload"];
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["receiver"], "hookforge");
    assert_eq!(
        payload["groupKey"],
        r#"{}:{alertname="HookforgeE2EDatabaseDown"}"#
    );
    assert_eq!(payload["commonLabels"]["instance"], "db-1:9187");
    assert_eq!(payload["alerts"][0]["status"], "firing");
    assert_eq!(
        payload["alerts"][0]["annotations"]["summary"],
        "PostgreSQL on db-1 is down"
    );
    assert_eq!(firing["event_guid"], expected_guid(payload));
    let user_agent = firing["headers"]["user-agent"].as_str().unwrap();
    assert!(user_agent.starts_with("Alertmanager/"), "{user_agent}");
    assert!(
        firing["headers"].get("authorization").is_none(),
        "the bearer credential is not stored: {}",
        firing["headers"]
    );
    let stored = common::journaled_webhook(&t, firing["id"].as_u64().unwrap());
    assert_eq!(
        serde_json::from_slice::<Value>(&stored.content.body.0).unwrap(),
        *payload
    );

    // Resolve it: Alertmanager sends the resolved notification for the same group.
    let mut resolved = alert.clone();
    resolved["endsAt"] = json!(chrono::Utc::now().to_rfc3339());
    am.post_alerts(json!([resolved])).await;
    let resolved = notification(&t, rule_id, "alert:resolved").await;
    assert_eq!(resolved["status"], "matched", "{resolved}");
    assert_eq!(resolved["payload"]["alerts"][0]["status"], "resolved");
    assert_eq!(resolved["event_guid"], expected_guid(&resolved["payload"]));
    assert_ne!(resolved["event_guid"], firing["event_guid"]);
    assert_eq!(
        resolved["payload"]["alerts"][0]["fingerprint"],
        firing["payload"]["alerts"][0]["fingerprint"],
        "the same alert"
    );
    drop(am);
    t.shutdown().await;
}
