//! The SSRF guard through the API: literal private addresses are refused at creation, a host
//! name resolving to loopback is refused at connect time, and redirects are never followed.

mod outbound_support;

use std::time::Duration;

use outbound_support::{Harness, Receiver, Reply};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_blocked_range_is_refused_at_creation_with_a_clear_message() {
    let h = Harness::start(false).await;
    let org = h.organization("acme").await;
    let blocked = [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://127.9.9.9/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://172.31.255.254/hook", "private"),
        ("http://192.168.1.10/hook", "private"),
        (
            "http://169.254.169.254/latest/meta-data",
            "link-local (cloud metadata)",
        ),
        ("http://169.254.1.1/hook", "link-local"),
        ("http://100.64.0.1/hook", "shared (CGNAT 100.64.0.0/10)"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://255.255.255.255/hook", "broadcast"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::]/hook", "unspecified"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fc00::1]/hook", "private (unique local)"),
        ("http://[ff02::1]/hook", "multicast"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://[64:ff9b::7f00:1]/hook", "loopback"),
        ("http://[2002:a00:1::]/hook", "private"),
    ];
    for (url, reason) in blocked {
        let (status, body) = h
            .post(
                "/api/v2/outbound_webhooks/",
                json!({"name": "x", "organization": org, "url": url, "events": ["*"]}),
            )
            .await;
        assert_eq!(status, 400, "{url} accepted: {body}");
        let message = body["fields"]["url"][0].as_str().unwrap();
        assert!(message.contains(reason), "{url}: {message}");
        assert!(
            message.contains("set outbound.allow_private_networks = true to allow it"),
            "{url}: {message}"
        );
    }
    // Public addresses are fine; so is an update away from them, but not towards a private one.
    let ok = h
        .endpoint(org, "http://93.184.215.14/hook", json!({}))
        .await;
    let (status, body) = h
        .patch(
            &format!("/api/v2/outbound_webhooks/{}/", ok["id"]),
            json!({"url": "http://10.0.0.1/"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_host_name_resolving_to_loopback_is_refused_when_connecting() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(false).await;
    let org = h.organization("acme").await;
    // `localhost` is a name, so creation accepts it; the resolver refuses its addresses.
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let endpoint = h.endpoint(org, &url, json!({})).await;
    let (_, ping) = h
        .post(
            &format!("/api/v2/outbound_webhooks/{}/test/", endpoint["id"]),
            json!({}),
        )
        .await;
    assert_eq!(ping["delivered"], false);
    assert!(
        ping["error"]
            .as_str()
            .unwrap()
            .contains("resolves only to forbidden addresses"),
        "{ping}"
    );
    h.publish(org, "build.done", json!({})).await;
    let deliveries = h.settle(endpoint["id"].as_u64().unwrap(), 2, SETTLE).await;
    let real = deliveries
        .iter()
        .find(|d| d["kind"] == "dispatched")
        .unwrap();
    assert_eq!(real["status"], "failed");
    assert!(
        real["error_message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1: loopback"),
        "{real}"
    );
    let (_, after) = h
        .get(&format!("/api/v2/outbound_webhooks/{}/", endpoint["id"]))
        .await;
    assert_eq!(
        after["enabled"], false,
        "an endpoint the guard refuses is disabled: every attempt would fail"
    );
    assert!(after["disabled_reason"].as_str().unwrap().contains("SSRF"));
    assert!(
        receiver.received().is_empty(),
        "nothing reached the loopback receiver"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn redirects_to_private_addresses_are_never_followed() {
    // The guard is lifted here only so that the loopback receiver is reachable at all: even
    // then a redirect is not followed, so it can never lead anywhere the endpoint's URL does not.
    let target = Receiver::start(|_, _| Reply::status(200)).await;
    let metadata_like = target.url("/latest/meta-data");
    let receiver = Receiver::start(move |path, _| match path {
        "/to-metadata" => {
            Reply::status(302).with_header("Location", "http://169.254.169.254/latest/meta-data")
        }
        _ => Reply::status(307).with_header("Location", &metadata_like),
    })
    .await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let retry = json!({"events": ["build.*"], "retry": {"max_attempts": 2, "initial_delay_seconds": 0.1, "max_delay_seconds": 0.1}});
    let first = h
        .endpoint(org, &receiver.url("/to-metadata"), retry.clone())
        .await;
    let second = h.endpoint(org, &receiver.url("/to-loopback"), retry).await;
    h.publish(org, "build.done", json!({})).await;
    for endpoint in [&first, &second] {
        let settled = h.settle(endpoint["id"].as_u64().unwrap(), 1, SETTLE).await;
        assert_eq!(settled[0]["status"], "dead");
        let error = settled[0]["error_message"].as_str().unwrap();
        assert!(error.contains("redirects are not followed"), "{error}");
    }
    assert_eq!(receiver.received().len(), 4);
    assert!(
        target.received().is_empty(),
        "the redirect target was never contacted"
    );
    h.server.shutdown().await;
}
