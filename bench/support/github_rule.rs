//! The inbound benchmarks' workload: a GitHub rule with three CEL conditions, and a stream of
//! distinct, individually signed ~7 KiB push deliveries for it.

// Shared by several benches, each of which uses part of it.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

pub const KEY: &str = "benchmark-webhook-key-0123456789";
pub const ADMIN: &str = "benchmark-admin-token-0123456789";
pub const CONDITIONS: [&str; 3] = [
    r#"event.ref == "refs/heads/main""#,
    r#"event.repository.full_name.startsWith("octo")"#,
    r#"headers["x-github-event"] == "push""#,
];

/// A benchmark server's configuration over `dir` (durable acknowledgement, as in production).
pub fn config(dir: &std::path::Path) -> hookforge::config::Config {
    hookforge::config::Config {
        data_dir: dir.to_path_buf(),
        admin_token: Some(ADMIN.into()),
        log_level: "warn".into(),
        ..hookforge::config::Config::default()
    }
}

/// Creates an organization and the rule at `/api/v2/eda_webhooks/bench/`.
pub async fn create_rule(base: &str) {
    let client = reqwest::Client::new();
    let org: serde_json::Value = client
        .post(format!("{base}/api/v2/organizations/"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conditions: Vec<_> = CONDITIONS
        .iter()
        .map(|c| serde_json::json!({"expression": c}))
        .collect();
    let rule = serde_json::json!({"name": "bench", "organization": org["id"], "source_type": "webhook_github",
        "webhook_path": "bench", "webhook_key": KEY, "conditions": conditions});
    let created = client
        .post(format!("{base}/api/v2/event_rules/"))
        .bearer_auth(ADMIN)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

/// Builds request `n` of the stream: delivery id and `after` commit unique, each body signed on
/// its own. A repeated body (or id) would be a cheap duplicate that flatters the rate.
pub fn pushes(payload: Bytes) -> Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync> {
    let needle = b"\"after\":";
    let after = payload
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the push payload has an `after` commit")
        + needle.len();
    let quote = after + payload[after..].iter().position(|b| *b == b'"').unwrap() + 1;
    let sequence = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Arc::new(move |_| {
        let n = sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut body = payload.to_vec();
        body[quote..quote + 40].copy_from_slice(format!("{n:040x}").as_bytes());
        let signature = format!(
            "sha256={}",
            hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), &body)
        );
        Request::post("/api/v2/eda_webhooks/bench/")
            .header("host", "bench")
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header(
                "x-github-delivery",
                format!("72d3162e-cc78-11e3-81ab-{n:012x}"),
            )
            .header("x-hub-signature-256", signature.as_str())
            .header("user-agent", "GitHub-Hookshot/044aadd")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    })
}

/// Rule decisions made so far (every push matches).
pub fn decided(server: &hookforge::server::Server) -> u64 {
    server
        .app
        .metrics
        .inbound
        .decisions
        .with_label_values(&["matched"])
        .get()
}
