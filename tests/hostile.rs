//! Hostile input through the real server: poison records in the journal, expensive expressions,
//! floods of rejected webhooks, replays, slow clients.

mod common;

use std::time::Duration;

use common::{ADMIN, TestServer, eventually, hookforge};
use hookforge::journal::{ExpectedRevision, Journal, JournalOptions, Metadata, NewEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "hostile-test-key-0123456789";

fn sign(body: &[u8]) -> String {
    format!(
        "sha256={}",
        hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
    )
}

async fn generic_rule(t: &TestServer, org: u64, path: &str, extra: Value) -> u64 {
    let mut body = json!({
        "name": path, "organization": org, "source_type": "webhook_generic",
        "webhook_path": path, "webhook_key": KEY,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, rule) = t.post("/api/v2/event_rules/", ADMIN, body).await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    rule["id"].as_u64().unwrap()
}

async fn send(t: &TestServer, path: &str, delivery: &str, body: &Value) -> (StatusCode, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let signature = sign(&bytes);
    t.deliver(
        path,
        &[
            ("content-type", "application/json"),
            ("x-forge-delivery", delivery),
            ("x-forge-signature", signature.as_str()),
        ],
        bytes,
    )
    .await
}

/// Appends raw records to a stopped server's journal, as an older (or broken) version might
/// have written them.
async fn append_raw(data_dir: &std::path::Path, records: Vec<(String, &str, Vec<u8>)>) -> Vec<u64> {
    let journal = Journal::open(&data_dir.join("journal"), JournalOptions::default()).unwrap();
    let mut positions = Vec::new();
    for (stream, event_type, data) in records {
        let event = NewEvent {
            event_type: event_type.to_owned(),
            schema_version: 1,
            metadata: Metadata {
                actor: "webhook".into(),
                correlation_id: "poison".into(),
            },
            data,
        };
        let appended = journal
            .append(stream, ExpectedRevision::Any, vec![event])
            .await
            .unwrap();
        positions.push(appended.first_position);
    }
    journal.close().await;
    positions
}

async fn metric(t: &TestServer, line_prefix: &str) -> f64 {
    let text = t
        .client
        .get(format!("{}/metrics", t.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric line {line_prefix}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_parked_and_the_server_keeps_serving_across_restarts() {
    let t = TestServer::start().await;
    let org = t.create_org("poison").await;
    let rule = generic_rule(&t, org, "poison", json!({})).await;
    let (status, first) = send(&t, "poison", "good-1", &json!({"n": 1})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(
        t.decided_event_log(first["event_log_id"].as_u64().unwrap())
            .await["status"],
        "matched"
    );
    let (status, endpoint) = t
        .post(
            "/api/v2/outbound_webhooks/",
            ADMIN,
            json!({"name": "e", "organization": org, "url": "https://example.com/hook", "events": ["*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let endpoint = endpoint["id"].as_u64().unwrap();
    let dir = t.dir.clone();
    let temp = t.shutdown().await;

    // Records no build can decode, in a rule's stream, an endpoint's and a job's.
    let garbage = vec![0xff, 0xfe, 0x00, 0x13, 0x37];
    let positions = append_raw(
        &dir,
        vec![
            (format!("rule-{rule}"), "webhook.received", garbage.clone()),
            (
                format!("endpoint-{endpoint}"),
                "delivery.scheduled",
                garbage.clone(),
            ),
            ("job-99".into(), "job.launched", garbage),
        ],
    )
    .await;

    // Twice: a parked record never stops a start, nor is it processed again by itself.
    let mut config = common::config(&dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    for round in 0..2 {
        let t = TestServer::start_with(config.clone()).await;
        let log = t.decided_event_log(positions[0]).await;
        assert_eq!(log["status"], "parked", "round {round}: {log}");
        assert!(
            log["error"].as_str().unwrap().contains("does not decode"),
            "{log}"
        );
        assert_eq!(log["event_rule"], rule);
        assert_eq!(
            log["organization"], org,
            "the parked log stays in its tenant"
        );
        // The rule goes on deciding.
        let (status, next) = send(
            &t,
            "poison",
            &format!("good-after-{round}"),
            &json!({"after": round}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{next}");
        let next = t
            .decided_event_log(next["event_log_id"].as_u64().unwrap())
            .await;
        assert_eq!(next["status"], "matched", "{next}");
        // Parked in the first start (counted then), still parked in the second.
        let counted = if round == 0 { 1.0 } else { 0.0 };
        for kind in ["rule", "endpoint", "runner"] {
            let line = format!("hookforge_parked_total{{consumer=\"{kind}\"}}");
            assert_eq!(metric(&t, &line).await, counted, "{line} in round {round}");
        }
        assert_eq!(metric(&t, "hookforge_parked_records").await, 3.0);
        let (status, _) = t.get("/api/v2/jobs/", ADMIN).await;
        assert_eq!(status, StatusCode::OK);
        t.shutdown().await;
    }

    let data_dir = dir.to_str().unwrap();
    let (code, listed, stderr) = hookforge(&["parked", "list", "--data-dir", data_dir]);
    assert_eq!(code, 0, "{stderr}");
    for (consumer, position) in [
        (format!("rule:{rule}"), positions[0]),
        (format!("endpoint:{endpoint}"), positions[1]),
        ("runner".to_owned(), positions[2]),
    ] {
        assert!(
            listed.contains(&format!("{consumer}\t{position}\t")),
            "{consumer} at {position} not in:\n{listed}"
        );
    }
    let (code, retried, stderr) = hookforge(&[
        "parked",
        "retry",
        "--data-dir",
        data_dir,
        "--consumer",
        "rule:",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        retried.contains(&format!("retrying\trule:{rule}\t{}", positions[0])),
        "{retried}"
    );
    let (_, listed, _) = hookforge(&[
        "parked",
        "list",
        "--data-dir",
        data_dir,
        "--consumer",
        "rule:",
    ]);
    assert!(listed.is_empty(), "{listed}");

    // Retried with a build that still cannot decode it: processed again, and parked again.
    let t = TestServer::start_with(config).await;
    let replayed = eventually(
        Duration::from_secs(10),
        "the retried webhook to be parked again",
        || async {
            let (_, page) = t
                .get(
                    &format!("/api/v2/event_logs/?event_rule={rule}&status=parked"),
                    ADMIN,
                )
                .await;
            (page["count"] == 1).then_some(page)
        },
    )
    .await;
    assert_eq!(replayed["results"][0]["id"], positions[0]);
    t.shutdown().await;
    drop(temp);
}

fn journal_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            journal_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_rejected_webhooks_cannot_grow_the_journal() {
    let t = TestServer::start().await;
    let org = t.create_org("flood").await;
    generic_rule(&t, org, "flood", json!({})).await;
    let before = journal_bytes(&t.dir.join("journal"));
    let body = vec![b'x'; 1024 * 1024 - 16];
    let big = "h".repeat(60 * 1024);
    for i in 0..200 {
        let response = t
            .client
            .post(format!("{}/api/v2/eda_webhooks/flood/", t.base))
            .header("content-type", "application/json")
            .header("x-forge-signature", format!("sha256={}", "0".repeat(64)))
            .header("x-forge-delivery", format!("flood-{i}"))
            .header("x-junk-1", &big)
            .header("x-junk-2", &big)
            .header("x-junk-3", &big)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "signature_mismatch", "{error}");
    }
    // The logged ones are durable once a later write is.
    let org2 = t.create_org("after-flood").await;
    assert!(org2 > org);
    let grown = journal_bytes(&t.dir.join("journal")) - before;
    assert!(grown < 5 * 1024 * 1024, "the journal grew {grown} bytes");
    let logged = metric(
        &t,
        "hookforge_ingress_rejected_total{logged=\"true\",source_type=\"webhook_generic\"}",
    )
    .await;
    let counted = metric(
        &t,
        "hookforge_ingress_rejected_total{logged=\"false\",source_type=\"webhook_generic\"}",
    )
    .await;
    assert_eq!(logged + counted, 200.0);
    assert!((1.0..=20.0).contains(&logged), "{logged} journaled");
    let logs = t.event_logs("status=signature_failed").await;
    assert_eq!(logs.len() as f64, logged);
    let headers = logs[0]["headers"].as_object().unwrap();
    let stored: usize = headers
        .iter()
        .map(|(k, v)| k.len() + v.as_str().unwrap().len())
        .sum();
    assert!(stored < 9 * 1024, "{stored} bytes of headers stored");
    assert!(
        headers["x-hookforge-truncated"]
            .as_str()
            .unwrap()
            .contains("dropped"),
        "{headers:?}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_webhook_replayed_under_a_new_delivery_id_is_a_duplicate() {
    let t = TestServer::start().await;
    let org = t.create_org("replay").await;
    generic_rule(&t, org, "replay", json!({})).await;
    let body = json!({"event_type": "deploy", "service": "api"});
    let (status, first) = send(&t, "replay", "captured-1", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let original = first["event_log_id"].as_u64().unwrap();
    for delivery in ["replayed-1", "replayed-2", ""] {
        let (status, again) = send(&t, "replay", delivery, &body).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(
            again,
            json!({"event_log_id": original, "status": "duplicate"})
        );
    }
    assert_eq!(t.event_log_count().await, 1);
    // A different body is a different webhook.
    let (status, _) = send(
        &t,
        "replay",
        "captured-2",
        &json!({"event_type": "deploy", "service": "web"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Senders that legitimately repeat bodies opt out per rule.
    generic_rule(&t, org, "repeats", json!({"dedup_by_body": false})).await;
    let (_, rule) = t.get("/api/v2/event_rules/?name=repeats", ADMIN).await;
    assert_eq!(rule["results"][0]["dedup_by_body"], false, "{rule}");
    for delivery in ["r-1", "r-2"] {
        let (status, _) = send(&t, "repeats", delivery, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, _) = send(&t, "repeats", "r-2", &body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the delivery id still de-duplicates"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamped_generic_signatures_from_hookforge_sign_refuse_stale_replays() {
    let t = TestServer::start().await;
    let org = t.create_org("stamped").await;
    generic_rule(&t, org, "stamped", json!({})).await;
    let body = br#"{"event_type": "build.finished", "status": "failed"}"#;
    let sign = |timestamp: i64| {
        let (code, out, err) = common::hookforge_with_stdin(
            &[
                "sign",
                "--key",
                KEY,
                "--scheme",
                "generic-timestamped",
                "--timestamp",
                &timestamp.to_string(),
            ],
            body,
        );
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| {
                let (name, value) = l.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect::<Vec<_>>()
    };
    let deliver = |headers: Vec<(String, String)>| {
        let t = &t;
        async move {
            let mut all: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            all.push(("content-type", "application/json"));
            t.deliver("stamped", &all, body.to_vec()).await
        }
    };
    let now = chrono::Utc::now().timestamp();
    let fresh = sign(now);
    assert_eq!(fresh[0].0, "X-Forge-Timestamp");
    let (status, accepted) = deliver(fresh.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (status, replayed) = deliver(fresh).await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["status"], "duplicate");
    let (status, stale) = deliver(sign(now - 3600)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{stale}");
    assert_eq!(stale["code"], "timestamp_out_of_tolerance", "{stale}");
    t.shutdown().await;
}

/// Reads until the peer closes (or `limit` passes); returns what arrived and whether it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn json_body(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not a JSON body: {response:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let temp = tempfile::tempdir().unwrap();
    let mut config = common::config(temp.path());
    config.http.header_read_timeout_seconds = 2;
    config.http.body_read_timeout_seconds = 2;
    let mut t = TestServer::start_with(config).await;
    t.keep(temp);
    let org = t.create_org("slow").await;
    generic_rule(&t, org, "slow", json!({})).await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    let started = tokio::time::Instant::now();

    // 200 sockets: idle, dribbling headers, and dribbling a body.
    let mut sockets = Vec::new();
    for i in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => stream.write_all(b"POST /api/v2/eda_webhooks/slow/ HT").await.unwrap(),
            _ => stream
                .write_all(b"POST /api/v2/eda_webhooks/slow/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":")
                .await
                .unwrap(),
        }
        sockets.push((i % 3, stream));
    }
    let dribble = tokio::spawn(async move {
        for _ in 0..30 {
            for (kind, stream) in sockets.iter_mut() {
                if *kind != 0 {
                    let _ = stream.write_all(b" ").await;
                }
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        sockets
    });

    // Meanwhile, ordinary requests are served at once.
    for i in 0..20 {
        let (status, reply) = send(&t, "slow", &format!("normal-{i}"), &json!({"i": i})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served while 200 sockets were held"
    );

    let sockets = dribble.await.unwrap();
    for (kind, mut stream) in sockets {
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
        assert!(
            closed,
            "a kind {kind} socket was still open after {:?}",
            started.elapsed()
        );
        if kind == 2 {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert_eq!(json_body(&answer)["code"], "request_timeout");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // An idle keep-alive connection is closed after the same deadline.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "idle keep-alive connection not closed");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_and_oversized_heads_get_the_json_error_shape() {
    use tokio::io::AsyncWriteExt;
    let t = TestServer::start().await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    let many_headers: String = (0..200).map(|i| format!("X-H-{i}: v\r\n")).collect();
    let huge = "x".repeat(300 * 1024);
    let cases = [
        ("GARBAGE\r\n\r\n".to_owned(), "400", "malformed_request"),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n"),
            "431",
            "headers_too_large",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
            "431",
            "headers_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer:.200}"
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{answer}"
        );
        let body = json_body(&answer);
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["detail"].is_string() && body["fields"].is_object(),
            "{body}"
        );
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_with_503() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = common::config(temp.path());
    config.http.max_connections = 20;
    let mut t = TestServer::start_with(config).await;
    t.keep(temp);
    let addr = t.base.trim_start_matches("http://").to_owned();
    // The test client's own pooled connection may hold a slot: leave room for it.
    let mut held = Vec::new();
    for _ in 0..19 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = 0;
    for _ in 0..3 {
        let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(3)).await;
        if answer.starts_with("HTTP/1.1 503") {
            assert!(closed);
            assert_eq!(json_body(&answer)["code"], "too_many_connections");
            refused += 1;
        }
    }
    assert!(refused >= 2, "{refused} of 3 refused");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = t.get("/api/v2/me/", ADMIN).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "served again once connections closed"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_of_the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    // Started with a permissive umask, as many shells have.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut t = TestServer::start_with(common::config(&dir)).await;
    t.keep(temp);
    let org = t.create_org("private").await;
    generic_rule(&t, org, "private", json!({})).await;
    let (status, _) = send(&t, "private", "p-1", &json!({"secret": "payload"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let _kept = t.shutdown().await;
    let mut stack = vec![dir.clone()];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files += 1;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
    }
    assert!(
        files >= 3,
        "journal, index and keys were checked ({files} files)"
    );
}
