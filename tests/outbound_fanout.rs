//! Fan-out: one event to 1,000 endpoints; and 10,000 endpoints subscribed to other event types
//! adding no work per event (measured as dispatcher index lookups and candidates examined).

mod outbound_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hookforge::domain::Event;
use hookforge::domain::endpoint::{self, EndpointCreated, EndpointSettings};
use hookforge::journal::{ExpectedRevision, Metadata};
use outbound_support::{Harness, Receiver, Reply};
use serde_json::json;

#[tokio::test]
async fn one_event_fans_out_to_1000_endpoints() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start(true).await;
    let org = h.organization("acme").await;
    let started = Instant::now();
    let mut secrets = Vec::new();
    for i in 0..1000 {
        let created = h
            .endpoint(
                org,
                &receiver.url(&format!("/e/{i}")),
                json!({"events": ["release.*"]}),
            )
            .await;
        secrets.push(created["secret"].as_str().unwrap().to_owned());
    }
    eprintln!(
        "created 1,000 endpoints through the API in {:?}",
        started.elapsed()
    );
    let published_at = Instant::now();
    let published = h
        .publish(org, "release.published", json!({"version": "1.2.3"}))
        .await;
    assert_eq!(published["deliveries_scheduled"], 1000);
    outbound_support::wait_until(Duration::from_secs(60), || {
        receiver.received().len() >= 1000
    })
    .await;
    eprintln!(
        "1,000 deliveries of one event received {:?} after the publish",
        published_at.elapsed()
    );
    let got = receiver.received();
    assert_eq!(got.len(), 1000);
    let paths: HashSet<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.len(), 1000, "each endpoint got it exactly once");
    let ids: HashSet<&str> = got.iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids.len(), 1000, "a distinct delivery per endpoint");
    for r in &got {
        let i: usize = r.path.trim_start_matches("/e/").parse().unwrap();
        let mac = hookforge::signing::hmac_sha256_hex(secrets[i].as_bytes(), &r.body);
        assert_eq!(
            r.header("x-forge-signature"),
            format!("sha256={mac}"),
            "signed with endpoint {i}'s own secret"
        );
        assert_eq!(r.json()["payload"]["version"], "1.2.3");
    }
    h.server.shutdown().await;
}

fn settings(events: Vec<String>) -> EndpointSettings {
    EndpointSettings {
        name: "bulk".into(),
        url: "https://example.com/hook".into(),
        events,
        ..EndpointSettings::default()
    }
}

/// Dispatcher work (index lookups, candidates) per event over `events` publications.
async fn work_per_event(h: &Harness, org: u64, events: usize) -> (f64, f64) {
    let (lookups, candidates, dispatched) = (
        h.metric("hookforge_outbound_index_lookups_total").await,
        h.metric("hookforge_outbound_index_candidates_total").await,
        h.metric("hookforge_outbound_dispatched_events_total").await,
    );
    for n in 0..events {
        h.publish(org, "build.done", json!({"n": n})).await;
    }
    let dispatched = h.metric("hookforge_outbound_dispatched_events_total").await - dispatched;
    assert_eq!(dispatched, events as f64);
    (
        (h.metric("hookforge_outbound_index_lookups_total").await - lookups) / dispatched,
        (h.metric("hookforge_outbound_index_candidates_total").await - candidates) / dispatched,
    )
}

#[tokio::test]
async fn ten_thousand_endpoints_on_other_event_types_cost_nothing_per_event() {
    let receiver = Receiver::start(|_, _| Reply::status(204)).await;
    let h = Harness::start_with(true, |c| c.journal.sync = false).await;
    let org = h.organization("acme").await;
    let other_org = h.organization("other").await;
    let subscriber = h
        .endpoint(
            org,
            &receiver.url("/hook"),
            json!({"events": ["build.done"]}),
        )
        .await;
    let before = work_per_event(&h, org, 20).await;

    // 10,000 endpoints: most subscribed to other types of the same organization, some to
    // everything in another organization. Appended directly (pipelined) to keep the test short.
    let app = h.server.app.clone();
    let first_id = app.views.outbound.read().max_endpoint_id + 1;
    let started = Instant::now();
    let mut tickets = Vec::new();
    for n in 0..10_000u64 {
        let id = first_id + n;
        let (organization, events) = if n % 10 == 0 {
            (other_org, vec!["*".to_owned()])
        } else {
            (
                org,
                vec![
                    format!("other.type{}", n % 500),
                    format!("deploy.{}.*", n % 7),
                ],
            )
        };
        let event = Event::from(EndpointCreated {
            id,
            organization,
            settings: settings(events),
            enabled: true,
            secret: app.master_key.seal(
                &endpoint::secret_field(id),
                format!("secret-of-endpoint-{id}").as_bytes(),
            ),
        });
        let encoded = vec![event.encode(Metadata::system("bulk"))];
        tickets.push(
            app.journal
                .append(endpoint::stream(id), ExpectedRevision::NoStream, encoded),
        );
    }
    let mut last = 0;
    for ticket in tickets {
        last = ticket.await.unwrap().last_position;
    }
    app.views.wait_for(last).await;
    outbound_support::wait_until(Duration::from_secs(120), || {
        app.outbound.endpoints.running().len() >= 10_001
    })
    .await;
    eprintln!(
        "10,000 endpoints committed and their actors started in {:?}",
        started.elapsed()
    );

    let after = work_per_event(&h, org, 20).await;
    eprintln!(
        "dispatcher work per event: before {before:?}, after 10,000 other endpoints {after:?} (lookups, candidates)"
    );
    assert_eq!(
        before,
        (4.0, 1.0),
        "build.done: exact + one prefix + org + `*` lookups, one candidate"
    );
    assert_eq!(
        after, before,
        "unrelated endpoints add no lookups and no candidates"
    );
    let settled = h
        .settle(
            subscriber["id"].as_u64().unwrap(),
            40,
            Duration::from_secs(60),
        )
        .await;
    assert!(settled.iter().all(|d| d["status"] == "delivered"));
    assert_eq!(receiver.received().len(), 40);
    h.server.shutdown().await;
}
