//! The outbound admin API: validation errors naming their field, tenancy and roles, secrets,
//! publishing with idempotency keys, event types, test pings, delivery history filters.

mod outbound_support;

use std::time::Duration;

use outbound_support::{ADMIN_TOKEN, Harness, Receiver, Reply};
use reqwest::Method;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(20);

fn fields(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["fields"]
        .as_object()
        .map(|f| f.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn invalid_endpoints_are_refused_naming_the_field() {
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let base = json!({"name": "x", "organization": org, "url": "https://example.com/hook", "events": ["*"]});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"url": "http://"}), "url"),
        (
            json!({"url": format!("https://example.com/{}", "a".repeat(2050))}),
            "url",
        ),
        (json!({"url": "ftp://example.com/file"}), "url"),
        (json!({"events": []}), "events"),
        (json!({"events": ["job.*.x"]}), "events[0]"),
        (json!({"filter": "event.payload.elapsed >"}), "filter"),
        (json!({"filter": "payload.elapsed > 600"}), "filter"),
        (json!({"secret": "too-short"}), "secret"),
        (json!({"secret": "x".repeat(257)}), "secret"),
        (
            json!({"custom_headers": {"X-Forge-Signature": "sha256=forged"}}),
            "custom_headers.X-Forge-Signature",
        ),
        (
            json!({"custom_headers": {"Bad Header": "x"}}),
            "custom_headers.Bad Header",
        ),
        (json!({"retry": {"max_attempts": 0}}), "retry.max_attempts"),
        (
            json!({"retry": {"initial_delay_seconds": 10, "max_delay_seconds": 1}}),
            "retry.max_delay_seconds",
        ),
        (json!({"retry": {"multiplier": 0.5}}), "retry.multiplier"),
        (json!({"timeout_seconds": 0}), "timeout_seconds"),
        (json!({"max_in_flight": 0}), "max_in_flight"),
        (json!({"rate_limit_per_second": 0}), "rate_limit_per_second"),
        (json!({"name": ""}), "name"),
        (json!({"organization": 999}), "organization"),
        (json!({"unknown_field": 1}), "unknown_field"),
    ];
    for (patch, field) in cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = h.post("/api/v2/outbound_webhooks/", body).await;
        assert_eq!(status, 400, "{patch} → {answer}");
        assert_eq!(
            fields(&answer),
            vec![field.to_owned()],
            "{patch} → {answer}"
        );
    }
    let (_, missing) = h
        .post(
            "/api/v2/outbound_webhooks/",
            json!({"name": "x", "organization": org}),
        )
        .await;
    assert_eq!(fields(&missing), ["events", "url"]);
    let (status, answer) = h
        .call(
            Method::POST,
            "/api/v2/outbound_webhooks/",
            ADMIN_TOKEN,
            None,
        )
        .await;
    assert_eq!(status, 415, "{answer}");
    // The documented defaults.
    let created = h
        .endpoint(org, "https://example.com/hook", json!({"retry": null}))
        .await;
    assert_eq!(
        created["retry"],
        json!({"max_attempts": 8, "initial_delay_seconds": 5.0, "max_delay_seconds": 3600.0, "multiplier": 2.0})
    );
    assert_eq!(
        (
            created["timeout_seconds"].as_u64(),
            created["max_in_flight"].as_u64()
        ),
        (Some(10), Some(4))
    );
    assert_eq!(
        (
            created["ordered"].as_bool(),
            created["enabled"].as_bool(),
            created["ssl_verify"].as_bool()
        ),
        (Some(false), Some(true), Some(true))
    );
    assert_eq!(created["target_host"], "example.com");
    assert_eq!(
        (
            created["delivery_count"].as_u64(),
            created["failure_count"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert!(created["last_delivery_at"].is_null() && created["disabled_reason"].is_null());
    h.server.shutdown().await;
}

#[tokio::test]
async fn patch_keeps_unsent_fields_and_the_secret_and_validates_filters() {
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let created = h
        .endpoint(
            org,
            "https://example.com/hook",
            json!({"secret": "a-secret-of-twenty-chars", "filter": "event.payload.x > 1"}),
        )
        .await;
    let path = format!("/api/v2/outbound_webhooks/{}/", created["id"]);
    let (status, patched) = h
        .patch(&path, json!({"name": "renamed", "events": ["build.*"]}))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["name"].as_str(), patched["events"].clone()),
        (Some("renamed"), json!(["build.*"]))
    );
    assert_eq!(patched["url"], created["url"]);
    assert_eq!(patched["filter"], "event.payload.x > 1");
    assert_eq!(patched["secret_masked"], "a-s***ars");
    assert!(
        patched.get("secret").is_none(),
        "the secret is only shown on create and via secret/"
    );
    let (_, revealed) = h.get(&format!("{path}secret/")).await;
    assert_eq!(revealed["secret"], "a-secret-of-twenty-chars");
    let (status, bad) = h.patch(&path, json!({"filter": "event.x =="})).await;
    assert_eq!((status, fields(&bad)), (400, vec!["filter".to_owned()]));
    let (status, bad) = h.patch(&path, json!({"url": "http://10.0.0.1/x"})).await;
    assert_eq!(
        status, 200,
        "private addresses are allowed when the operator allows them: {bad}"
    );
    let (status, bad) = h.patch(&path, json!({"organization": org + 1})).await;
    assert_eq!(
        (status, fields(&bad)),
        (400, vec!["organization".to_owned()])
    );
    let (_, cleared) = h
        .patch(&path, json!({"filter": null, "rate_limit_per_second": 5}))
        .await;
    assert_eq!(
        (
            cleared["filter"].clone(),
            cleared["rate_limit_per_second"].clone()
        ),
        (Value::Null, json!(5))
    );
    let (_, disabled) = h.patch(&path, json!({"enabled": false})).await;
    assert_eq!(disabled["enabled"], false);
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("disabled through the API")
    );
    let (status, _) = h.call(Method::DELETE, &path, ADMIN_TOKEN, None).await;
    assert_eq!(status, 204);
    let (status, _) = h.get(&path).await;
    assert_eq!(status, 404);
    h.server.shutdown().await;
}

#[tokio::test]
async fn tenants_are_isolated_and_members_only_read() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let (acme, other) = (h.organization("acme").await, h.organization("other").await);
    let (admin, member, outsider) = (
        h.token(acme, "admin").await,
        h.token(acme, "member").await,
        h.token(other, "admin").await,
    );
    let (status, created) = h
        .call(
            Method::POST,
            "/api/v2/outbound_webhooks/",
            &admin,
            Some(json!({"name": "mine", "url": receiver.url("/a"), "events": ["*"]})),
        )
        .await;
    assert_eq!(
        status, 201,
        "the admin's organization is the default: {created}"
    );
    assert_eq!(created["organization"], acme);
    let path = format!("/api/v2/outbound_webhooks/{}/", created["id"]);
    // Members read, never write or see the secret.
    assert_eq!(h.call(Method::GET, &path, &member, None).await.0, 200);
    assert_eq!(
        h.call(Method::PATCH, &path, &member, Some(json!({"name": "x"})))
            .await
            .0,
        403
    );
    assert_eq!(h.call(Method::DELETE, &path, &member, None).await.0, 403);
    assert_eq!(
        h.call(Method::GET, &format!("{path}secret/"), &member, None)
            .await
            .0,
        403
    );
    assert_eq!(
        h.call(
            Method::POST,
            &format!("{path}test/"),
            &member,
            Some(json!({}))
        )
        .await
        .0,
        403
    );
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v2/outbound_webhooks/",
            &member,
            Some(json!({"name": "m", "url": receiver.url("/m"), "events": ["*"]})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v2/events/",
            &member,
            Some(json!({"event_type": "a.b"})),
        )
        .await;
    assert_eq!(status, 403);
    // Another tenant sees nothing: 404, not 403.
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::PATCH, ""),
        (Method::DELETE, ""),
        (Method::GET, "secret/"),
        (Method::GET, "deliveries/"),
    ] {
        let (status, _) = h
            .call(
                method.clone(),
                &format!("{path}{suffix}"),
                &outsider,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 404, "{method} {suffix}");
    }
    let (_, listed) = h
        .call(Method::GET, "/api/v2/outbound_webhooks/", &outsider, None)
        .await;
    assert_eq!(listed["count"], 0);
    let (_, listed) = h
        .call(Method::GET, "/api/v2/outbound_webhooks/", &member, None)
        .await;
    assert_eq!(listed["count"], 1);
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v2/events/",
            &outsider,
            Some(json!({"organization": acme, "event_type": "a.b"})),
        )
        .await;
    assert_eq!(
        (status, fields(&body)),
        (400, vec!["organization".to_owned()])
    );
    // An event published by one tenant never reaches another tenant's endpoint.
    let (status, theirs) = h
        .call(
            Method::POST,
            "/api/v2/outbound_webhooks/",
            &outsider,
            Some(json!({"name": "t", "url": receiver.url("/theirs"), "events": ["*"]})),
        )
        .await;
    assert_eq!(status, 201, "{theirs}");
    let (_, published) = h
        .call(
            Method::POST,
            "/api/v2/events/",
            &admin,
            Some(json!({"event_type": "a.b"})),
        )
        .await;
    assert_eq!(published["deliveries_scheduled"], 1);
    receiver.wait_for("/a", 1, SETTLE).await;
    let delivery = h.settle(created["id"].as_u64().unwrap(), 1, SETTLE).await[0]["id"].clone();
    assert_eq!(
        h.call(
            Method::GET,
            &format!("/api/v2/deliveries/{delivery}/"),
            &outsider,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        h.call(
            Method::GET,
            &format!("/api/v2/deliveries/{delivery}/"),
            &member,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        h.call(
            Method::POST,
            &format!("/api/v2/deliveries/{delivery}/redeliver/"),
            &member,
            None
        )
        .await
        .0,
        403
    );
    assert!(receiver.received_at("/theirs").is_empty());
    h.server.shutdown().await;
}

#[tokio::test]
async fn secrets_are_revealed_rotated_and_otherwise_masked() {
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let created = h.endpoint(org, "https://example.com/hook", json!({})).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let masked = created["secret_masked"].as_str().unwrap();
    assert_eq!(masked, format!("whs***{}", &secret[secret.len() - 3..]));
    let path = format!("/api/v2/outbound_webhooks/{}/", created["id"]);
    let (_, detail) = h.get(&path).await;
    assert!(detail.get("secret").is_none());
    let (_, list) = h.get("/api/v2/outbound_webhooks/").await;
    assert!(!list.to_string().contains(&secret), "never in lists");
    let (status, revealed) = h.get(&format!("{path}secret/")).await;
    assert_eq!(
        (status, revealed["secret"].as_str()),
        (200, Some(secret.as_str()))
    );
    assert!(revealed["previous_secret_expires_at"].is_null());
    let (status, rotated) = h
        .post(
            &format!("{path}secret/"),
            json!({"secret": "my-own-secret-value-123"}),
        )
        .await;
    assert_eq!(
        (status, rotated["secret"].as_str()),
        (200, Some("my-own-secret-value-123"))
    );
    let (_, revealed) = h.get(&format!("{path}secret/")).await;
    assert_eq!(revealed["secret"], "my-own-secret-value-123");
    assert!(revealed["previous_secret_expires_at"].is_string());
    let (status, bad) = h
        .post(&format!("{path}secret/"), json!({"secret": "short"}))
        .await;
    assert_eq!((status, fields(&bad)), (400, vec!["secret".to_owned()]));
    // The journal holds the secret sealed, never in clear.
    let replay = h.server.app.journal.read_all(0, 10_000).unwrap();
    assert!(
        replay
            .iter()
            .all(|e| !e.data.windows(secret.len()).any(|w| w == secret.as_bytes()))
    );
    let (_, audit) = h
        .get("/api/v2/audit_events/?resource_type=outbound_webhook")
        .await;
    assert_eq!(audit["count"], 2, "creation and rotation are audited");
    assert!(!audit.to_string().contains("my-own-secret"));
    h.server.shutdown().await;
}

#[tokio::test]
async fn publishing_is_idempotent_per_key_and_types_are_listed() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let endpoint = h
        .endpoint(
            org,
            &receiver.url("/hook"),
            json!({"events": ["validation.*"]}),
        )
        .await;
    let body = json!({"organization": org, "event_type": "validation.completed", "resource_type": "analysis",
                      "resource_id": "a-1", "payload": {"score": 3}, "idempotency_key": "run-42"});
    let (status, first) = h.post("/api/v2/events/", body.clone()).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["deliveries_scheduled"], 1);
    let response = h
        .client
        .post(h.url("/api/v2/events/"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let again: Value = response.json().await.unwrap();
    assert_eq!(again, first, "the first answer");
    let (_, third) = h.post("/api/v2/events/", json!({"organization": org, "event_type": "validation.completed", "idempotency_key": "run-43"})).await;
    assert_ne!(third["id"], first["id"]);
    h.settle(endpoint["id"].as_u64().unwrap(), 2, SETTLE).await;
    assert_eq!(
        receiver.received_at("/hook").len(),
        2,
        "the repeat was not delivered again"
    );
    for (bad, field) in [
        (
            json!({"organization": org, "event_type": "job.failed"}),
            "event_type",
        ),
        (json!({"organization": org}), "event_type"),
        (
            json!({"organization": org, "event_type": "a.b", "idempotency_key": ""}),
            "idempotency_key",
        ),
        (
            json!({"organization": org, "event_type": "a.b", "extra": 1}),
            "extra",
        ),
    ] {
        let (status, answer) = h.post("/api/v2/events/", bad.clone()).await;
        assert_eq!(
            (status, fields(&answer)),
            (400, vec![field.to_owned()]),
            "{bad}"
        );
    }
    let (status, types) = h.get("/api/v2/event_types/?page_size=100").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = types["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "endpoint.disabled",
            "delivery.dead_lettered",
            "ping",
            "job.started",
            "job.succeeded",
            "job.failed",
            "job.canceled",
            "job.duration_exceeded",
            "workflow.started",
            "workflow.node_completed",
            "workflow.succeeded",
            "workflow.failed",
            "workflow.canceled",
            "workflow.duration_exceeded",
            "validation.completed"
        ]
    );
    let builtin = &types["results"][0];
    assert!(
        builtin["builtin"].as_bool().unwrap()
            && builtin["description"].is_string()
            && builtin["example_payload"].is_object()
    );
    let custom = &types["results"][14];
    assert_eq!(
        (
            custom["builtin"].as_bool(),
            custom["count"].as_u64(),
            custom["organization"].as_u64()
        ),
        (Some(false), Some(2), Some(org))
    );
    let other = h.organization("other").await;
    let outsider = h.token(other, "admin").await;
    let (_, theirs) = h
        .call(Method::GET, "/api/v2/event_types/", &outsider, None)
        .await;
    assert_eq!(
        theirs["count"], 14,
        "only the built-in types: custom types of other organizations are not shown"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn test_pings_are_synchronous_signed_and_recorded_without_retries() {
    let receiver = Receiver::start(|path, _| match path {
        "/ok" => Reply::status(200).body("pong"),
        _ => Reply::status(410),
    })
    .await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let ok = h
        .endpoint(org, &receiver.url("/ok"), json!({"events": ["build.done"]}))
        .await;
    let secret = ok["secret"].as_str().unwrap().to_owned();
    let (status, result) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/test/", ok["id"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        (
            result["delivered"].as_bool(),
            result["response_status"].as_u64()
        ),
        (Some(true), Some(200))
    );
    assert!(result["duration_ms"].is_u64());
    let got = receiver.received_at("/ok");
    assert_eq!(got.len(), 1, "sent before the answer");
    assert_eq!(got[0].json()["event"], "ping");
    assert_eq!(got[0].json()["payload"]["endpoint_id"], ok["id"]);
    let mac = hookforge::signing::hmac_sha256_hex(secret.as_bytes(), &got[0].body);
    assert_eq!(got[0].header("x-forge-signature"), format!("sha256={mac}"));
    let recorded = h.settle(ok["id"].as_u64().unwrap(), 1, SETTLE).await;
    assert_eq!(
        (recorded[0]["kind"].as_str(), recorded[0]["status"].as_str()),
        (Some("test"), Some("delivered"))
    );
    assert_eq!(recorded[0]["response_snippet"], "pong");

    // A failing ping is recorded as failed, is not retried, and does not disable the endpoint.
    let gone = h.endpoint(org, &receiver.url("/gone"), json!({})).await;
    let (_, result) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/test/", gone["id"]),
            json!({"event_type": "custom.check"}),
        )
        .await;
    assert_eq!(
        (
            result["delivered"].as_bool(),
            result["response_status"].as_u64()
        ),
        (Some(false), Some(410))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received_at("/gone").len(), 1);
    assert_eq!(
        receiver.received_at("/gone")[0].header("x-forge-event"),
        "custom.check"
    );
    let (_, endpoint) = h
        .get(&format!("/api/v2/outbound_webhooks/{}/", gone["id"]))
        .await;
    assert_eq!(
        (
            endpoint["enabled"].as_bool(),
            endpoint["failure_count"].as_u64()
        ),
        (Some(true), Some(0))
    );
    let failed = h.settle(gone["id"].as_u64().unwrap(), 1, SETTLE).await;
    assert_eq!(failed[0]["status"], "failed");
    h.server.shutdown().await;
}

#[tokio::test]
async fn the_delivery_history_filters_by_status_type_and_time() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let endpoint = h.endpoint(org, &receiver.url("/hook"), json!({})).await;
    let id = endpoint["id"].as_u64().unwrap();
    h.publish(org, "build.done", json!({})).await;
    h.publish(org, "build.failed", json!({})).await;
    h.settle(id, 2, SETTLE).await;
    let cutoff = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.publish(org, "build.done", json!({})).await;
    h.settle(id, 3, SETTLE).await;
    let list = |query: &'static str| {
        let h = &h;
        async move {
            h.get(&format!(
                "/api/v2/outbound_webhooks/{id}/deliveries/{query}"
            ))
            .await
        }
    };
    assert_eq!(list("").await.1["count"], 3);
    assert_eq!(list("?event_type=build.done").await.1["count"], 2);
    assert_eq!(list("?status=delivered").await.1["count"], 3);
    assert_eq!(list("?status=dead").await.1["count"], 0);
    let (status, bad) = list("?status=lost").await;
    assert_eq!((status, fields(&bad)), (400, vec!["status".to_owned()]));
    let since = format!(
        "?since={}",
        cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
    .replace('+', "%2B");
    let (status, recent) = h
        .get(&format!(
            "/api/v2/outbound_webhooks/{id}/deliveries/{since}"
        ))
        .await;
    assert_eq!(
        (status, recent["count"].as_u64()),
        (200, Some(1)),
        "{recent}"
    );
    let (_, page) = list("?page_size=2").await;
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert!(page["next"].is_string());
    let newest = &page["results"][0];
    for field in [
        "id",
        "webhook_id",
        "event_type",
        "status",
        "response_status",
        "duration_ms",
        "response_snippet",
        "error_message",
        "attempt_count",
        "next_retry_at",
        "delivered_at",
        "created_at",
    ] {
        assert!(newest.get(field).is_some(), "{field} missing from {newest}");
    }
    let (_, detail) = h
        .get(&format!("/api/v2/deliveries/{}/", newest["id"]))
        .await;
    let attempt = &detail["attempts"][0];
    assert!(
        attempt["time"].is_string()
            && attempt["status"] == 204
            && attempt["duration_ms"].is_u64()
            && attempt["error"].is_null()
    );
    let (_, endpoint) = h.get(&format!("/api/v2/outbound_webhooks/{id}/")).await;
    assert_eq!(endpoint["delivery_count"], 3);
    assert!(endpoint["last_delivery_at"].is_string());
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_deleted_endpoints_history_leaves_the_api_at_once() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let created = h.endpoint(org, &receiver.url("/hook"), json!({})).await;
    let path = format!("/api/v2/outbound_webhooks/{}/", created["id"]);
    let (status, ping) = h
        .call(Method::POST, &format!("{path}test/"), ADMIN_TOKEN, None)
        .await;
    assert_eq!(
        (status, ping["delivered"].clone()),
        (200, json!(true)),
        "{ping}"
    );
    let detail = format!("/api/v2/deliveries/{}/", ping["delivery_id"]);
    assert_eq!(h.get(&detail).await.0, 200);
    let (status, _) = h.call(Method::DELETE, &path, ADMIN_TOKEN, None).await;
    assert_eq!(status, 204);
    assert_eq!(h.get(&detail).await.0, 404);
    assert_eq!(h.get(&format!("{path}deliveries/")).await.0, 404);
    h.server.shutdown().await;
}
