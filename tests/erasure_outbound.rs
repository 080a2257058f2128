//! Erasure of published events' payloads, through the real server: payloads are sealed at
//! rest, and a delivery still retrying when its organization is erased stops sending.

mod common;
mod outbound_support;

use std::time::Duration;

use outbound_support::{Harness, Receiver, Reply};
use serde_json::json;

#[tokio::test]
async fn erased_event_payloads_are_never_sent_again() {
    let h = Harness::start(true).await;
    let receiver = Receiver::start(|path, _| match path {
        "/ok" => Reply::status(204),
        _ => Reply::status(503),
    })
    .await;
    let acme = h.organization("acme").await;
    let ok = h
        .endpoint(
            acme,
            &receiver.url("/ok"),
            json!({"events": ["build.done"]}),
        )
        .await;
    let failing = h
        .endpoint(
            acme,
            &receiver.url("/failing"),
            json!({"events": ["build.failed"],
                   "retry": {"max_attempts": 3, "initial_delay_seconds": 1, "max_delay_seconds": 1}}),
        )
        .await;

    h.publish(acme, "build.done", json!({"note": "event-marker-one"}))
        .await;
    let sent = receiver.wait_for("/ok", 1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].json()["payload"]["note"], "event-marker-one");
    h.publish(acme, "build.failed", json!({"note": "event-marker-two"}))
        .await;
    let pending = h.settle_pending(failing["id"].as_u64().unwrap()).await;
    for marker in ["event-marker-one", "event-marker-two"] {
        assert_eq!(
            common::files_containing(h.dir.path(), marker),
            Vec::<std::path::PathBuf>::new(),
            "{marker} is sealed at rest"
        );
    }

    let (status, erased) = h
        .post(
            &format!("/api/v2/organizations/{acme}/erase/"),
            json!({"confirm": "acme"}),
        )
        .await;
    assert_eq!(status, 200, "{erased}");
    let settled = h
        .settle(failing["id"].as_u64().unwrap(), 1, Duration::from_secs(20))
        .await;
    let delivery = &settled[0];
    assert_eq!(delivery["id"], pending["id"]);
    assert_eq!(delivery["status"], "dead", "{delivery}");
    assert_eq!(
        delivery["error_message"],
        "the event's payload was erased before it was delivered"
    );
    assert_eq!(
        receiver.received_at("/failing").len(),
        1,
        "only the attempt before the erasure reached the receiver"
    );
    // The delivered one keeps its record.
    let delivered = h.deliveries(ok["id"].as_u64().unwrap()).await;
    assert_eq!(delivered[0]["status"], "delivered");
}
