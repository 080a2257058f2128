//! Erasure of an organization's payloads (`POST /api/v2/organizations/{id}/erase/`), through the
//! real server: payloads are sealed at rest under the organization's data key, and destroying
//! the key makes every copy read `"erased"`, across restarts and an interrupted erasure.

mod common;

use std::time::Duration;

use common::{ADMIN, TestServer, eventually, files_containing};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "erasure-test-key-91c2";

fn signed_push(marker: &str, delivery: &str) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let body = serde_json::to_vec(&json!({"ref": "refs/heads/main", "note": marker})).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-GitHub-Event", "push".to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        ("X-Hub-Signature-256", signature),
        ("X-Marker", marker.to_owned()),
    ];
    (body, headers)
}

/// An organization with one GitHub rule; returns (org, webhook path).
async fn tenant(t: &TestServer, name: &str) -> (u64, String) {
    let org = t.create_org(name).await;
    let rule = t
        .create_rule(json!({
            "name": format!("{name}-push"), "organization": org,
            "source_type": "webhook_github", "webhook_key": KEY,
        }))
        .await;
    (org, rule["webhook_path"].as_str().unwrap().to_owned())
}

/// Delivers a push whose body and headers carry `marker`; returns its decided event log id.
async fn push(t: &TestServer, path: &str, marker: &str) -> u64 {
    let (body, headers) = signed_push(marker, &delivery_id(marker));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, reply) = t.deliver(path, &headers, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let id = reply["event_log_id"].as_u64().unwrap();
    t.decided_event_log(id).await;
    id
}

/// A delivery id that does not contain the marker (ids are metadata, kept after an erasure).
fn delivery_id(marker: &str) -> String {
    format!("delivery-{}", marker.replace("marker", "id"))
}

async fn event_log(t: &TestServer, id: u64) -> Value {
    let (status, log) = t.get(&format!("/api/v2/event_logs/{id}/"), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    log
}

async fn erase(t: &TestServer, org: u64, token: &str, body: Value) -> (StatusCode, Value) {
    t.post(&format!("/api/v2/organizations/{org}/erase/"), token, body)
        .await
}

#[tokio::test]
async fn erasing_an_organization_makes_its_payloads_unreadable_and_spares_the_others() {
    let t = TestServer::start().await;
    let (acme, acme_path) = tenant(&t, "acme").await;
    let (other, other_path) = tenant(&t, "other").await;
    let first = push(&t, &acme_path, "acme-marker-one").await;
    let kept = push(&t, &other_path, "other-marker-one").await;

    // Sealed at rest: the payload is readable through the API, but in no file on disk.
    let log = event_log(&t, first).await;
    assert_eq!(log["payload"]["note"], "acme-marker-one");
    assert_eq!(log["headers"]["x-marker"], "acme-marker-one");
    assert_eq!(
        files_containing(&t.dir, "acme-marker-one"),
        Vec::<std::path::PathBuf>::new()
    );

    // Refusals: wrong or missing confirmation, non-admins, other tenants, unknown ids.
    let (status, error) = erase(&t, acme, ADMIN, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["fields"]["confirm"].is_array(), "{error}");
    let (status, error) = erase(&t, acme, ADMIN, json!({"confirm": "ACME"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["fields"]["confirm"].is_array(), "{error}");
    let (status, error) = erase(&t, acme, ADMIN, json!({"confirm": "acme", "x": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (_, acme_admin) = t.create_token(acme, "admin").await;
    let (status, error) = erase(&t, acme, &acme_admin, json!({"confirm": "acme"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    let (_, other_admin) = t.create_token(other, "admin").await;
    let (status, error) = erase(&t, acme, &other_admin, json!({"confirm": "acme"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    let (status, _) = erase(&t, 999, ADMIN, json!({"confirm": "acme"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        event_log(&t, first).await["payload"]["note"],
        "acme-marker-one"
    );

    let (status, erased) = erase(&t, acme, ADMIN, json!({"confirm": "acme"})).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["through_generation"], 1);
    assert!(erased["erased_at"].is_string(), "{erased}");
    let log = event_log(&t, first).await;
    assert_eq!(log["payload"], "erased");
    assert_eq!(log["headers"], "erased");
    assert_eq!(
        log["event_guid"],
        delivery_id("acme-marker-one"),
        "metadata stays"
    );
    assert_eq!(
        event_log(&t, kept).await["payload"]["note"],
        "other-marker-one"
    );

    // Twice, with nothing received since: 409.
    let (status, error) = erase(&t, acme, ADMIN, json!({"confirm": "acme"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");

    // The audit trail keeps who erased what.
    let (status, audit) = t
        .get("/api/v2/audit_events/?action=organization.erased", ADMIN)
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    assert_eq!(audit["count"], 1, "{audit}");
    assert_eq!(audit["results"][0]["actor"], "admin");
    assert_eq!(audit["results"][0]["organization"], acme);
    let (_, org) = t
        .get(&format!("/api/v2/organizations/{acme}/"), ADMIN)
        .await;
    assert!(org["erased_at"].is_string(), "{org}");

    // The organization keeps working under a new key; that data can be erased in turn.
    let later = push(&t, &acme_path, "acme-marker-two").await;
    assert_eq!(
        event_log(&t, later).await["payload"]["note"],
        "acme-marker-two"
    );
    let t = t.restart().await;
    assert_eq!(event_log(&t, first).await["payload"], "erased");
    assert_eq!(
        event_log(&t, later).await["payload"]["note"],
        "acme-marker-two"
    );
    let (status, erased) = erase(&t, acme, ADMIN, json!({"confirm": "acme"})).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["through_generation"], 2);
    assert_eq!(event_log(&t, later).await["payload"], "erased");
    assert_eq!(
        event_log(&t, kept).await["payload"]["note"],
        "other-marker-one"
    );

    // The journal still verifies: erasure destroys keys, never records.
    let dir = t.dir.clone();
    let temp = t.shutdown().await;
    let (code, out, err) =
        common::hookforge(&["journal", "verify", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("journal intact"), "{out}");
    drop(temp);
}

#[tokio::test]
async fn a_start_finishes_an_erasure_a_crash_interrupted() {
    let t = TestServer::start().await;
    let (acme, path) = tenant(&t, "acme").await;
    let id = push(&t, &path, "interrupted-marker").await;
    let key_file = t.dir.join("keys").join(format!("org-{acme}.key"));
    let before = std::fs::read(&key_file).unwrap();
    let (status, erased) = erase(&t, acme, ADMIN, json!({"confirm": "acme"})).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    let temp = t.shutdown().await.unwrap();
    // As if the process died after journaling the erasure but before destroying the key.
    std::fs::write(&key_file, &before).unwrap();
    let mut t = TestServer::start_with(common::config(temp.path())).await;
    t.keep(temp);
    let log = eventually(Duration::from_secs(5), "the event log", || async {
        let (status, log) = t.get(&format!("/api/v2/event_logs/{id}/"), ADMIN).await;
        (status == StatusCode::OK).then_some(log)
    })
    .await;
    assert_eq!(log["payload"], "erased");
    assert_ne!(std::fs::read(&key_file).unwrap(), before, "the key is gone");
    t.shutdown().await;
}

/// A command job template of `org` (`concurrency` 1: launches queue behind each other).
async fn command_template(t: &TestServer, org: u64, name: &str, argv: &[&str]) -> u64 {
    let body = json!({"name": name, "organization": org, "kind": "command", "argv": argv, "concurrency": 1});
    let (status, template) = t.post("/api/v2/job_templates/", ADMIN, body).await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    template["id"].as_u64().unwrap()
}

async fn run(t: &TestServer, path: &str, until: &[&str]) -> Value {
    eventually(Duration::from_secs(20), path, || async {
        let (status, run) = t.get(path, ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        until
            .contains(&run["status"].as_str().unwrap_or_default())
            .then_some(run)
    })
    .await
}

#[tokio::test]
async fn erasure_reaches_job_and_workflow_extra_vars() {
    let t = TestServer::start().await;
    let acme = t.create_org("acme").await;
    let quick = command_template(&t, acme, "quick", &["/bin/true"]).await;
    let (status, rule) = t
        .post(
            "/api/v2/event_rules/",
            ADMIN,
            json!({"name": "deploy", "organization": acme, "source_type": "webhook_github", "webhook_key": KEY,
                   "actions": [{"action_type": "launch_job_template", "target_id": quick}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    let id = push(&t, rule["webhook_path"].as_str().unwrap(), "job-marker-one").await;
    let log = run(&t, &format!("/api/v2/event_logs/{id}/"), &["action_fired"]).await;
    let fired = log["job_id"].as_u64().expect("a job was launched");
    let fired_path = format!("/api/v2/jobs/{fired}/");
    let job = run(&t, &fired_path, &["successful"]).await;
    assert_eq!(
        job["extra_vars"]["forge_eda_payload"]["note"],
        "job-marker-one"
    );

    // A job still queued at the erasure (behind a running one), and a workflow job.
    let slow = command_template(&t, acme, "slow", &["/bin/sleep", "2"]).await;
    let (status, running) = t
        .post(
            &format!("/api/v2/job_templates/{slow}/launch/"),
            ADMIN,
            json!({"extra_vars": {"note": "job-marker-two"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{running}");
    let (status, queued) = t
        .post(
            &format!("/api/v2/job_templates/{slow}/launch/"),
            ADMIN,
            json!({"extra_vars": {"note": "job-marker-three"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{queued}");
    let (status, workflow) = t
        .post(
            "/api/v2/workflow_job_templates/",
            ADMIN,
            json!({"name": "wf", "organization": acme,
               "nodes": [{"id": "only", "job_template": quick}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{workflow}");
    let (status, workflow_job) = t
        .post(
            &format!("/api/v2/workflow_job_templates/{}/launch/", workflow["id"]),
            ADMIN,
            json!({"extra_vars": {"note": "job-marker-four"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{workflow_job}");
    let workflow_path = format!("/api/v2/workflow_jobs/{}/", workflow_job["id"]);
    let done = run(&t, &workflow_path, &["successful"]).await;
    assert_eq!(done["extra_vars"]["note"], "job-marker-four");
    run(
        &t,
        &format!("/api/v2/jobs/{}/", running["id"]),
        &["running"],
    )
    .await;

    // Sealed at rest: no marker in any file of the data dir.
    for marker in [
        "job-marker-one",
        "job-marker-two",
        "job-marker-three",
        "job-marker-four",
    ] {
        assert_eq!(
            files_containing(&t.dir, marker),
            Vec::<std::path::PathBuf>::new(),
            "{marker}"
        );
    }

    let (status, erased) = erase(&t, acme, ADMIN, json!({"confirm": "acme"})).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    let (_, job) = t.get(&fired_path, ADMIN).await;
    assert_eq!(job["extra_vars"], "erased");
    assert_eq!(job["status"], "successful", "the rest of the job stays");
    let (_, done) = t.get(&workflow_path, ADMIN).await;
    assert_eq!(done["extra_vars"], "erased");
    // The queued job cannot run without its variables: it errors, saying why.
    let queued = run(
        &t,
        &format!("/api/v2/jobs/{}/", queued["id"]),
        &["successful", "failed", "error"],
    )
    .await;
    assert_eq!(queued["status"], "error", "{queued}");
    assert_eq!(
        queued["job_explanation"],
        "the job's variables were erased before it ran"
    );
    assert_eq!(queued["extra_vars"], "erased");

    let t = t.restart().await;
    let (_, job) = t.get(&fired_path, ADMIN).await;
    assert_eq!(job["extra_vars"], "erased");
    t.shutdown().await;
}
