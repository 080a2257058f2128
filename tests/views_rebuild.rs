//! The read models on disk survive kill -9 exactly: after 20 kills in the middle of webhook
//! bursts and configuration changes, the event logs and the audit trail the server shows equal
//! those of a full rebuild from the journal (the store deleted, every view folded again from
//! position 0).

mod common;

use std::time::Duration;

use common::{ADMIN, ServerProcess};
use serde_json::{Value, json};

const KEY: &str = "rebuild-test-key-0123456789";
const CYCLES: usize = 20;

fn sign(body: &[u8]) -> String {
    format!(
        "sha256={}",
        hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
    )
}

/// Every audit entry, newest first.
fn all_audit(base: &str) -> Vec<Value> {
    let client = reqwest::blocking::Client::new();
    let mut all = Vec::new();
    for page in 1.. {
        let body: Value = client
            .get(format!(
                "{base}/api/v2/audit_events/?page_size=200&page={page}"
            ))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        all.extend(body["results"].as_array().unwrap().iter().cloned());
        if body["next"].is_null() {
            return all;
        }
    }
    unreachable!()
}

/// Every event log, oldest first, once none is still being decided.
fn all_logs(base: &str) -> Vec<Value> {
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| -> Value {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    for _ in 0..400 {
        if get("/api/v2/event_logs/?status=received&page_size=1")["count"] == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut logs = Vec::new();
    let mut page = 1;
    loop {
        let body = get(&format!("/api/v2/event_logs/?page_size=200&page={page}"));
        logs.extend(body["results"].as_array().unwrap().iter().cloned());
        if body["next"].is_null() {
            break;
        }
        page += 1;
    }
    logs.reverse();
    logs
}

#[test]
fn views_on_disk_equal_a_full_rebuild_after_kill_9_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::blocking::Client::new();
    let server = ServerProcess::spawn(dir.path(), &[]);
    let org: Value = client
        .post(format!("{}/api/v2/organizations/", server.base))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "rebuild"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // Some webhooks match, some do not, some are throttled, some are repeats or forged: the
    // logs move between the status indexes.
    let rule = json!({"name": "rebuild", "organization": org["id"], "webhook_path": "rebuild", "webhook_key": KEY,
        "conditions": [{"expression": "event.n % 3 != 0"}], "throttle_seconds": 1, "throttle_key": "string(event.n % 5)"});
    let created = client
        .post(format!("{}/api/v2/event_rules/", server.base))
        .bearer_auth(ADMIN)
        .json(&rule)
        .send()
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().unwrap());
    drop(server);

    let mut accepted = 0usize;
    for cycle in 0..CYCLES {
        let mut server = ServerProcess::spawn(dir.path(), &[]);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let base = server.base.clone();
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .unwrap();
                    let mut accepted = 0;
                    for i in 0.. {
                        let body = serde_json::to_vec(&json!({"n": i, "w": w})).unwrap();
                        // Every seventh repeats the previous delivery id; every eleventh is forged.
                        let id = if i % 7 == 6 { i - 1 } else { i };
                        let signature = if i % 11 == 10 {
                            "sha256=00".to_owned()
                        } else {
                            sign(&body)
                        };
                        let response = client
                            .post(format!("{base}/api/v2/eda_webhooks/rebuild/"))
                            .header("content-type", "application/json")
                            .header("x-forge-delivery", format!("{cycle}-{w}-{id}"))
                            .header("x-forge-signature", signature)
                            .body(body)
                            .send();
                        match response {
                            Ok(r) if r.status() == 202 || r.status() == 401 => accepted += 1,
                            Ok(r) if r.status() == 200 => {} // a duplicate
                            _ => break,
                        }
                    }
                    accepted
                })
            })
            .collect();
        // Configuration changes meanwhile: each token creation is an audit entry.
        let auditor = {
            let (base, org) = (server.base.clone(), org["id"].clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                while let Ok(r) = client
                    .post(format!("{base}/api/v2/tokens/"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"organization": org, "role": "member"}))
                    .send()
                {
                    if r.status() != 201 {
                        break;
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(150 + 20 * (cycle as u64 % 5)));
        server.kill9();
        auditor.join().unwrap();
        accepted += writers
            .into_iter()
            .map(|w| w.join().unwrap())
            .sum::<usize>();
    }
    assert!(accepted > 200, "only {accepted} webhooks before the kills");

    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let resumed = all_logs(&server.base);
    let resumed_audit = all_audit(&server.base);
    assert!(server.terminate().success());
    assert!(resumed.len() > 200, "{} logs", resumed.len());

    // A full rebuild: no store, no snapshots of the in-memory views either.
    std::fs::remove_dir_all(dir.path().join("views")).unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, out, err) = common::hookforge(&["journal", "verify", "--data-dir", data]);
    assert_eq!(code, 0, "{out}{err}");
    let server = ServerProcess::spawn(dir.path(), &[]);
    let rebuilt = all_logs(&server.base);
    let rebuilt_audit = all_audit(&server.base);
    assert!(
        resumed_audit.len() > 20,
        "{} audit entries",
        resumed_audit.len()
    );
    assert_eq!(
        resumed_audit, rebuilt_audit,
        "the audit trail differs from a rebuild"
    );
    assert_eq!(resumed.len(), rebuilt.len());
    for (a, b) in resumed.iter().zip(&rebuilt) {
        assert_eq!(a, b, "the resumed view differs from a rebuild");
    }
    let statuses: std::collections::BTreeSet<&str> = rebuilt
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    for status in ["matched", "unmatched", "throttled", "signature_failed"] {
        assert!(statuses.contains(status), "no {status} log in {statuses:?}");
    }
}
