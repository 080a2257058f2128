//! The admin API over real HTTP: conventions, errors, RBAC, persistence.

mod common;

use std::time::Duration;

use common::{ADMIN, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let t = TestServer::start().await;
    let (status, body) = t.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = t.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["journal"], "open");
    t.create_org("metered").await;
    let text = t
        .client
        .get(format!("{}/metrics", t.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for metric in [
        "hookforge_journal_events_appended_total",
        "hookforge_journal_commit_events_bucket",
        "hookforge_journal_flush_seconds_bucket",
        "hookforge_http_requests_total{method=\"POST\",route=\"/api/v2/organizations\",status=\"201\"}",
        "hookforge_actor_restarts_total",
    ] {
        assert!(text.contains(metric), "missing {metric} in\n{text}");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn organizations_crud_with_and_without_trailing_slash() {
    let t = TestServer::start().await;
    let (status, org) = t
        .post(
            "/api/v2/organizations",
            ADMIN,
            json!({"name": "Acme", "description": "first"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = org["id"].as_u64().unwrap();
    assert_eq!(org["url"], format!("/api/v2/organizations/{id}/"));
    assert_eq!(org["description"], "first");
    let (status, fetched) = t.get(&format!("/api/v2/organizations/{id}/"), ADMIN).await;
    assert_eq!((status, &fetched), (StatusCode::OK, &org));
    let (status, patched) = t
        .patch(
            &format!("/api/v2/organizations/{id}"),
            ADMIN,
            json!({"description": "second"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (patched["name"].as_str(), patched["description"].as_str()),
        (Some("Acme"), Some("second"))
    );
    assert!(patched["modified"].as_str() > org["modified"].as_str());
    let (status, _) = t
        .delete(&format!("/api/v2/organizations/{id}/"), ADMIN)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = t.get(&format!("/api/v2/organizations/{id}/"), ADMIN).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = t
        .delete(&format!("/api/v2/organizations/{id}/"), ADMIN)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    t.shutdown().await;
}

#[tokio::test]
async fn an_organization_that_owns_resources_cannot_be_deleted() {
    let t = TestServer::start().await;
    let org = t.create_org("busy").await;
    let rule = t
        .create_rule(
            json!({"name": "r", "organization": org, "source_type": "webhook_generic",
            "webhook_path": "busy-org-rule"}),
        )
        .await;
    let (status, template) = t
        .post(
            "/api/v2/notification_templates/",
            ADMIN,
            json!({"name": "n", "organization": org, "notification_type": "webhook",
                "notification_configuration": {"url": "https://example.com/hook"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let org_path = format!("/api/v2/organizations/{org}/");
    let (status, body) = t.delete(&org_path, ADMIN).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "conflict");
    assert_eq!(
        body["detail"],
        "The organization still owns 1 event rule and 1 notification template; delete them first."
    );
    // Refused means unchanged: the organization and its rule are still there.
    assert_eq!(t.get(&org_path, ADMIN).await.0, StatusCode::OK);
    let rule_path = format!("/api/v2/event_rules/{}/", rule["id"]);
    assert_eq!(t.get(&rule_path, ADMIN).await.0, StatusCode::OK);
    let template_path = format!("/api/v2/notification_templates/{}/", template["id"]);
    for path in [&rule_path, &template_path] {
        assert_eq!(
            t.delete(path, ADMIN).await.0,
            StatusCode::NO_CONTENT,
            "{path}"
        );
    }
    assert_eq!(t.delete(&org_path, ADMIN).await.0, StatusCode::NO_CONTENT);
    t.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_precise_errors_in_one_shape() {
    let t = TestServer::start().await;
    t.create_org("Taken").await;
    let post = |body: &'static str, content_type: &'static str| {
        t.client
            .post(format!("{}/api/v2/organizations/", t.base))
            .bearer_auth(ADMIN)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(&str, &str, StatusCode, &str, Option<&str>)> = vec![
        (
            "{\"name\": ",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "name=x",
            "application/x-www-form-urlencoded",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            "[1, 2]",
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid",
            None,
        ),
        (
            "{}",
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("name"),
        ),
        (
            "{\"name\": \"  \"}",
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("name"),
        ),
        (
            "{\"name\": \"Taken\"}",
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("name"),
        ),
        (
            "{\"name\": 42}",
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("name"),
        ),
        (
            "{\"name\": \"ok\", \"colour\": 1}",
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("colour"),
        ),
    ];
    for (body, content_type, status, code, field) in cases {
        let response = post(body, content_type).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["code"], code, "{body}: {error}");
        assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(error["fields"].is_object());
        if let Some(field) = field {
            assert!(error["fields"][field].is_array(), "{body}: {error}");
        }
    }
    let big = vec![b'x'; 1024 * 1024 + 1];
    let response = t
        .client
        .post(format!("{}/api/v2/organizations/", t.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = t
        .call(Method::PUT, "/api/v2/organizations/", Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (status, _) = t.get("/api/v2/organizations/abc/", ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = t.get("/api/v2/nothing-here/", ADMIN).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = t.get("/api/v2/audit_events/?since=yesterday", ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["since"].is_array());
    // Nothing refused was recorded.
    let (_, orgs) = t.get("/api/v2/organizations/", ADMIN).await;
    assert_eq!(orgs["count"], 1);
    t.shutdown().await;
}

#[tokio::test]
async fn lists_paginate_newest_first() {
    let t = TestServer::start().await;
    for i in 0..30 {
        t.create_org(&format!("org-{i:02}")).await;
    }
    let (status, page1) = t.get("/api/v2/organizations/?page_size=10", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page1["count"], 30);
    assert_eq!(page1["results"].as_array().unwrap().len(), 10);
    assert_eq!(page1["results"][0]["name"], "org-29", "newest first");
    assert_eq!(page1["previous"], serde_json::Value::Null);
    let next = page1["next"].as_str().unwrap().to_owned();
    assert!(
        next.contains("page=2") && next.contains("page_size=10"),
        "{next}"
    );
    let (_, page3) = t
        .get("/api/v2/organizations/?page_size=10&page=3", ADMIN)
        .await;
    assert_eq!(page3["results"][9]["name"], "org-00");
    assert_eq!(page3["next"], serde_json::Value::Null);
    assert!(page3["previous"].as_str().unwrap().contains("page=2"));
    let (status, _) = t
        .get("/api/v2/organizations/?page_size=10&page=4", ADMIN)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = t.get("/api/v2/organizations/?page_size=500", ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["page_size"].is_array());
    let (_, filtered) = t.get("/api/v2/organizations/?name=org-07", ADMIN).await;
    assert_eq!(filtered["count"], 1);
    t.shutdown().await;
}

#[tokio::test]
async fn rbac_matrix() {
    let t = TestServer::start().await;
    let org1 = t.create_org("one").await;
    let org2 = t.create_org("two").await;
    let (_, admin1) = t.create_token(org1, "admin").await;
    let (_, member1) = t.create_token(org1, "member").await;
    let (_, admin2) = t.create_token(org2, "admin").await;
    let (token1_id, _) = t.create_token(org1, "member").await;
    let (revoked_id, revoked) = t.create_token(org1, "admin").await;
    assert_eq!(
        t.delete(&format!("/api/v2/tokens/{revoked_id}/"), ADMIN)
            .await
            .0,
        StatusCode::NO_CONTENT
    );

    use StatusCode as S;
    struct Case {
        method: Method,
        path: String,
        body: Option<serde_json::Value>,
    }
    let case =
        |method: Method, path: String, body: Option<serde_json::Value>| Case { method, path, body };
    let routes = [
        (
            "list orgs",
            case(Method::GET, "/api/v2/organizations/".into(), None),
        ),
        (
            "get org1",
            case(Method::GET, format!("/api/v2/organizations/{org1}/"), None),
        ),
        (
            "patch org1",
            case(
                Method::PATCH,
                format!("/api/v2/organizations/{org1}/"),
                Some(json!({"description": "x"})),
            ),
        ),
        (
            "list tokens",
            case(Method::GET, "/api/v2/tokens/".into(), None),
        ),
        (
            "issue org1 member token",
            case(
                Method::POST,
                "/api/v2/tokens/".into(),
                Some(json!({"organization": org1, "role": "member"})),
            ),
        ),
        (
            "get org1 token",
            case(Method::GET, format!("/api/v2/tokens/{token1_id}/"), None),
        ),
        (
            "audit",
            case(Method::GET, "/api/v2/audit_events/".into(), None),
        ),
        ("me", case(Method::GET, "/api/v2/me/".into(), None)),
    ];
    // Expected status per caller, in the order of `routes`.
    let callers: Vec<(&str, Option<&str>, [S; 8])> = vec![
        ("no token", None, [S::UNAUTHORIZED; 8]),
        ("revoked", Some(revoked.as_str()), [S::UNAUTHORIZED; 8]),
        ("garbage", Some("not-a-real-token"), [S::UNAUTHORIZED; 8]),
        (
            "system admin",
            Some(ADMIN),
            [S::OK, S::OK, S::OK, S::OK, S::CREATED, S::OK, S::OK, S::OK],
        ),
        (
            "org1 admin",
            Some(admin1.as_str()),
            [
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::OK,
                S::CREATED,
                S::OK,
                S::OK,
                S::OK,
            ],
        ),
        (
            "org1 member",
            Some(member1.as_str()),
            [
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::OK,
                S::FORBIDDEN,
                S::OK,
                S::FORBIDDEN,
                S::OK,
            ],
        ),
        (
            "org2 admin",
            Some(admin2.as_str()),
            [
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::OK,
                S::BAD_REQUEST,
                S::NOT_FOUND,
                S::OK,
                S::OK,
            ],
        ),
    ];
    for (who, token, expected) in &callers {
        for ((name, route), want) in routes.iter().zip(expected) {
            let (status, body) = t
                .call(
                    route.method.clone(),
                    &route.path,
                    *token,
                    route.body.clone(),
                )
                .await;
            assert_eq!(status, *want, "{who} → {name}: {body}");
            if !status.is_success() {
                assert!(
                    body["code"].is_string() && body["detail"].is_string(),
                    "{who} → {name}: {body}"
                );
            }
        }
    }
    // A token only lists its own organization's tokens.
    let (_, listed) = t.get("/api/v2/tokens/", &admin2).await;
    assert!(
        listed["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|tok| tok["organization"] == org2)
    );
    // Listed tokens are masked.
    let (_, all) = t.get("/api/v2/tokens/", ADMIN).await;
    for token in all["results"].as_array().unwrap() {
        assert!(token["token"].as_str().unwrap().contains("***"));
    }
    // Another tenant's token cannot be revoked and does not exist for it; a member cannot revoke.
    assert_eq!(
        t.delete(&format!("/api/v2/tokens/{token1_id}/"), &admin2)
            .await
            .0,
        S::NOT_FOUND
    );
    assert_eq!(
        t.delete(&format!("/api/v2/tokens/{token1_id}/"), &member1)
            .await
            .0,
        S::FORBIDDEN
    );
    assert_eq!(
        t.delete(&format!("/api/v2/tokens/{token1_id}/"), &admin1)
            .await
            .0,
        S::NO_CONTENT
    );
    // Malformed Authorization headers.
    for header in ["Token abc", "Bearer", "Bearer a b", "Basic dXNlcjpwYXNz"] {
        let response = t
            .client
            .get(format!("{}/api/v2/me/", t.base))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), S::UNAUTHORIZED, "{header}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    // Deleting an organization disables its tokens at once.
    assert_eq!(
        t.delete(&format!("/api/v2/organizations/{org2}/"), ADMIN)
            .await
            .0,
        S::NO_CONTENT
    );
    assert_eq!(t.get("/api/v2/me/", &admin2).await.0, S::UNAUTHORIZED);
    t.shutdown().await;
}

#[tokio::test]
async fn audit_trail_records_who_what_and_the_request() {
    let t = TestServer::start().await;
    let org = t.create_org("audited").await;
    let (token_id, token) = t.create_token(org, "admin").await;
    let response = t
        .client
        .post(format!("{}/api/v2/tokens/", t.base))
        .bearer_auth(&token)
        .header("x-request-id", "req-12345")
        .json(&json!({"organization": org, "role": "member", "description": "by org admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-request-id"], "req-12345");
    let (status, audit) = t
        .get("/api/v2/audit_events/?action=token.created", ADMIN)
        .await;
    assert_eq!(status, StatusCode::OK);
    let newest = &audit["results"][0];
    assert_eq!(newest["actor"], format!("token:{token_id}"));
    assert_eq!(newest["correlation_id"], "req-12345");
    assert_eq!(newest["organization"], org);
    assert_eq!(newest["details"]["description"], "by org admin");
    assert!(newest["details"]["token"].as_str().unwrap().contains("***"));
    let (_, by_actor) = t
        .get(
            &format!("/api/v2/audit_events/?actor=token:{token_id}"),
            ADMIN,
        )
        .await;
    assert_eq!(by_actor["count"], 1);
    let (_, org_admin_view) = t.get("/api/v2/audit_events/", &token).await;
    assert!(
        org_admin_view["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["organization"] == org)
    );
    let (_, until_epoch) = t
        .get("/api/v2/audit_events/?until=2000-01-01T00:00:00Z", ADMIN)
        .await;
    assert_eq!(until_epoch["count"], 0);
    t.shutdown().await;
}

#[tokio::test]
async fn state_survives_restart_and_read_models_rebuild_without_snapshots() {
    let t = TestServer::start().await;
    let org = t.create_org("persistent").await;
    let (_, token) = t.create_token(org, "member").await;
    let t = t.restart().await;
    let (status, me) = t.get("/api/v2/me/", &token).await;
    assert_eq!(
        (status, me["organization"].as_u64()),
        (StatusCode::OK, Some(org))
    );
    let (_, orgs) = t.get("/api/v2/organizations/", ADMIN).await;
    assert_eq!(orgs["count"], 1);
    // Snapshots were taken on shutdown; drop them and the same state comes back from the log.
    let with_snapshots = t.get("/api/v2/audit_events/", ADMIN).await.1;
    t.app().journal.clear_snapshots().unwrap();
    let t = t.restart().await;
    assert_eq!(
        t.get("/api/v2/audit_events/", ADMIN).await.1,
        with_snapshots
    );
    // Ids continue after a restart rather than being reused.
    let next = t.create_org("second").await;
    assert!(next > org);
    t.shutdown().await;
}

#[tokio::test]
async fn secrets_never_reach_the_data_files() {
    let t = TestServer::start().await;
    let org = t.create_org("secretive").await;
    let (_, token) = t.create_token(org, "admin").await;
    let dir = t.dir.clone();
    let temp = t.shutdown().await;
    let hits: Vec<_> = [token.as_str(), ADMIN]
        .iter()
        .flat_map(|secret| common::files_containing(&dir, secret))
        .collect();
    assert!(hits.is_empty(), "a secret appears in {hits:?}");
    drop(temp);
}

/// The three template resources share their create, detail, update and delete handlers; each
/// goes through the same life here, as an organization admin would drive it.
#[tokio::test]
async fn every_template_resource_follows_the_same_life() {
    let t = TestServer::start().await;
    let org = t.create_org("templated").await;
    let other = t.create_org("elsewhere").await;
    let (_, admin) = t.create_token(org, "admin").await;
    let (_, member) = t.create_token(org, "member").await;
    let (_, outsider) = t.create_token(other, "admin").await;
    let controller = json!({"organization": org, "kind": "controller",
        "controller_url": "https://awx.example.com", "remote_id": 7, "controller_token": "awx-token"});
    let (status, job_template) = t
        .post(
            "/api/v2/job_templates/",
            &admin,
            with_name(&controller, "deploy"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job_template}");
    let workflow =
        json!({"organization": org, "nodes": [{"id": "a", "job_template": job_template["id"]}]});
    let notification = json!({"organization": org, "notification_type": "webhook",
        "notification_configuration": {"url": "https://example.com/hook"}});
    for (collection, body) in [
        ("job_templates", controller),
        ("workflow_job_templates", workflow),
        ("notification_templates", notification),
    ] {
        let base = format!("/api/v2/{collection}/");
        let (status, created) = t.post(&base, &admin, with_name(&body, "first")).await;
        assert_eq!(status, StatusCode::CREATED, "{collection}: {created}");
        let path = format!("{base}{}/", created["id"]);
        assert_eq!(created["url"], path, "{collection}");
        let (status, taken) = t.post(&base, &admin, with_name(&body, "first")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{collection}: {taken}");
        assert!(taken["fields"]["name"].is_array(), "{collection}: {taken}");

        assert_eq!(
            t.get(&path, &member).await,
            (StatusCode::OK, created.clone())
        );
        assert_eq!(
            t.get(&path, &outsider).await.0,
            StatusCode::NOT_FOUND,
            "{collection}"
        );
        let rename = json!({"name": "renamed"});
        assert_eq!(
            t.patch(&path, &member, rename.clone()).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            t.patch(&path, &outsider, rename.clone()).await.0,
            StatusCode::NOT_FOUND
        );
        let (status, moved) = t.patch(&path, &admin, json!({"organization": other})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{collection}: {moved}");
        assert!(
            moved["fields"]["organization"].is_array(),
            "{collection}: {moved}"
        );

        let (status, renamed) = t.patch(&path, &admin, rename.clone()).await;
        assert_eq!(status, StatusCode::OK, "{collection}: {renamed}");
        assert_eq!(renamed["name"], "renamed");
        assert!(renamed["modified"].as_str() > created["modified"].as_str());
        // Changing nothing appends nothing: `modified` stays.
        let (status, again) = t.patch(&path, &admin, rename).await;
        assert_eq!(
            (status, &again["modified"]),
            (StatusCode::OK, &renamed["modified"])
        );

        assert_eq!(t.delete(&path, &member).await.0, StatusCode::FORBIDDEN);
        assert_eq!(t.delete(&path, &outsider).await.0, StatusCode::NOT_FOUND);
        assert_eq!(t.delete(&path, &admin).await.0, StatusCode::NO_CONTENT);
        assert_eq!(
            t.get(&path, &admin).await.0,
            StatusCode::NOT_FOUND,
            "{collection}"
        );
        assert_eq!(
            t.delete(&path, &admin).await.0,
            StatusCode::NOT_FOUND,
            "{collection}"
        );
    }
    t.shutdown().await;
}

/// A command job template runs code as the server's user: an organization admin may neither
/// create, change nor delete one, even in their own organization.
#[tokio::test]
async fn command_job_templates_are_for_system_admins_only() {
    let t = TestServer::start().await;
    let org = t.create_org("commands").await;
    let (_, admin) = t.create_token(org, "admin").await;
    let command =
        json!({"name": "run", "organization": org, "kind": "command", "argv": ["/bin/true"]});
    let (status, refused) = t
        .post("/api/v2/job_templates/", &admin, command.clone())
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("permission_denied"))
    );
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("only a system admin"),
        "{refused}"
    );
    let (status, template) = t.post("/api/v2/job_templates/", ADMIN, command).await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let path = format!("/api/v2/job_templates/{}/", template["id"]);
    assert_eq!(
        t.get(&path, &admin).await.0,
        StatusCode::OK,
        "admins may read it"
    );
    let (status, _) = t
        .patch(&path, &admin, json!({"description": "mine now"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, refused) = t.delete(&path, &admin).await;
    assert_eq!(
        (status, refused["detail"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("Only a system admin may delete a command job template.")
        )
    );
    assert_eq!(t.get(&path, ADMIN).await.1["description"], "");
    assert_eq!(t.delete(&path, ADMIN).await.0, StatusCode::NO_CONTENT);
    t.shutdown().await;
}

fn with_name(body: &serde_json::Value, name: &str) -> serde_json::Value {
    let mut body = body.clone();
    body["name"] = json!(name);
    body
}

/// A resource created while its organization is being deleted: exactly one of the two wins, so
/// nothing is ever left in a deleted organization. Rules, templates and endpoints take turns.
#[tokio::test]
async fn a_create_racing_an_organization_delete_never_orphans_a_resource() {
    let t = TestServer::start().await;
    for round in 0..48 {
        let org = t.create_org(&format!("racing-{round}")).await;
        let (collection, body) = match round % 3 {
            0 => (
                "event_rules",
                json!({"name": "r", "organization": org, "webhook_path": format!("race-{round}")}),
            ),
            1 => (
                "notification_templates",
                json!({"name": "n", "organization": org, "notification_type": "webhook",
                    "notification_configuration": {"url": "https://example.com/hook"}}),
            ),
            _ => (
                "outbound_webhooks",
                json!({"name": "e", "organization": org, "url": "https://example.com/hook",
                    "events": ["*"]}),
            ),
        };
        let org_path = format!("/api/v2/organizations/{org}/");
        // The create lands at a different moment of the delete's commit each round.
        let lag = Duration::from_micros(250 * (round % 8));
        let create = async {
            tokio::time::sleep(lag).await;
            t.post(&format!("/api/v2/{collection}/"), ADMIN, body).await
        };
        let (created, deleted) = tokio::join!(create, t.delete(&org_path, ADMIN));
        match (created.0, deleted.0) {
            (StatusCode::CREATED, StatusCode::CONFLICT) => {
                assert_eq!(t.get(&org_path, ADMIN).await.0, StatusCode::OK);
            }
            (StatusCode::BAD_REQUEST, StatusCode::NO_CONTENT) => {
                assert!(
                    created.1["fields"]["organization"].is_array(),
                    "{}",
                    created.1
                );
            }
            other => panic!("round {round} ({collection}): {other:?}"),
        }
    }
    t.shutdown().await;
}

/// Two updates of different fields at once both take effect: each builds on the settings the
/// other left, never on a copy read before it.
#[tokio::test]
async fn concurrent_template_updates_of_different_fields_both_stick() {
    let t = TestServer::start().await;
    let org = t.create_org("patched").await;
    let (status, template) = t
        .post(
            "/api/v2/notification_templates/",
            ADMIN,
            json!({"name": "n", "organization": org, "notification_type": "webhook",
                "notification_configuration": {"url": "https://example.com/hook"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let path = format!("/api/v2/notification_templates/{}/", template["id"]);
    for round in 0..20 {
        let description = format!("round {round}");
        let name = format!("n{round}");
        let (described, renamed) = tokio::join!(
            t.patch(&path, ADMIN, json!({"description": description})),
            t.patch(&path, ADMIN, json!({"name": name}))
        );
        assert_eq!((described.0, renamed.0), (StatusCode::OK, StatusCode::OK));
        let (_, shown) = t.get(&path, ADMIN).await;
        assert_eq!(
            (&shown["description"], &shown["name"]),
            (&json!(description), &json!(name)),
            "round {round}"
        );
    }
    t.shutdown().await;
}
