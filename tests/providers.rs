//! Real provider payloads (`fixtures/`, sources in `fixtures/SOURCES.md`) delivered over loopback
//! to the real server, with the headers, content type and signature scheme each provider uses;
//! then the event log its rule decided: status, event type, delivery id, payload and headers.
//!
//! Signatures are computed here with the `hmac`/`sha1`/`sha2`/`rsa` crates directly, not with
//! `hookforge::signing`, so a bug in hookforge's primitives cannot hide behind the same bug in
//! the test.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{ADMIN, TestServer, fixture, hookforge_with_stdin, journaled_webhook};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Signing, as the providers do it.

fn hmac_sha256_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn hmac_sha1_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Standard Webhooks `v1,<base64>`: HMAC-SHA256 over `{id}.{timestamp}.{body}`; a `whsec_` key is
/// base64 after the prefix, any other key its UTF-8 bytes (as GitLab's signing tokens).
fn standard_webhooks_signature(key: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = match key.strip_prefix("whsec_") {
        Some(encoded) => BASE64.decode(encoded).unwrap(),
        None => key.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------------------------
// Rules and assertions.

/// A rule created through the API: its id, webhook path and key.
struct Rule {
    id: u64,
    path: String,
}

async fn create_rule(
    t: &TestServer,
    org: u64,
    name: &str,
    source_type: &str,
    key: &str,
    conditions: &[&str],
) -> Rule {
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|expression| json!({"expression": expression}))
        .collect();
    let rule = t
        .create_rule(json!({
            "name": name,
            "organization": org,
            "source_type": source_type,
            "webhook_key": key,
            "conditions": conditions,
        }))
        .await;
    assert_eq!(rule["source_type"], source_type);
    assert_eq!(
        rule["webhook_key"], key,
        "the create response shows the key once"
    );
    let path = rule["webhook_path"].as_str().unwrap().to_owned();
    assert_eq!(
        rule["webhook_url"],
        format!("{}/api/v2/eda_webhooks/{path}/", t.base)
    );
    Rule {
        id: rule["id"].as_u64().unwrap(),
        path,
    }
}

/// Delivers and expects `202 {"event_log_id": N, "status": "received"}`; returns N.
async fn accepted(t: &TestServer, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> u64 {
    let (status, reply) = t.deliver(path, headers, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(reply["status"], "received", "{reply}");
    reply["event_log_id"].as_u64().unwrap()
}

/// Delivers and expects a 401 with `code`; returns the detail.
async fn refused(
    t: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    code: &str,
) -> String {
    let (status, reply) = t.deliver(path, headers, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    reply["detail"].as_str().unwrap().to_owned()
}

/// What an event log must show for a delivery whose conditions all held.
struct Expected<'a> {
    rule: &'a Rule,
    event_type: &'a str,
    event_guid: &'a str,
    /// The JSON the payload must equal (the fixture, parsed).
    payload: &'a [u8],
    /// Headers that must be stored, with their values.
    headers: &'a [(&'a str, &'a str)],
}

/// Waits for the decision on `id` and checks it against `expected`; returns the event log.
async fn assert_matched(t: &TestServer, id: u64, expected: Expected<'_>) -> Value {
    let log = t.decided_event_log(id).await;
    assert_eq!(log["status"], "matched", "{log}");
    assert_eq!(log["conditions_matched"], true, "{log}");
    let results = log["condition_results"].as_array().unwrap();
    assert!(!results.is_empty());
    for result in results {
        assert_eq!(result["result"], true, "{result}");
        assert_eq!(result["error"], Value::Null, "{result}");
    }
    assert_eq!(log["event_rule"], expected.rule.id);
    assert_eq!(log["event_type"], expected.event_type, "{log}");
    assert_eq!(log["event_guid"], expected.event_guid, "{log}");
    assert_eq!(log["source_ip"], "127.0.0.1");
    let payload: Value = serde_json::from_slice(expected.payload).unwrap();
    assert_eq!(log["payload"], payload);
    for (name, value) in expected.headers {
        assert_eq!(log["headers"][name], *value, "header {name} in {log}");
    }
    for credential in ["authorization", "x-gitlab-token", "x-forge-token"] {
        assert!(
            log["headers"].get(credential).is_none(),
            "{credential} must not be stored: {}",
            log["headers"]
        );
    }
    log
}

async fn org(t: &TestServer) -> u64 {
    t.create_org("providers").await
}

// ---------------------------------------------------------------------------------------------
// GitHub

const GITHUB_KEY: &str = "gh-webhook-secret-8f2c1e";

#[tokio::test]
async fn github_push_and_pull_request_signed_with_sha256() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(
        &t,
        org,
        "github",
        "webhook_github",
        GITHUB_KEY,
        &[
            r#"event.repository.full_name == "Codertocat/Hello-World""#,
            r#"headers["x-github-event"] in ["push", "pull_request"]"#,
        ],
    )
    .await;

    let push = fixture("github/push.json");
    let signature = format!("sha256={}", hmac_sha256_hex(GITHUB_KEY, &push));
    let legacy = format!("sha1={}", hmac_sha1_hex(GITHUB_KEY, &push));
    // GitHub's documented delivery headers (it sends both signatures).
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let headers = [
        ("Content-Type", "application/json"),
        ("User-Agent", "GitHub-Hookshot/044aadd"),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("X-GitHub-Hook-ID", "292430182"),
        ("X-GitHub-Hook-Installation-Target-ID", "79929171"),
        ("X-GitHub-Hook-Installation-Target-Type", "repository"),
        ("X-Hub-Signature", legacy.as_str()),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    let id = accepted(&t, &rule.path, &headers, push.clone()).await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "push",
            event_guid: delivery,
            payload: &push,
            headers: &[
                ("x-github-event", "push"),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &signature),
                ("user-agent", "GitHub-Hookshot/044aadd"),
            ],
        },
    )
    .await;
    let stored = journaled_webhook(&t, id);
    assert_eq!(stored.content.body.0, push, "the exact bytes are journaled");
    assert!(!stored.received.form_encoded);

    let pull = fixture("github/pull_request_opened.json");
    let signature = format!("sha256={}", hmac_sha256_hex(GITHUB_KEY, &pull));
    let delivery = uuid();
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", &delivery),
            ("X-Hub-Signature-256", &signature),
        ],
        pull.clone(),
    )
    .await;
    let log = assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "pull_request",
            event_guid: &delivery,
            payload: &pull,
            headers: &[("x-github-event", "pull_request")],
        },
    )
    .await;
    assert_eq!(
        log["payload"]["pull_request"]["title"],
        "Update the README with new information."
    );
    assert_eq!(journaled_webhook(&t, id).content.body.0, pull);

    // Both are listed under the rule, newest first, and filterable by event type and guid.
    let logs = t.event_logs(&format!("event_rule={}", rule.id)).await;
    let ids: Vec<u64> = logs.iter().map(|l| l["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] > ids[1]);
    let by_type = t.event_logs("event_type=pull_request").await;
    assert_eq!(by_type.len(), 1);
    assert_eq!(by_type[0]["id"], id);
    let by_guid = t
        .event_logs("event_guid=72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .await;
    assert_eq!(by_guid.len(), 1);
    assert_eq!(by_guid[0]["event_type"], "push");
    t.shutdown().await;
}

#[tokio::test]
async fn github_form_encoded_delivery_and_legacy_sha1_signature() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(
        &t,
        org,
        "github-form",
        "webhook_github",
        GITHUB_KEY,
        &[r#"event.action == "opened" && event.pull_request.number == 2"#],
    )
    .await;
    let pull = fixture("github/pull_request_opened.json");

    // Content type application/x-www-form-urlencoded: the JSON goes in a `payload` field, and
    // the signature covers the form body.
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&pull).unwrap())
        .finish()
        .into_bytes();
    let signature = format!("sha256={}", hmac_sha256_hex(GITHUB_KEY, &form));
    let delivery = uuid();
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", &delivery),
            ("X-Hub-Signature-256", &signature),
        ],
        form.clone(),
    )
    .await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "pull_request",
            event_guid: &delivery,
            payload: &pull,
            headers: &[("content-type", "application/x-www-form-urlencoded")],
        },
    )
    .await;
    let stored = journaled_webhook(&t, id);
    assert!(stored.received.form_encoded);
    assert_eq!(
        stored.content.body.0, form,
        "the signed form body is journaled as sent"
    );
    assert_eq!(stored.payload().as_ref(), pull.as_slice());

    // A webhook created before GitHub added SHA-256 (or a GitHub Enterprise that only sends
    // SHA-1) carries just `X-Hub-Signature: sha1=`.
    let legacy = format!("sha1={}", hmac_sha1_hex(GITHUB_KEY, &pull));
    let delivery = uuid();
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", &delivery),
            ("X-Hub-Signature", &legacy),
        ],
        pull.clone(),
    )
    .await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "pull_request",
            event_guid: &delivery,
            payload: &pull,
            headers: &[("x-hub-signature", &legacy)],
        },
    )
    .await;

    // A SHA-1 signature made with another key is refused, naming the header.
    let wrong = format!("sha1={}", hmac_sha1_hex("not-the-key", &pull));
    let detail = refused(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", &uuid()),
            ("X-Hub-Signature", &wrong),
        ],
        pull.clone(),
        "signature_mismatch",
    )
    .await;
    assert_eq!(
        detail,
        "Webhook verification failed: signature does not match (X-Hub-Signature)."
    );
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// GitLab

const GITLAB_KEY: &str = "glwt-secret-token-3b91";

#[tokio::test]
async fn gitlab_push_hook_with_secret_token() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(
        &t,
        org,
        "gitlab",
        "webhook_gitlab",
        GITLAB_KEY,
        &[
            r#"event.object_kind == "push""#,
            r#"event.project.path_with_namespace == "mike/diaspora" && event.total_commits_count == 4"#,
        ],
    )
    .await;
    let push = fixture("gitlab/push_hook.json");
    let event_uuid = uuid();
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "GitLab/17.5.0"),
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", GITLAB_KEY),
            ("X-Gitlab-Instance", "https://gitlab.example.com"),
            (
                "X-Gitlab-Webhook-UUID",
                "c5ac9c1b-ddc5-4c2c-a6fb-2d7b9d1b1f1a",
            ),
            ("X-Gitlab-Event-UUID", &event_uuid),
        ],
        push.clone(),
    )
    .await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "Push Hook",
            event_guid: &event_uuid,
            payload: &push,
            headers: &[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-instance", "https://gitlab.example.com"),
            ],
        },
    )
    .await;
    assert_eq!(journaled_webhook(&t, id).content.body.0, push);
    assert!(
        journaled_webhook(&t, id)
            .content
            .headers
            .iter()
            .all(|(name, value)| name != "x-gitlab-token" && value != GITLAB_KEY),
        "the secret token is not journaled"
    );

    // The wrong token is refused.
    refused(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", "glwt-someone-else"),
            ("X-Gitlab-Event-UUID", &uuid()),
        ],
        push,
        "signature_mismatch",
    )
    .await;
    t.shutdown().await;
}

#[tokio::test]
async fn gitlab_push_hook_signed_with_standard_webhooks() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(
        &t,
        org,
        "gitlab-signed",
        "webhook_gitlab",
        GITLAB_KEY,
        &[r#"event.object_kind == "push" && event.ref == "refs/heads/master""#],
    )
    .await;
    let push = fixture("gitlab/push_hook.json");
    // A webhook with a secret token and a signing token: GitLab sends both credentials and an
    // Idempotency-Key, which takes precedence over X-Gitlab-Event-UUID as the delivery id.
    let message_id = uuid();
    let timestamp = now().to_string();
    let signature = standard_webhooks_signature(GITLAB_KEY, &message_id, now(), &push);
    let idempotency = uuid();
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", GITLAB_KEY),
        (
            "X-Gitlab-Event-UUID",
            "0a0e2f42-6a8f-4a3e-9b71-000000000001",
        ),
        ("Idempotency-Key", idempotency.as_str()),
        ("webhook-id", message_id.as_str()),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    let id = accepted(&t, &rule.path, &headers, push.clone()).await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "Push Hook",
            event_guid: &idempotency,
            payload: &push,
            headers: &[
                ("webhook-id", &message_id),
                ("webhook-signature", &signature),
            ],
        },
    )
    .await;

    // Signature only (a webhook with a signing token but no secret token).
    let message_id = uuid();
    let signature = standard_webhooks_signature(GITLAB_KEY, &message_id, now(), &push);
    let event_uuid = uuid();
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Event-UUID", &event_uuid),
            ("webhook-id", &message_id),
            ("webhook-timestamp", &now().to_string()),
            ("webhook-signature", &signature),
        ],
        push.clone(),
    )
    .await;
    let log = t.decided_event_log(id).await;
    assert_eq!(
        (log["status"].as_str(), log["event_guid"].as_str()),
        (Some("matched"), Some(event_uuid.as_str()))
    );

    // Every credential present must hold: a right token does not rescue a wrong signature.
    let message_id = uuid();
    let forged = standard_webhooks_signature("glwt-someone-else", &message_id, now(), &push);
    let detail = refused(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", GITLAB_KEY),
            ("X-Gitlab-Event-UUID", &uuid()),
            ("webhook-id", &message_id),
            ("webhook-timestamp", &now().to_string()),
            ("webhook-signature", &forged),
        ],
        push,
        "signature_mismatch",
    )
    .await;
    assert!(detail.contains("webhook-signature"), "{detail}");
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Gitea

#[tokio::test]
async fn gitea_push_with_bare_hex_signature() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let key = "123-gitea-secret";
    let rule = create_rule(
        &t,
        org,
        "gitea",
        "webhook_gitea",
        key,
        &[r#"event.repository.full_name == "gitea/webhooks" && event.ref == "refs/heads/develop""#],
    )
    .await;
    let push = fixture("gitea/push.json");
    let signature = hmac_sha256_hex(key, &push);
    // The delivery headers of Gitea's documented example; Gitea sends its GitHub- and
    // Gogs-compatible twins too.
    let delivery = "f6266f16-1bf3-46a5-9ea4-602e06ead473";
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Delivery", delivery),
            ("X-GitHub-Event", "push"),
            ("X-Gogs-Delivery", delivery),
            ("X-Gogs-Event", "push"),
            ("X-Gitea-Delivery", delivery),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", &signature),
            ("X-Gogs-Signature", &signature),
        ],
        push.clone(),
    )
    .await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "push",
            event_guid: delivery,
            payload: &push,
            headers: &[("x-gitea-event", "push"), ("x-gitea-signature", &signature)],
        },
    )
    .await;
    assert_eq!(journaled_webhook(&t, id).content.body.0, push);

    // GitHub's `sha256=` prefix is not Gitea's format: refused as malformed, not as a mismatch.
    let detail = refused(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Gitea-Delivery", "f6266f16-0000-46a5-9ea4-602e06ead473"),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", &format!("sha256={signature}")),
        ],
        push,
        "malformed_signature",
    )
    .await;
    assert_eq!(
        detail,
        "Webhook verification failed: malformed X-Gitea-Signature header (expected <64 hex digits>)."
    );
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Alertmanager

#[tokio::test]
async fn alertmanager_v4_body_with_bearer_credentials() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let key = "am-bearer-credential-5d7a";
    let rule = create_rule(
        &t,
        org,
        "alertmanager",
        "alertmanager",
        key,
        &[
            r#"event.commonLabels.alertname == "high_memory_load""#,
            r#"event.status == "firing" && event.alerts[0].labels.severity == "warning""#,
        ],
    )
    .await;
    let body = fixture("alertmanager/firing.json");
    let bearer = format!("Bearer {key}");
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "Alertmanager/0.25.0"),
            ("Authorization", &bearer),
        ],
        body.clone(),
    )
    .await;
    // The group's identity: sha256 of [groupKey, status, [alert label sets]] (these alerts
    // predate per-alert fingerprints); pinned in hookforge's unit tests too.
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "alert:firing",
            event_guid: "d42dc498ccb68e82261d15dcca96eedf340c9f57c371a938c0c7b5ba13ec7cd5",
            payload: &body,
            headers: &[("user-agent", "Alertmanager/0.25.0")],
        },
    )
    .await;
    assert_eq!(journaled_webhook(&t, id).content.body.0, body);

    // Alertmanager re-sends the same group on every repeat_interval: one event log.
    let (status, reply) = t
        .deliver(
            &rule.path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &bearer),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply, json!({"event_log_id": id, "status": "duplicate"}));

    // A signing proxy in front of Alertmanager may use X-Forge-Signature instead.
    let mut resolved: Value = serde_json::from_slice(&body).unwrap();
    resolved["status"] = "resolved".into();
    let resolved = serde_json::to_vec(&resolved).unwrap();
    let signature = format!("sha256={}", hmac_sha256_hex(key, &resolved));
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Forge-Signature", &signature),
        ],
        resolved,
    )
    .await;
    let log = t.decided_event_log(id).await;
    assert_eq!(log["event_type"], "alert:resolved");
    assert_eq!(
        log["status"], "unmatched",
        "the rule only matches firing alerts: {log}"
    );
    assert_eq!(log["conditions_matched"], false);

    refused(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer am-someone-else"),
        ],
        body,
        "signature_mismatch",
    )
    .await;
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// PagerDuty

/// `secret` and the "valid"/"mismatch" signatures of go-pagerduty's `TestVerifySignature`.
const PAGERDUTY_SDK_SECRET: &str =
    "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK";
const PAGERDUTY_SDK_VALID: &str =
    "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";
const PAGERDUTY_SDK_MISMATCH: &str =
    "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5";

#[tokio::test]
async fn pagerduty_v3_with_the_sdk_signed_bytes() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    // PagerDuty generates the signing secret; the user pastes it into the rule.
    let rule = create_rule(
        &t,
        org,
        "pagerduty",
        "pagerduty",
        PAGERDUTY_SDK_SECRET,
        &[
            r#"event.event.event_type == "incident.priority_updated""#,
            r#"event.event.data.priority.summary == "P1" && event.event.data.urgency == "high""#,
        ],
    )
    .await;
    let signed = fixture("pagerduty/incident_priority_updated.signed.json");
    assert_eq!(signed.len(), 1655, "the SDK's exact signed bytes");
    let webhook_id = "5ac64822-4adc-4fda-ade0-410becf0de4f";
    let headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("User-Agent", "PagerDuty-Webhook/V3.0"),
        ("X-Webhook-Id", webhook_id),
        ("X-Webhook-Subscription", "PY1OQ1Z"),
        ("X-PagerDuty-Signature", PAGERDUTY_SDK_VALID),
    ];
    let id = accepted(&t, &rule.path, &headers, signed.clone()).await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "incident.priority_updated",
            event_guid: webhook_id,
            payload: &signed,
            headers: &[
                ("x-pagerduty-signature", PAGERDUTY_SDK_VALID),
                ("x-webhook-subscription", "PY1OQ1Z"),
            ],
        },
    )
    .await;
    assert_eq!(journaled_webhook(&t, id).content.body.0, signed);

    // The SDK's "mismatch" vector is refused.
    let detail = refused(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Webhook-Id", "mismatch-1"),
            ("X-PagerDuty-Signature", PAGERDUTY_SDK_MISMATCH),
        ],
        signed.clone(),
        "signature_mismatch",
    )
    .await;
    assert_eq!(
        detail,
        "Webhook verification failed: signature does not match (X-PagerDuty-Signature)."
    );

    // The developer docs' example, delivered while PagerDuty rotates its secret: one v1 entry
    // per active secret, and any match passes.
    let example = fixture("pagerduty/incident_priority_updated.json");
    let several = format!(
        "v1={},v1={}",
        hmac_sha256_hex("a-secret-being-rotated-in", &example),
        hmac_sha256_hex(PAGERDUTY_SDK_SECRET, &example)
    );
    let webhook_id = uuid();
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Webhook-Id", &webhook_id),
            ("X-PagerDuty-Signature", &several),
        ],
        example.clone(),
    )
    .await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "incident.priority_updated",
            event_guid: &webhook_id,
            payload: &example,
            headers: &[("x-pagerduty-signature", &several)],
        },
    )
    .await;
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Datadog

#[tokio::test]
async fn datadog_default_payload_with_a_shared_secret_header() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let key = "dd-custom-header-secret-71c0";
    let rule = create_rule(
        &t,
        org,
        "datadog",
        "datadog",
        key,
        &[r#"event.title.startsWith("[Triggered]") && event.org.name == "Puppet""#],
    )
    .await;
    let body = fixture("datadog/monitor_alert.json");
    // Datadog cannot sign; its webhook integration sends custom headers configured by the user.
    let id = accepted(
        &t,
        &rule.path,
        &[("Content-Type", "application/json"), ("X-Forge-Token", key)],
        body.clone(),
    )
    .await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "service_check",
            event_guid: "5485379890863845239",
            payload: &body,
            headers: &[("content-type", "application/json")],
        },
    )
    .await;
    assert_eq!(
        journaled_webhook(&t, id).content.body.0,
        body,
        "UTF-8 kept byte for byte"
    );

    // The same payload again (Datadog retries with the same `$ID`): a duplicate.
    let bearer = format!("Bearer {key}");
    let (status, reply) = t
        .deliver(
            &rule.path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &bearer),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(
        (status, reply),
        (
            StatusCode::OK,
            json!({"event_log_id": id, "status": "duplicate"})
        )
    );

    refused(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Forge-Token", "dd-wrong"),
        ],
        body,
        "signature_mismatch",
    )
    .await;
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// CloudWatch through SNS

/// The `SigningCertURL` of the documented examples.
const SNS_CERT_URL: &str = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem";

/// An RSA key with a self-signed certificate, standing in for SNS's (which cannot be fetched
/// offline, and whose private key nobody outside AWS has).
struct SnsSigner {
    cert_pem: String,
    key: rsa::PrivateKey,
}

impl SnsSigner {
    fn new() -> Self {
        use rsa::pkcs8::DecodePrivateKey;
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["sns.us-west-2.amazonaws.com".into()])
            .unwrap()
            .self_signed(&key_pair)
            .unwrap();
        SnsSigner {
            cert_pem: cert.pem(),
            key: rsa::PrivateKey::from_pkcs8_der(&key_pair.serialize_der()).unwrap(),
        }
    }

    /// Base64 SHA1withRSA (SignatureVersion 1) signature of `data`.
    fn sign(&self, data: &str) -> String {
        use rsa::signature::{SignatureEncoding, Signer};
        let key = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(self.key.clone());
        BASE64.encode(key.sign(data.as_bytes()).to_vec())
    }

    /// `message` as SNS would send it now: its `Timestamp` set to the current time and its
    /// placeholder `Signature` replaced by a real one; every other byte is left as published.
    fn signed(&self, message: &[u8]) -> Vec<u8> {
        let value: Value = serde_json::from_slice(message).unwrap();
        let published = value["Timestamp"].as_str().unwrap();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.signed_as_published(&replace_once(message, published.as_bytes(), now.as_bytes()))
    }

    /// `message` with its placeholder `Signature` replaced by a real one over its canonical
    /// string; every other byte (its `Timestamp` too) is left as published.
    fn signed_as_published(&self, message: &[u8]) -> Vec<u8> {
        let value: Value = serde_json::from_slice(message).unwrap();
        let placeholder = value["Signature"].as_str().unwrap();
        let signature = self.sign(&sns_canonical_string(&value));
        replace_once(message, placeholder.as_bytes(), signature.as_bytes())
    }
}

/// The string SNS signs, written out from the AWS documentation ("Verifying the signatures of
/// Amazon SNS messages"): `Name\nvalue\n` for each signed field, in this order.
fn sns_canonical_string(message: &Value) -> String {
    let fields: &[&str] = if message["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    fields
        .iter()
        .filter_map(|name| {
            message[*name]
                .as_str()
                .map(|value| format!("{name}\n{value}\n"))
        })
        .collect()
}

fn replace_once(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present");
    assert!(
        haystack[at + 1..]
            .windows(needle.len())
            .all(|w| w != needle),
        "needle appears once"
    );
    [&haystack[..at], with, &haystack[at + needle.len()..]].concat()
}

async fn cloudwatch_server() -> (TestServer, Rule, SnsSigner) {
    let t = TestServer::start().await;
    let signer = SnsSigner::new();
    t.app().sns_certs.seed(
        url::Url::parse(SNS_CERT_URL).unwrap(),
        hookforge::verify::sns::SnsCertificate::parse(signer.cert_pem.as_bytes()).unwrap(),
    );
    let org = org(&t).await;
    let rule = create_rule(
        &t,
        org,
        "cloudwatch",
        "cloudwatch",
        "unused-for-sns-but-required",
        &[r#"event.TopicArn == "arn:aws:sns:us-west-2:123456789012:MyTopic""#],
    )
    .await;
    (t, rule, signer)
}

#[tokio::test]
async fn sns_notification_and_subscription_confirmation_with_a_seeded_certificate() {
    let (t, rule, signer) = cloudwatch_server().await;

    let notification = signer.signed(&fixture("aws_sns/notification.json"));
    let headers = [
        ("Content-Type", "text/plain; charset=UTF-8"),
        ("User-Agent", "Amazon Simple Notification Service Agent"),
        ("x-amz-sns-message-type", "Notification"),
        (
            "x-amz-sns-message-id",
            "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        ),
        (
            "x-amz-sns-topic-arn",
            "arn:aws:sns:us-west-2:123456789012:MyTopic",
        ),
        (
            "x-amz-sns-subscription-arn",
            "arn:aws:sns:us-west-2:123456789012:MyTopic:c9135db0-26c4-47ec-8998-413945fb5a96",
        ),
    ];
    let id = accepted(&t, &rule.path, &headers, notification.clone()).await;
    let log = assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "Notification",
            event_guid: "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            payload: &notification,
            headers: &[("x-amz-sns-message-type", "Notification")],
        },
    )
    .await;
    assert_eq!(log["payload"]["Message"], "Hello world!");
    assert_eq!(journaled_webhook(&t, id).content.body.0, notification);
    // A captured message replayed under another x-amz-sns-message-id (a header nobody signs)
    // still carries the signed MessageId: a duplicate, not a new event.
    let (status, reply) = t
        .deliver(
            &rule.path,
            &[
                ("Content-Type", "text/plain; charset=UTF-8"),
                ("x-amz-sns-message-type", "Notification"),
                (
                    "x-amz-sns-message-id",
                    "00000000-0000-4000-8000-000000000000",
                ),
            ],
            notification.clone(),
        )
        .await;
    assert_eq!(
        (status, reply),
        (
            StatusCode::OK,
            json!({"event_log_id": id, "status": "duplicate"})
        )
    );

    let confirmation = signer.signed(&fixture("aws_sns/subscription_confirmation.json"));
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "text/plain; charset=UTF-8"),
            ("x-amz-sns-message-type", "SubscriptionConfirmation"),
            (
                "x-amz-sns-message-id",
                "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            ),
            (
                "x-amz-sns-topic-arn",
                "arn:aws:sns:us-west-2:123456789012:MyTopic",
            ),
        ],
        confirmation.clone(),
    )
    .await;
    assert_matched(
        &t,
        id,
        Expected {
            rule: &rule,
            event_type: "SubscriptionConfirmation",
            event_guid: "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            payload: &confirmation,
            headers: &[("x-amz-sns-message-type", "SubscriptionConfirmation")],
        },
    )
    .await;
    // SNS retries keep the MessageId: a duplicate.
    let (status, reply) = t
        .deliver(
            &rule.path,
            &[
                ("Content-Type", "text/plain; charset=UTF-8"),
                (
                    "x-amz-sns-message-id",
                    "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
                ),
            ],
            confirmation,
        )
        .await;
    assert_eq!(
        (status, reply),
        (
            StatusCode::OK,
            json!({"event_log_id": id, "status": "duplicate"})
        )
    );
    t.shutdown().await;
}

#[tokio::test]
async fn forged_or_tampered_sns_messages_are_refused() {
    let (t, rule, signer) = cloudwatch_server().await;
    let before = t.event_log_count().await;
    let notification = signer.signed(&fixture("aws_sns/notification.json"));
    let headers = [
        ("Content-Type", "text/plain; charset=UTF-8"),
        ("x-amz-sns-message-type", "Notification"),
    ];

    // One byte of the signed Message changed.
    let tampered = replace_once(&notification, b"Hello world!", b"Hello World!");
    let detail = refused(&t, &rule.path, &headers, tampered, "signature_mismatch").await;
    assert_eq!(
        detail,
        "Webhook verification failed: SNS signature does not match the message and its signing certificate."
    );

    // Signed by someone else's key, claiming the SNS certificate URL.
    let forger = SnsSigner::new();
    let forged = forger.signed(&fixture("aws_sns/notification.json"));
    refused(&t, &rule.path, &headers, forged, "signature_mismatch").await;

    // The documented example as published (its signature is an illustration).
    refused(
        &t,
        &rule.path,
        &headers,
        fixture("aws_sns/notification.json"),
        "signature_mismatch",
    )
    .await;

    // Genuinely signed, but sent years ago: SNS stops retrying after an hour, so it is a replay.
    let replayed = signer.signed_as_published(&fixture("aws_sns/notification.json"));
    let detail = refused(
        &t,
        &rule.path,
        &headers,
        replayed,
        "timestamp_out_of_tolerance",
    )
    .await;
    assert!(detail.contains("SNS Timestamp is"), "{detail}");

    // A certificate from anywhere but SNS is not even fetched.
    let elsewhere = replace_once(
        &notification,
        SNS_CERT_URL.as_bytes(),
        b"https://sns.us-west-2.amazonaws.com.evil.example/SimpleNotificationService-f3ec.pem",
    );
    let detail = refused(
        &t,
        &rule.path,
        &headers,
        elsewhere,
        "sns_certificate_url_refused",
    )
    .await;
    assert!(detail.contains("SigningCertURL refused"), "{detail}");

    // Each refusal is logged as signature_failed, and nothing was accepted.
    let failed = common::eventually(
        std::time::Duration::from_secs(10),
        "five signature_failed event logs",
        || async {
            let logs = t
                .event_logs(&format!("event_rule={}&status=signature_failed", rule.id))
                .await;
            (logs.len() == 5).then_some(logs)
        },
    )
    .await;
    assert_eq!(t.event_log_count().await, before + 5);
    assert!(t.event_logs("status=matched").await.is_empty());
    assert!(failed.iter().all(|log| log["source_type"] == "cloudwatch"));
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Generic senders: Standard Webhooks, signed with `hookforge sign`.

/// The Standard Webhooks libraries' shared test vector (standard-webhooks/standard-webhooks,
/// libraries' `test_sign`/`TestSign`): this key, id, timestamp and payload give this signature.
const SW_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TIMESTAMP: i64 = 1614265330;
const SW_PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// Parses `Name: value` lines printed by `hookforge sign`.
fn sign_with_cli(
    key: &str,
    scheme: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let timestamp = timestamp.to_string();
    let (code, stdout, stderr) = hookforge_with_stdin(
        &[
            "sign",
            "--key",
            key,
            "--scheme",
            scheme,
            "--id",
            id,
            "--timestamp",
            &timestamp,
        ],
        body,
    );
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn generic_standard_webhooks_signed_by_the_cli() {
    // The CLI reproduces the library vector, so what it prints is what any sender computes.
    let vector = sign_with_cli(SW_KEY, "standard", SW_ID, SW_TIMESTAMP, SW_PAYLOAD);
    assert_eq!(
        vector,
        vec![
            ("webhook-id".to_owned(), SW_ID.to_owned()),
            ("webhook-timestamp".to_owned(), SW_TIMESTAMP.to_string()),
            ("webhook-signature".to_owned(), SW_SIGNATURE.to_owned()),
        ]
    );
    assert_eq!(
        standard_webhooks_signature(SW_KEY, SW_ID, SW_TIMESTAMP, SW_PAYLOAD),
        SW_SIGNATURE
    );

    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(
        &t,
        org,
        "generic",
        "webhook_generic",
        SW_KEY,
        &["event.test == 2432232314"],
    )
    .await;
    let headers = sign_with_cli(SW_KEY, "standard", SW_ID, now(), SW_PAYLOAD);
    let mut pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    pairs.push(("Content-Type", "application/json"));
    let id = accepted(&t, &rule.path, &pairs, SW_PAYLOAD.to_vec()).await;
    let log = t.decided_event_log(id).await;
    assert_eq!(log["status"], "matched", "{log}");
    assert_eq!(log["event_guid"], SW_ID, "webhook-id is the delivery id");
    assert_eq!(
        log["event_type"],
        Value::Null,
        "no X-Forge-Event, no payload event_type"
    );
    assert_eq!(log["payload"], json!({"test": 2432232314_u64}));
    assert_eq!(journaled_webhook(&t, id).content.body.0, SW_PAYLOAD);

    // X-Forge-Signature, from the CLI's generic scheme, with an event type and delivery id.
    let body = br#"{"event_type":"build.finished","test":2432232314}"#;
    let headers = sign_with_cli(SW_KEY, "generic", "unused", 0, body);
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, "X-Forge-Signature");
    assert_eq!(
        headers[0].1,
        format!("sha256={}", hmac_sha256_hex(SW_KEY, body)),
        "X-Forge-Signature uses the key string's bytes, whsec_ prefix and all"
    );
    let id = accepted(
        &t,
        &rule.path,
        &[
            ("Content-Type", "application/json"),
            ("X-Forge-Delivery", "del-42"),
            (&headers[0].0, &headers[0].1),
        ],
        body.to_vec(),
    )
    .await;
    let log = t.decided_event_log(id).await;
    assert_eq!(
        (
            log["status"].as_str(),
            log["event_type"].as_str(),
            log["event_guid"].as_str()
        ),
        (Some("matched"), Some("build.finished"), Some("del-42"))
    );
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Key rotation, duplicates, disabled rules.

async fn github_delivery(
    t: &TestServer,
    path: &str,
    key: &str,
    delivery: &str,
) -> (StatusCode, Value) {
    // A real push per delivery: GitHub's redeliveries repeat the body and the id, new events
    // differ in content (a repeated body under a new id is refused as a replay).
    let mut push: Value = serde_json::from_slice(&fixture("github/push.json")).unwrap();
    push["hookforge_test_delivery"] = json!(delivery);
    let push = serde_json::to_vec(&push).unwrap();
    let signature = format!("sha256={}", hmac_sha256_hex(key, &push));
    t.deliver(
        path,
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &signature),
        ],
        push,
    )
    .await
}

#[tokio::test]
async fn rotated_key_keeps_the_old_one_valid_during_the_grace_period() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(
        &t,
        org,
        "rotating",
        "webhook_github",
        "old-key-0001",
        &["true"],
    )
    .await;
    let (status, rotated) = t
        .post(
            &format!("/api/v2/event_rules/{}/webhook_key/", rule.id),
            ADMIN,
            json!({"webhook_key": "new-key-0002"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["webhook_key"], "new-key-0002");
    let until =
        chrono::DateTime::parse_from_rfc3339(rotated["previous_key_valid_until"].as_str().unwrap())
            .unwrap();
    let grace = until.timestamp() - now();
    assert!(
        (3590..=3600).contains(&grace),
        "default grace is an hour, got {grace} s"
    );
    let (_, revealed) = t
        .get(
            &format!("/api/v2/event_rules/{}/webhook_key/", rule.id),
            ADMIN,
        )
        .await;
    assert_eq!(revealed["webhook_key"], "new-key-0002");

    for (key, delivery) in [("old-key-0001", "d-old"), ("new-key-0002", "d-new")] {
        let (status, reply) = github_delivery(&t, &rule.path, key, delivery).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{key}: {reply}");
        let log = t
            .decided_event_log(reply["event_log_id"].as_u64().unwrap())
            .await;
        assert_eq!(log["status"], "matched");
    }
    let (status, reply) = github_delivery(&t, &rule.path, "never-issued-key", "d-bad").await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_mismatch"))
    );

    // Rotating again (to a generated key) retires the first key at once: only one previous
    // key is kept.
    let (status, generated) = t
        .call(
            reqwest::Method::POST,
            &format!("/api/v2/event_rules/{}/webhook_key/", rule.id),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{generated}");
    let generated = generated["webhook_key"].as_str().unwrap().to_owned();
    assert!(
        generated.len() >= 32,
        "generated keys are long: {generated}"
    );
    let (status, _) = github_delivery(&t, &rule.path, "old-key-0001", "d-old-2").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (key, delivery) in [("new-key-0002", "d-new-2"), (generated.as_str(), "d-gen")] {
        let (status, reply) = github_delivery(&t, &rule.path, key, delivery).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn without_a_grace_period_the_rotated_out_key_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.ingress.key_rotation_grace_seconds = 0;
    let t = TestServer::start_with(config).await;
    let org = org(&t).await;
    let rule = create_rule(
        &t,
        org,
        "strict",
        "webhook_github",
        "old-key-0001",
        &["true"],
    )
    .await;
    let (status, _) = t
        .post(
            &format!("/api/v2/event_rules/{}/webhook_key/", rule.id),
            ADMIN,
            json!({"webhook_key": "new-key-0002"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = github_delivery(&t, &rule.path, "old-key-0001", "d-old").await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_mismatch"))
    );
    let (status, reply) = github_delivery(&t, &rule.path, "new-key-0002", "d-new").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    t.shutdown().await;
}

#[tokio::test]
async fn a_redelivery_is_a_duplicate_of_the_original_and_changes_nothing() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(&t, org, "dedup", "webhook_github", GITHUB_KEY, &["true"]).await;
    let delivery = "9a7b3c1e-0000-11ef-8000-0242ac120002";
    let (status, first) = github_delivery(&t, &rule.path, GITHUB_KEY, delivery).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let original = first["event_log_id"].as_u64().unwrap();
    t.decided_event_log(original).await;
    let count = t.event_log_count().await;
    let head = t.app().journal.next_position();

    // GitHub's "Redeliver" button, and its automatic retries, reuse the delivery id.
    for _ in 0..3 {
        let (status, reply) = github_delivery(&t, &rule.path, GITHUB_KEY, delivery).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(
            reply,
            json!({"event_log_id": original, "status": "duplicate"})
        );
    }
    assert_eq!(t.event_log_count().await, count);
    assert_eq!(
        t.app().journal.next_position(),
        head,
        "nothing was journaled"
    );
    let log = t.decided_event_log(original).await;
    assert_eq!(log["status"], "matched");

    // Another delivery id is a new event, and the same id on another rule is that rule's own.
    let (status, _) = github_delivery(&t, &rule.path, GITHUB_KEY, "another-delivery").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let other = create_rule(&t, org, "dedup-2", "webhook_github", GITHUB_KEY, &["true"]).await;
    let (status, reply) = github_delivery(&t, &other.path, GITHUB_KEY, delivery).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_ne!(reply["event_log_id"], original);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redeliveries_are_received_once() {
    // A provider that times out and retries while the first attempt is still in flight.
    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(&t, org, "storm", "webhook_github", GITHUB_KEY, &["true"]).await;
    let attempts = futures::future::join_all(
        (0..16).map(|_| github_delivery(&t, &rule.path, GITHUB_KEY, "storm-delivery")),
    )
    .await;
    let received: Vec<&Value> = attempts
        .iter()
        .filter(|(status, _)| *status == StatusCode::ACCEPTED)
        .map(|(_, reply)| reply)
        .collect();
    assert_eq!(received.len(), 1, "{attempts:?}");
    let original = &received[0]["event_log_id"];
    for (status, reply) in &attempts {
        if *status != StatusCode::ACCEPTED {
            assert_eq!(*status, StatusCode::OK, "{reply}");
            assert_eq!(
                *reply,
                json!({"event_log_id": original, "status": "duplicate"})
            );
        }
    }
    t.decided_event_log(original.as_u64().unwrap()).await;
    assert_eq!(t.event_log_count().await, 1);
    t.shutdown().await;
}

#[tokio::test]
async fn a_disabled_rule_answers_404_and_logs_nothing() {
    let t = TestServer::start().await;
    let org = org(&t).await;
    let rule = create_rule(&t, org, "switch", "webhook_github", GITHUB_KEY, &["true"]).await;
    let (status, body) = t
        .post(
            &format!("/api/v2/event_rules/{}/disable/", rule.id),
            ADMIN,
            json!({}),
        )
        .await;
    assert_eq!((status, &body["enabled"]), (StatusCode::OK, &json!(false)));
    let head = t.app().journal.next_position();
    let (status, reply) = github_delivery(&t, &rule.path, GITHUB_KEY, "while-disabled").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert_eq!(reply["code"], "not_found");
    assert_eq!(
        reply["detail"],
        "No enabled event rule listens on this webhook path."
    );
    assert_eq!(t.event_log_count().await, 0);
    assert_eq!(t.app().journal.next_position(), head);

    let (status, _) = t
        .post(
            &format!("/api/v2/event_rules/{}/enable/", rule.id),
            ADMIN,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The delivery refused while disabled was not recorded, so its retry is new, not a duplicate.
    let (status, reply) = github_delivery(&t, &rule.path, GITHUB_KEY, "while-disabled").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    t.shutdown().await;
}
