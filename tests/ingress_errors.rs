//! Bad input at the ingress gets a precise error and loses nothing: oversize bodies (413 before
//! the body is read), wrong content types (415), malformed JSON (400), bad, missing and garbled
//! credentials (401, logged as `signature_failed` with the payload kept and capped), replayed
//! Standard Webhooks timestamps (401), unknown paths (404), and CEL errors at create time (400)
//! and at run time (event log `error`, and the rule keeps working). After every refusal the test
//! checks that nothing else changed: the journal head and the event log count.

mod common;

use std::time::Duration;

use common::{ADMIN, TestServer, eventually, fixture};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "ingress-errors-key-4e1d";
const LIMIT: usize = 1024 * 1024;

fn github_signature(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A server with one GitHub rule; returns it with the rule's id and webhook path.
async fn github_rule(conditions: &[&str]) -> (TestServer, u64, String) {
    let t = TestServer::start().await;
    let org = t.create_org("errors").await;
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|c| json!({"expression": c}))
        .collect();
    let rule = t
        .create_rule(json!({
            "name": "github", "organization": org, "source_type": "webhook_github",
            "webhook_key": KEY, "conditions": conditions,
        }))
        .await;
    let path = rule["webhook_path"].as_str().unwrap().to_owned();
    (t, rule["id"].as_u64().unwrap(), path)
}

/// What must not change when a request is refused without being logged.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct State {
    journal_head: u64,
    event_logs: u64,
}

/// Reads the event log count first: an event log exists only once its event is in the journal,
/// so a count that moved is never paired with a head read before the append.
async fn state(t: &TestServer) -> State {
    let event_logs = t.event_log_count().await;
    State {
        journal_head: t.app().journal.next_position(),
        event_logs,
    }
}

/// A JSON document of exactly `len` bytes.
fn json_of_len(len: usize) -> Vec<u8> {
    let mut body = br#"{"pad":""#.to_vec();
    body.resize(len - 2, b'x');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), len);
    serde_json::from_slice::<Value>(&body).unwrap();
    body
}

fn signed_headers<'a>(signature: &'a str, delivery: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("X-Hub-Signature-256", signature),
    ]
}

// ---------------------------------------------------------------------------------------------
// 413

/// Sends a raw HTTP/1.1 request: `head` (request line and headers, without the blank line),
/// then `body` in `chunk`-sized writes (chunked encoding when `chunked`), without waiting for the
/// body to be consumed; returns the response status and body once the response is complete.
/// Writing stops quietly if the server stops reading.
async fn raw_request(
    t: &TestServer,
    head: &str,
    body: Vec<u8>,
    chunk: usize,
    chunked: bool,
) -> (u16, Value) {
    let addr = t.base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!("{head}\r\nHost: {addr}\r\n\r\n");
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for part in body.chunks(chunk) {
            if chunked {
                writer
                    .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                    .await?;
                writer.write_all(part).await?;
                writer.write_all(b"\r\n").await?;
            } else {
                writer.write_all(part).await?;
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        // Keep the connection open: the server must answer without waiting for more.
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, std::io::Error>(writer)
    });
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = Vec::new();
        let mut part = [0u8; 8192];
        loop {
            let n = reader.read(&mut part).await.unwrap();
            assert!(n > 0, "connection closed before a full response: {buf:?}");
            buf.extend_from_slice(&part[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("response has a content-length");
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap();
                return (status, body);
            }
        }
    })
    .await
    .expect("the server answered within 10 s");
    sender.abort();
    response
}

fn assert_too_large(status: u16, body: &Value) {
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    assert_eq!(
        body["detail"],
        "The body exceeds the limit of 1048576 bytes."
    );
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413() {
    let (t, _, path) = github_rule(&["true"]).await;
    let body = json_of_len(LIMIT);
    let signature = github_signature(KEY, &body);
    let (status, reply) = t
        .deliver(&path, &signed_headers(&signature, "at-limit"), body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    t.decided_event_log(reply["event_log_id"].as_u64().unwrap())
        .await;

    let before = state(&t).await;
    let body = json_of_len(LIMIT + 1);
    let signature = github_signature(KEY, &body);
    let (status, reply) = t
        .deliver(&path, &signed_headers(&signature, "over-limit"), body)
        .await;
    assert_too_large(status.as_u16(), &reply);
    assert_eq!(state(&t).await, before);
    t.shutdown().await;
}

#[tokio::test]
async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let (t, _, path) = github_rule(&["true"]).await;
    let before = state(&t).await;
    // Content-Length says 1 MiB + 1, but only 16 bytes follow and the client then waits: the
    // answer can only come from the header.
    let head = format!(
        "POST /api/v2/eda_webhooks/{path}/ HTTP/1.1\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: sha256={}\r\nContent-Length: {}",
        "0".repeat(64),
        LIMIT + 1
    );
    let (status, body) = raw_request(&t, &head, b"{\"pad\":\"xxxxxxx\"".to_vec(), 16, false).await;
    assert_too_large(status, &body);
    // The same with a length far beyond anything the server would buffer.
    let head = format!(
        "POST /api/v2/eda_webhooks/{path}/ HTTP/1.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}",
        u64::MAX / 2
    );
    let (status, body) = raw_request(&t, &head, Vec::new(), 1, false).await;
    assert_too_large(status, &body);
    assert_eq!(state(&t).await, before);
    t.shutdown().await;
}

#[tokio::test]
async fn a_chunked_body_without_content_length_is_cut_off_at_the_limit() {
    let (t, _, path) = github_rule(&["true"]).await;
    let before = state(&t).await;
    let head = format!(
        "POST /api/v2/eda_webhooks/{path}/ HTTP/1.1\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: sha256={}\r\nTransfer-Encoding: chunked",
        "0".repeat(64)
    );
    let (status, body) = raw_request(&t, &head, json_of_len(LIMIT + 1), 64 * 1024, true).await;
    assert_too_large(status, &body);
    // A chunked body within the limit is read to its end and verified as usual.
    let small = json_of_len(4096);
    let head = format!(
        "POST /api/v2/eda_webhooks/{path}/ HTTP/1.1\r\nContent-Type: application/json\r\n\
         X-GitHub-Delivery: chunked-ok\r\nX-Hub-Signature-256: {}\r\nTransfer-Encoding: chunked",
        github_signature(KEY, &small)
    );
    let (status, body) = raw_request(&t, &head, small, 1000, true).await;
    assert_eq!(status, 202, "{body}");
    let after = eventually(Duration::from_secs(10), "one event log", || async {
        let now = state(&t).await;
        (now.event_logs == before.event_logs + 1).then_some(now)
    })
    .await;
    assert_eq!(after.event_logs, before.event_logs + 1);
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 415, 400, 404

#[tokio::test]
async fn a_wrong_content_type_is_415_and_nothing_is_logged() {
    let (t, _, path) = github_rule(&["true"]).await;
    let push = fixture("github/push.json");
    let signature = github_signature(KEY, &push);
    let before = state(&t).await;
    for content_type in [
        Some("text/plain"),
        Some("application/xml"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut headers = vec![("X-Hub-Signature-256", signature.as_str())];
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        let (status, reply) = t.deliver(&path, &headers, push.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {reply}"
        );
        assert_eq!(reply["code"], "unsupported_media_type");
        assert_eq!(
            reply["detail"],
            "Send the webhook as application/json (or GitHub's application/x-www-form-urlencoded payload= form)."
        );
    }
    assert_eq!(state(&t).await, before);
    // Parameters and case do not matter.
    let (status, reply) = t
        .deliver(
            &path,
            &[
                ("Content-Type", "Application/JSON; charset=utf-8"),
                ("X-GitHub-Delivery", "cased"),
                ("X-Hub-Signature-256", &signature),
            ],
            push,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(reply["event_log_id"], before.journal_head);
    t.shutdown().await;
}

#[tokio::test]
async fn malformed_json_is_400_and_nothing_is_logged() {
    let (t, _, path) = github_rule(&["true"]).await;
    let before = state(&t).await;
    // Correctly signed, so verification passes and the body itself is at fault.
    let push = fixture("github/push.json");
    for body in [
        push[..push.len() / 2].to_vec(),
        b"{\"ref\": refs/heads/main}".to_vec(),
        Vec::new(),
    ] {
        let signature = github_signature(KEY, &body);
        let (status, reply) = t
            .deliver(&path, &signed_headers(&signature, "malformed"), body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert_eq!(reply["code"], "malformed_json");
        let detail = reply["detail"].as_str().unwrap();
        assert!(detail.starts_with("Malformed JSON payload: "), "{detail}");
        assert!(
            detail.contains("line"),
            "the parser's position is given: {detail}"
        );
    }
    // A form body without its `payload` field.
    let form = b"hook=1&zen=Keep+it+logically+awesome".to_vec();
    let signature = github_signature(KEY, &form);
    let (status, reply) = t
        .deliver(
            &path,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Hub-Signature-256", &signature),
            ],
            form,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(
        (reply["code"].as_str(), reply["detail"].as_str()),
        (
            Some("malformed_body"),
            Some("The form body has no payload field.")
        )
    );
    assert_eq!(state(&t).await, before);
    t.shutdown().await;
}

#[tokio::test]
async fn payload_sources_parse_the_body_too() {
    // PagerDuty's event type comes from the payload, so a malformed body is caught there as well.
    let t = TestServer::start().await;
    let org = t.create_org("pd").await;
    let rule = t
        .create_rule(json!({
            "name": "pd", "organization": org, "source_type": "pagerduty", "webhook_key": KEY,
        }))
        .await;
    let path = rule["webhook_path"].as_str().unwrap();
    let before = state(&t).await;
    let body = b"{\"event\": {\"event_type\": ".to_vec();
    let signature = github_signature(KEY, &body).replace("sha256=", "v1=");
    let (status, reply) = t
        .deliver(
            path,
            &[
                ("Content-Type", "application/json"),
                ("X-PagerDuty-Signature", &signature),
            ],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["code"], "malformed_json");
    assert_eq!(state(&t).await, before);
    t.shutdown().await;
}

#[tokio::test]
async fn an_unknown_path_is_404_and_other_methods_405() {
    let (t, _, path) = github_rule(&["true"]).await;
    let before = state(&t).await;
    let push = fixture("github/push.json");
    let signature = github_signature(KEY, &push);
    for unknown in [
        "hook-does-not-exist",
        &format!("{path}x"),
        &path.to_uppercase(),
    ] {
        let (status, reply) = t
            .deliver(unknown, &signed_headers(&signature, "lost"), push.clone())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}: {reply}");
        assert_eq!(reply["code"], "not_found");
        assert_eq!(
            reply["detail"],
            "No enabled event rule listens on this webhook path."
        );
    }
    let response = t
        .client
        .get(format!("{}/api/v2/eda_webhooks/{path}/", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(state(&t).await, before);
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 401

/// The `webhook.rejected` event journaled as event log `id`.
/// The journaled rejection at `id` and its content, opened with the organization's data key
/// (the record itself holds the content sealed, never in the clear).
fn journaled_rejection(
    t: &TestServer,
    id: u64,
) -> (
    hookforge::domain::webhook::WebhookRejected,
    hookforge::domain::webhook::WebhookContent,
) {
    use hookforge::codec::EventBody as _;
    use hookforge::domain::Event;
    use hookforge::domain::webhook::WebhookRejected;
    let record = t.app().journal.read_all(id, 1).unwrap().remove(0);
    let Some(Event::WebhookRejected(rejected)) = Event::decode(&record).unwrap() else {
        panic!("position {id} holds {}", record.event_type);
    };
    assert!(rejected.content.clear().is_none(), "the content is sealed");
    let content = t
        .app()
        .data_keys
        .open(
            rejected.organization,
            WebhookRejected::TYPE,
            rejected.content.clone(),
        )
        .unwrap();
    if content.body.0.len() >= 16 {
        assert!(
            !record.data.windows(16).any(|w| w == &content.body.0[..16]),
            "the journal holds no payload bytes in the clear"
        );
    }
    (rejected, content)
}

/// Delivers, expects 401 with `code` and `detail`, then waits for exactly one new
/// `signature_failed` event log (and no other change) and returns it.
async fn refused_and_logged(
    t: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    code: &str,
    reason: &str,
) -> Value {
    let before = state(t).await;
    let (status, reply) = t.deliver(path, headers, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert_eq!(
        reply["detail"],
        format!("Webhook verification failed: {reason}.")
    );
    let after = eventually(
        Duration::from_secs(10),
        "the rejection to be logged",
        || async {
            let now = state(t).await;
            (now.event_logs > before.event_logs).then_some(now)
        },
    )
    .await;
    assert_eq!(
        after,
        State {
            journal_head: before.journal_head + 1,
            event_logs: before.event_logs + 1
        },
        "exactly one event, the rejection"
    );
    let log = t.event_logs("page_size=1").await.remove(0);
    assert_eq!(log["id"], before.journal_head);
    assert_eq!(log["status"], "signature_failed", "{log}");
    assert_eq!(log["error"], reason);
    assert_eq!(log["conditions_matched"], Value::Null);
    assert_eq!(log["event_guid"], Value::Null);
    for credential in ["authorization", "x-gitlab-token", "x-forge-token"] {
        assert!(
            log["headers"].get(credential).is_none(),
            "{}",
            log["headers"]
        );
    }
    log
}

#[tokio::test]
async fn missing_garbled_and_wrong_github_signatures_are_401_and_logged() {
    let (t, rule, path) = github_rule(&["true"]).await;
    let push = fixture("github/push.json");
    let payload: Value = serde_json::from_slice(&push).unwrap();

    let log = refused_and_logged(
        &t,
        &path,
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "push"),
        ],
        push.clone(),
        "missing_signature",
        "missing X-Hub-Signature-256 header",
    )
    .await;
    assert_eq!(log["payload"], payload, "the payload is kept for forensics");
    assert_eq!(log["event_rule"], rule);
    assert_eq!(log["headers"]["x-github-event"], "push");

    for (garbled, reason) in [
        (
            "sha256=zz".to_owned(),
            "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)",
        ),
        (
            format!("md5={}", "0".repeat(64)),
            "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)",
        ),
        (
            github_signature(KEY, &push)[..70].to_owned(),
            "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)",
        ),
    ] {
        let log = refused_and_logged(
            &t,
            &path,
            &[
                ("Content-Type", "application/json"),
                ("X-Hub-Signature-256", &garbled),
            ],
            push.clone(),
            "malformed_signature",
            reason,
        )
        .await;
        assert_eq!(log["headers"]["x-hub-signature-256"], garbled.as_str());
    }

    // Well-formed, but over other bytes (one byte of the payload changed after signing).
    let signature = github_signature(KEY, &push);
    let mut tampered = push.clone();
    let at = tampered.windows(7).position(|w| w == b"\"size\":").unwrap();
    tampered[at + 9] = b'9';
    refused_and_logged(
        &t,
        &path,
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &signature),
        ],
        tampered,
        "signature_mismatch",
        "signature does not match (X-Hub-Signature-256)",
    )
    .await;
    // The right bytes with another key.
    refused_and_logged(
        &t,
        &path,
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &github_signature("a-guess", &push)),
        ],
        push,
        "signature_mismatch",
        "signature does not match (X-Hub-Signature-256)",
    )
    .await;
    assert!(t.event_logs("status=received").await.is_empty());
    assert!(t.event_logs("status=matched").await.is_empty());
    t.shutdown().await;
}

#[tokio::test]
async fn credentials_of_every_keyed_source_are_checked_and_never_stored() {
    let t = TestServer::start().await;
    let org = t.create_org("sources").await;
    let body = br#"{"event_type":"x","status":"firing","groupKey":"g","alerts":[]}"#.to_vec();
    // (source type, credential headers sent, expected code, expected reason)
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );
    let cases: &[Case] = &[
        (
            "webhook_gitlab",
            &[("X-Gitlab-Token", "glwt-wrong-token")],
            "signature_mismatch",
            "token does not match (X-Gitlab-Token)",
        ),
        (
            "webhook_gitlab",
            &[],
            "missing_signature",
            "missing X-Gitlab-Token header",
        ),
        (
            "webhook_gitea",
            &[("X-Gitea-Signature", "sha256=abc")],
            "malformed_signature",
            "malformed X-Gitea-Signature header (expected <64 hex digits>)",
        ),
        (
            "pagerduty",
            &[("X-PagerDuty-Signature", "v0=abc")],
            "malformed_signature",
            "malformed X-PagerDuty-Signature header (expected v1=<64 hex digits>[,v1=<64 hex digits>...])",
        ),
        (
            "alertmanager",
            &[("Authorization", "Basic dXNlcjpwYXNz")],
            "malformed_signature",
            "malformed Authorization header (expected Bearer <key>)",
        ),
        (
            "alertmanager",
            &[("Authorization", "Bearer not-the-key")],
            "signature_mismatch",
            "token does not match (Authorization)",
        ),
        (
            "datadog",
            &[],
            "missing_signature",
            "missing credentials: expected X-Forge-Signature, X-Forge-Token or Authorization: Bearer header",
        ),
        (
            "datadog",
            &[("X-Forge-Token", "dd-not-the-key")],
            "signature_mismatch",
            "token does not match (X-Forge-Token)",
        ),
        (
            "webhook_generic",
            &[("X-Forge-Signature", "sha256=not-hex")],
            "malformed_signature",
            "malformed X-Forge-Signature header (expected sha256=<64 hex digits>)",
        ),
    ];
    for (i, (source, credentials, code, reason)) in cases.iter().enumerate() {
        let rule = t
            .create_rule(json!({
                "name": format!("r{i}"), "organization": org, "source_type": source,
                "webhook_key": KEY,
            }))
            .await;
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(credentials);
        let log = refused_and_logged(
            &t,
            rule["webhook_path"].as_str().unwrap(),
            &headers,
            body.clone(),
            code,
            reason,
        )
        .await;
        assert_eq!(log["source_type"], *source);
        let (_, content) = journaled_rejection(&t, log["id"].as_u64().unwrap());
        for (name, value) in &content.headers {
            assert!(
                !["authorization", "x-gitlab-token", "x-forge-token"].contains(&name.as_str()),
                "{source}: {name} journaled"
            );
            assert!(
                !value.contains("not-the-key") && !value.contains("glwt-wrong"),
                "{value}"
            );
        }
    }
    t.shutdown().await;
}

#[tokio::test]
async fn a_refused_payload_is_kept_but_capped() {
    let (t, _, path) = github_rule(&["true"]).await;
    let cap = t.app().config.ingress.failed_payload_bytes;
    assert_eq!(cap, 64 * 1024);
    let body = json_of_len(cap * 3);
    let log = refused_and_logged(
        &t,
        &path,
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &github_signature("a-guess", &body)),
        ],
        body.clone(),
        "signature_mismatch",
        "signature does not match (X-Hub-Signature-256)",
    )
    .await;
    // The first `cap` bytes: no longer JSON, so shown as text.
    let kept = log["payload"]
        .as_str()
        .expect("truncated payload shown as text");
    assert_eq!(kept.len(), cap);
    assert_eq!(kept.as_bytes(), &body[..cap]);
    let (rejected, content) = journaled_rejection(&t, log["id"].as_u64().unwrap());
    assert!(rejected.truncated);
    assert_eq!(content.body.0, &body[..cap]);

    // Under the cap, the whole payload is kept and shown as JSON.
    let small = fixture("github/push.json");
    let log = refused_and_logged(
        &t,
        &path,
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &github_signature("a-guess", &small)),
        ],
        small.clone(),
        "signature_mismatch",
        "signature does not match (X-Hub-Signature-256)",
    )
    .await;
    assert_eq!(
        log["payload"]["repository"]["full_name"],
        "Codertocat/Hello-World"
    );
    let (rejected, content) = journaled_rejection(&t, log["id"].as_u64().unwrap());
    assert!(!rejected.truncated);
    assert_eq!(content.body.0, small);
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Replay protection

/// The Standard Webhooks libraries' test vector: correctly signed, but from 2021.
const SW_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TIMESTAMP: i64 = 1614265330;
const SW_PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn standard_signature(id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let key = STANDARD
        .decode(SW_KEY.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn replayed_standard_webhooks_timestamps_are_refused() {
    assert_eq!(
        standard_signature(SW_ID, SW_TIMESTAMP, SW_PAYLOAD),
        SW_SIGNATURE
    );
    let t = TestServer::start().await;
    let org = t.create_org("replay").await;
    let rule = t
        .create_rule(json!({
            "name": "generic", "organization": org, "source_type": "webhook_generic",
            "webhook_key": SW_KEY,
        }))
        .await;
    let path = rule["webhook_path"].as_str().unwrap();
    let server = &t;
    let deliver = |id: String, timestamp: i64, signature: String| {
        let timestamp = timestamp.to_string();
        async move {
            server
                .deliver(
                    path,
                    &[
                        ("Content-Type", "application/json"),
                        ("webhook-id", &id),
                        ("webhook-timestamp", &timestamp),
                        ("webhook-signature", &signature),
                    ],
                    SW_PAYLOAD.to_vec(),
                )
                .await
        }
    };

    // The published vector, replayed years later.
    let before = state(&t).await;
    let (status, reply) = deliver(SW_ID.into(), SW_TIMESTAMP, SW_SIGNATURE.into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    assert_eq!(reply["code"], "timestamp_out_of_tolerance");
    let detail = reply["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Webhook verification failed: webhook-timestamp is ")
            && detail.ends_with(" s from server time (tolerance 300 s)."),
        "{detail}"
    );
    let skew: i64 = detail.split_whitespace().nth(5).unwrap().parse().unwrap();
    let expected = chrono::Utc::now().timestamp() - SW_TIMESTAMP;
    assert!((expected - skew).abs() <= 2, "skew {skew} vs {expected}");
    eventually(
        Duration::from_secs(10),
        "the replay to be logged",
        || async { (state(&t).await.event_logs == before.event_logs + 1).then_some(()) },
    )
    .await;

    // Just outside the 5-minute window, either way, freshly signed: refused.
    let now = chrono::Utc::now().timestamp();
    for timestamp in [now - 310, now + 310] {
        let id = format!("msg_{timestamp}");
        let signature = standard_signature(&id, timestamp, SW_PAYLOAD);
        let (status, reply) = deliver(id, timestamp, signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{timestamp}: {reply}");
        assert_eq!(reply["code"], "timestamp_out_of_tolerance");
    }
    // Inside it: accepted; a replay of that accepted message (same webhook-id) is a duplicate.
    let timestamp = now - 290;
    let signature = standard_signature("msg_fresh", timestamp, SW_PAYLOAD);
    let (status, reply) = deliver("msg_fresh".into(), timestamp, signature.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let original = reply["event_log_id"].clone();
    let (status, reply) = deliver("msg_fresh".into(), timestamp, signature).await;
    assert_eq!(
        (status, reply),
        (
            StatusCode::OK,
            json!({"event_log_id": original, "status": "duplicate"})
        )
    );
    // A signature moved onto another timestamp does not verify.
    let signature = standard_signature("msg_moved", now - 10, SW_PAYLOAD);
    let (status, reply) = deliver("msg_moved".into(), now - 5, signature).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_mismatch"))
    );
    let failed = eventually(Duration::from_secs(10), "four rejections", || async {
        let logs = t.event_logs("status=signature_failed").await;
        (logs.len() == 4).then_some(logs)
    })
    .await;
    assert!(
        failed
            .iter()
            .all(|log| log["payload"] == json!({"test": 2432232314_u64}))
    );
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// CEL errors

#[tokio::test]
async fn cel_errors_at_create_time_name_the_condition() {
    let t = TestServer::start().await;
    let org = t.create_org("cel").await;
    let server = &t;
    let create = |conditions: Value, extra: Value| {
        let mut body = json!({
            "name": "cel", "organization": org, "source_type": "webhook_github",
            "conditions": conditions,
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        async move { server.post("/api/v2/event_rules/", ADMIN, body).await }
    };
    let cases = [
        (
            json!([{"expression": "true"}, {"expression": "event.action =="}]),
            "conditions[1]: Syntax error",
        ),
        (
            json!([{"expression": "payload.action == \"opened\""}]),
            "conditions[0]: undeclared reference to 'payload'",
        ),
        (
            json!([{"expression": "true"}, {"expression": "true"}, {"expression": "headers[\"X-GitHub-Event\"] == \"push\""}]),
            "conditions[2]: header names are lower-case",
        ),
        (
            json!([{"jinja2_expression": "event.zen.matchez(\"x\")"}]),
            "conditions[0]: undeclared function 'matchez'",
        ),
    ];
    for (conditions, expected) in cases {
        let (status, reply) = create(conditions.clone(), json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{conditions}: {reply}");
        assert_eq!(reply["code"], "invalid");
        let message = reply["fields"]["conditions"][0].as_str().unwrap();
        assert!(message.starts_with(expected), "{conditions}: {message}");
    }
    let (status, reply) = create(json!([]), json!({"throttle_key": "event."})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["fields"]["throttle_key"][0]
            .as_str()
            .unwrap()
            .starts_with("throttle_key: Syntax error"),
        "{reply}"
    );
    let (_, rules) = t.get("/api/v2/event_rules/", ADMIN).await;
    assert_eq!(rules["count"], 0, "no rule was created");

    // Updating a rule to a bad condition is refused the same way and changes nothing.
    let (status, rule) = create(json!([{"expression": "true"}]), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    let url = format!("/api/v2/event_rules/{}/", rule["id"]);
    let (status, reply) = t
        .patch(&url, ADMIN, json!({"conditions": [{"expression": "1 +"}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["fields"]["conditions"][0]
            .as_str()
            .unwrap()
            .starts_with("conditions[0]")
    );
    let (_, unchanged) = t.get(&url, ADMIN).await;
    assert_eq!(
        unchanged["conditions"],
        json!([{"expression": "true", "description": ""}])
    );
    assert_eq!(unchanged["modified"], rule["modified"]);
    t.shutdown().await;
}

#[tokio::test]
async fn a_condition_that_fails_at_run_time_is_an_error_and_the_rule_keeps_working() {
    // A pull_request rule that also receives pushes: a push has no `action`.
    let (t, rule, path) = github_rule(&[
        r#"event.action == "opened""#,
        r#"event.repository.full_name == "Codertocat/Hello-World""#,
    ])
    .await;
    let push = fixture("github/push.json");
    let signature = github_signature(KEY, &push);
    let (status, reply) = t
        .deliver(&path, &signed_headers(&signature, "push-1"), push)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let log = t
        .decided_event_log(reply["event_log_id"].as_u64().unwrap())
        .await;
    assert_eq!(log["status"], "error", "{log}");
    assert_eq!(log["conditions_matched"], false);
    let results = log["condition_results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["expression"], r#"event.action == "opened""#);
    assert_eq!(results[0]["result"], Value::Null);
    let error = results[0]["error"].as_str().expect("a per-condition error");
    assert!(error.contains("action"), "names the missing field: {error}");
    assert_eq!(
        results[1]["result"], true,
        "the other condition still ran: {log}"
    );
    assert_eq!(results[1]["error"], Value::Null);

    // The next event is decided normally.
    let pull = fixture("github/pull_request_opened.json");
    let signature = github_signature(KEY, &pull);
    let (status, reply) = t
        .deliver(
            &path,
            &[
                ("Content-Type", "application/json"),
                ("X-GitHub-Event", "pull_request"),
                ("X-GitHub-Delivery", "pr-1"),
                ("X-Hub-Signature-256", &signature),
            ],
            pull,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let log = t
        .decided_event_log(reply["event_log_id"].as_u64().unwrap())
        .await;
    assert_eq!(log["status"], "matched", "{log}");
    let (_, detail) = t.get(&format!("/api/v2/event_rules/{rule}/"), ADMIN).await;
    assert_eq!(detail["enabled"], true);
    assert_eq!(t.event_logs("status=error").await.len(), 1);
    t.shutdown().await;
}
