//! Actions end to end: rules launch jobs, workflows and notifications; jobs report their lifecycle.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ADMIN, ServerProcess, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "actions-test-webhook-key";

async fn server() -> TestServer {
    let temp = tempfile::tempdir().unwrap();
    let mut config = common::config(temp.path());
    config.outbound.allow_private_networks = true;
    config.jobs.kill_grace_seconds = 1;
    config.jobs.controller_poll_millis = 50;
    config.jobs.notification_retry_initial_millis = 100;
    let mut t = TestServer::start_with(config).await;
    t.keep(temp);
    t
}

async fn command_template(
    t: &TestServer,
    org: u64,
    name: &str,
    argv: &[&str],
    extra: Value,
) -> u64 {
    let mut body = json!({"name": name, "organization": org, "kind": "command", "argv": argv});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, template) = t.post("/api/v2/job_templates/", ADMIN, body).await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    template["id"].as_u64().unwrap()
}

/// Polls a job (or workflow job) until it reaches a finished status.
async fn finished(t: &TestServer, path: &str) -> Value {
    for _ in 0..1500 {
        let (status, job) = t.get(path, ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if ["successful", "failed", "error", "canceled"].contains(&job["status"].as_str().unwrap())
        {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never finished");
}

async fn wait_status(t: &TestServer, path: &str, want: &str) -> Value {
    for _ in 0..1500 {
        let (_, job) = t.get(path, ADMIN).await;
        if job["status"] == want {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never reached {want}");
}

async fn launch(t: &TestServer, template: u64, extra_vars: Value) -> u64 {
    let (status, job) = t
        .post(
            &format!("/api/v2/job_templates/{template}/launch/"),
            ADMIN,
            json!({"extra_vars": extra_vars}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    job["id"].as_u64().unwrap()
}

#[tokio::test]
async fn a_signed_push_launches_a_command_job_with_every_injected_variable() {
    let t = server().await;
    let org = t.create_org("acme").await;
    let out = tempfile::tempdir().unwrap();
    let vars = out.path().join("vars.json");
    let template = command_template(
        &t,
        org,
        "write vars",
        &[
            "/bin/cp",
            "--",
            "$HOOKFORGE_EXTRA_VARS_FILE is not expanded",
            "/nonexistent",
        ],
        json!({}),
    )
    .await;
    // The argv above proves nothing runs through a shell; the real template copies the file.
    let script = format!(
        "cp \"$HOOKFORGE_EXTRA_VARS_FILE\" {}; echo copied",
        vars.display()
    );
    let (status, _) = t.patch(&format!("/api/v2/job_templates/{template}/"), ADMIN, json!({"argv": ["/bin/sh", "-c", script], "extra_vars": {"env": "dev", "region": "eu"}})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, rule) = t
        .post(
            "/api/v2/event_rules/",
            ADMIN,
            json!({"name": "deploy", "organization": org, "source_type": "webhook_github", "webhook_path": "gh", "webhook_key": KEY,
                   "conditions": [{"expression": "event.repository.full_name == 'Codertocat/Hello-World'"}],
                   "actions": [{"action_type": "launch_job_template", "target_id": template, "extra_vars": {"env": "prod"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    // GitHub's own push example (octokit/webhooks), byte-exact.
    let body = common::fixture("github/push.json");
    let response = t
        .client
        .post(format!("{}/api/v2/eda_webhooks/gh/", t.base))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header(
            "x-hub-signature-256",
            format!(
                "sha256={}",
                hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), &body)
            ),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let event_log_id = response.json::<Value>().await.unwrap()["event_log_id"]
        .as_u64()
        .unwrap();

    let log = wait_status(
        &t,
        &format!("/api/v2/event_logs/{event_log_id}/"),
        "action_fired",
    )
    .await;
    let job_id = log["job_id"]
        .as_u64()
        .expect("the event log names the launched job");
    assert_eq!(log["actions_triggered"][0]["job_id"], job_id);
    let job = finished(&t, &format!("/api/v2/jobs/{job_id}/")).await;
    assert_eq!(job["status"], "successful", "{job}");
    assert_eq!(
        job["launched_by"],
        json!({"type": "event_log", "id": event_log_id})
    );
    assert!(job["result_stdout"].as_str().unwrap().contains("copied"));

    let written: Value = serde_json::from_slice(&std::fs::read(&vars).unwrap()).unwrap();
    assert_eq!(
        written["env"], "prod",
        "action extra_vars override template defaults"
    );
    assert_eq!(written["region"], "eu", "template defaults are kept");
    assert_eq!(written["forge_eda_event_type"], "push");
    assert_eq!(
        written["forge_eda_event_guid"],
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(written["forge_eda_rule_name"], "deploy");
    assert_eq!(written["forge_eda_event_log_id"], event_log_id);
    assert_eq!(
        written["forge_eda_payload"],
        serde_json::from_slice::<Value>(&body).unwrap()
    );
    t.shutdown().await;
}

#[tokio::test]
async fn failing_and_timed_out_commands_fail_with_their_reasons() {
    let t = server().await;
    let org = t.create_org("acme").await;
    let failing = command_template(
        &t,
        org,
        "fails",
        &[
            "/bin/sh",
            "-c",
            "echo about to fail; echo detail >&2; exit 7",
        ],
        json!({}),
    )
    .await;
    let job = finished(
        &t,
        &format!("/api/v2/jobs/{}/", launch(&t, failing, json!({})).await),
    )
    .await;
    assert_eq!(
        (job["status"].as_str(), job["exit_code"].as_i64()),
        (Some("failed"), Some(7))
    );
    assert!(
        job["result_stdout"]
            .as_str()
            .unwrap()
            .contains("about to fail")
    );
    assert!(job["job_explanation"].as_str().unwrap().contains("code 7"));
    let stdout = t
        .client
        .get(format!("{}/api/v2/jobs/{}/stdout/", t.base, job["id"]))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stdout.contains("detail"), "{stdout}");

    let slow = command_template(
        &t,
        org,
        "slow",
        &["/bin/sleep", "30"],
        json!({"timeout_seconds": 1}),
    )
    .await;
    let started = std::time::Instant::now();
    let job = finished(
        &t,
        &format!("/api/v2/jobs/{}/", launch(&t, slow, json!({})).await),
    )
    .await;
    assert_eq!(job["status"], "failed");
    assert!(
        job["job_explanation"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{job}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let noisy = command_template(
        &t,
        org,
        "noisy",
        &[
            "/bin/sh",
            "-c",
            "head -c 3000000 /dev/zero | tr '\\0' x; echo END",
        ],
        json!({}),
    )
    .await;
    let job = finished(
        &t,
        &format!("/api/v2/jobs/{}/", launch(&t, noisy, json!({})).await),
    )
    .await;
    let stdout = t
        .client
        .get(format!("{}/api/v2/jobs/{}/stdout/", t.base, job["id"]))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        stdout.len(),
        1024 * 1024,
        "output capture keeps the last 1 MiB"
    );
    assert!(stdout.ends_with("END\n"));
    t.shutdown().await;
}

#[tokio::test]
async fn argv_is_not_a_shell_and_payloads_cannot_touch_the_environment() {
    let t = server().await;
    let org = t.create_org("acme").await;
    let marker = tempfile::tempdir().unwrap().path().join("pwned");
    let argv = ["/usr/bin/printf", "%s|", "; touch", "&& rm -rf /", "$(id)"];
    let template = command_template(&t, org, "literal", &argv, json!({})).await;
    let job = finished(
        &t,
        &format!("/api/v2/jobs/{}/", launch(&t, template, json!({})).await),
    )
    .await;
    assert_eq!(job["status"], "successful");
    assert_eq!(job["result_stdout"], "; touch|&& rm -rf /|$(id)|");
    assert!(!marker.exists());

    let env = command_template(
        &t,
        org,
        "env",
        &["/usr/bin/env"],
        json!({"env": {"TEAM": "ops"}}),
    )
    .await;
    let hostile = json!({"PATH": "/evil", "HOOKFORGE_EXTRA_VARS": "forged", "LD_PRELOAD": "/evil.so", "cmd": "; rm -rf /"});
    let job = finished(
        &t,
        &format!("/api/v2/jobs/{}/", launch(&t, env, hostile).await),
    )
    .await;
    let lines: Vec<&str> = job["result_stdout"].as_str().unwrap().lines().collect();
    let var = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    assert_eq!(
        var("PATH"),
        std::env::var("PATH").ok(),
        "PATH comes from the server, not the payload"
    );
    assert_eq!(var("TEAM").as_deref(), Some("ops"));
    assert_eq!(var("LD_PRELOAD"), None);
    let extra: Value = serde_json::from_str(&var("HOOKFORGE_EXTRA_VARS").unwrap()).unwrap();
    assert_eq!(
        extra["PATH"], "/evil",
        "payload values are data inside the JSON, nothing more"
    );
    assert_eq!(extra["cmd"], "; rm -rf /");
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "TEAM",
        "HOOKFORGE_EXTRA_VARS",
        "HOOKFORGE_EXTRA_VARS_FILE",
        "PWD",
        "SHLVL",
        "_",
    ];
    assert!(
        names.iter().all(|n| allowed.contains(n)),
        "unexpected variables in {names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("ADMIN") || n.contains("MASTER")),
        "server secrets leaked"
    );

    let (status, err) = t
        .post("/api/v2/job_templates/", ADMIN, json!({"name": "x", "organization": org, "kind": "command", "argv": ["/bin/true"], "env": {"HOOKFORGE_EXTRA_VARS": "x"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["fields"]["env"].is_array());
    t.shutdown().await;
}

#[tokio::test]
async fn command_templates_need_a_system_admin_and_concurrency_queues_launches() {
    let t = server().await;
    let org = t.create_org("acme").await;
    let (_, admin) = t.create_token(org, "admin").await;
    let command =
        json!({"name": "c", "organization": org, "kind": "command", "argv": ["/bin/true"]});
    let (status, _) = t
        .post("/api/v2/job_templates/", &admin, command.clone())
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an organization admin may not create command templates"
    );
    let controller = json!({"name": "awx", "organization": org, "kind": "controller", "controller_url": "http://127.0.0.1:9", "remote_id": 1, "controller_token": "t"});
    let (status, created) = t.post("/api/v2/job_templates/", &admin, controller).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        created["controller_token"].as_str().unwrap().contains('*')
            || created["controller_token"] == "***"
    );

    let gate = tempfile::tempdir().unwrap();
    let flag = gate.path().join("go");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done", flag.display());
    let queued = command_template(
        &t,
        org,
        "one at a time",
        &["/bin/sh", "-c", &script],
        json!({"concurrency": 1}),
    )
    .await;
    let first = launch(&t, queued, json!({})).await;
    let second = launch(&t, queued, json!({})).await;
    wait_status(&t, &format!("/api/v2/jobs/{first}/"), "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.get(&format!("/api/v2/jobs/{second}/"), ADMIN).await.1["status"],
        "pending",
        "the second launch waits"
    );
    std::fs::write(&flag, b"").unwrap();
    assert_eq!(
        finished(&t, &format!("/api/v2/jobs/{first}/")).await["status"],
        "successful"
    );
    assert_eq!(
        finished(&t, &format!("/api/v2/jobs/{second}/")).await["status"],
        "successful"
    );
    let (_, listed) = t
        .get(
            &format!("/api/v2/jobs/?job_template={queued}&status=successful"),
            ADMIN,
        )
        .await;
    assert_eq!(listed["count"], 2);
    t.shutdown().await;
}

#[tokio::test]
async fn cancel_and_duration_alerts() {
    let t = server().await;
    let org = t.create_org("acme").await;
    let sleeper = command_template(
        &t,
        org,
        "sleeper",
        &["/bin/sh", "-c", "trap '' TERM; sleep 30"],
        json!({"alert_after_seconds": 1}),
    )
    .await;
    let job = launch(&t, sleeper, json!({})).await;
    wait_status(&t, &format!("/api/v2/jobs/{job}/"), "running").await;
    for _ in 0..200 {
        if t.get(&format!("/api/v2/jobs/{job}/"), ADMIN).await.1["duration_exceeded"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        t.get(&format!("/api/v2/jobs/{job}/"), ADMIN).await.1["duration_exceeded"],
        true
    );
    let (status, _) = t
        .post(&format!("/api/v2/jobs/{job}/cancel/"), ADMIN, json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // It ignores SIGTERM: SIGKILL follows after the grace period.
    let done = finished(&t, &format!("/api/v2/jobs/{job}/")).await;
    assert_eq!(done["status"], "canceled");
    assert_eq!(
        t.post(&format!("/api/v2/jobs/{job}/cancel/"), ADMIN, json!({}))
            .await
            .0,
        StatusCode::CONFLICT
    );
    let events: Vec<String> = t
        .app()
        .journal
        .read_stream(&format!("job-{job}"), 0, 100)
        .unwrap()
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(
        events,
        [
            "job.launched",
            "job.started",
            "job.duration_exceeded",
            "job.cancel_requested",
            "job.finished"
        ]
    );
    t.shutdown().await;
}

#[tokio::test]
async fn workflows_follow_failure_edges_and_cancel() {
    let t = server().await;
    let org = t.create_org("acme").await;
    let out = tempfile::tempdir().unwrap();
    let record = |name: &str| {
        format!(
            "echo {name} >> {}/ran; echo \"$HOOKFORGE_EXTRA_VARS\" > {}/{name}.vars",
            out.path().display(),
            out.path().display()
        )
    };
    let fail = command_template(
        &t,
        org,
        "fail",
        &["/bin/sh", "-c", &format!("{}; exit 1", record("fail"))],
        json!({}),
    )
    .await;
    let cleanup = command_template(
        &t,
        org,
        "cleanup",
        &["/bin/sh", "-c", &record("cleanup")],
        json!({}),
    )
    .await;
    let deploy = command_template(
        &t,
        org,
        "deploy",
        &["/bin/sh", "-c", &record("deploy")],
        json!({}),
    )
    .await;
    let (status, bad) = t
        .post("/api/v2/workflow_job_templates/", ADMIN, json!({"name": "cyclic", "organization": org, "nodes": [
            {"id": "a", "job_template": fail, "success_nodes": ["b"]}, {"id": "b", "job_template": deploy, "success_nodes": ["a"]}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        bad["fields"]["nodes"][0]
            .as_str()
            .unwrap()
            .contains("cycle"),
        "{bad}"
    );
    let (status, wf) = t
        .post("/api/v2/workflow_job_templates/", ADMIN, json!({"name": "guarded", "organization": org, "extra_vars": {"stage": "qa"}, "nodes": [
            {"id": "build", "job_template": fail, "success_nodes": ["deploy"], "failure_nodes": ["cleanup"]},
            {"id": "deploy", "job_template": deploy},
            {"id": "cleanup", "job_template": cleanup}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{wf}");
    let (status, run) = t
        .post(
            &format!("/api/v2/workflow_job_templates/{}/launch/", wf["id"]),
            ADMIN,
            json!({"extra_vars": {"ticket": 42}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let done = finished(&t, &format!("/api/v2/workflow_jobs/{}/", run["id"])).await;
    assert_eq!(
        done["status"], "successful",
        "the failure was handled by its failure edge: {done}"
    );
    let nodes: std::collections::HashMap<&str, &str> = done["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n["status"].as_str().unwrap()))
        .collect();
    assert_eq!(nodes["build"], "failed");
    assert_eq!(nodes["cleanup"], "successful");
    assert_eq!(nodes["deploy"], "not_run");
    let ran = std::fs::read_to_string(out.path().join("ran")).unwrap();
    assert_eq!(ran, "fail\ncleanup\n");
    let vars: Value = serde_json::from_str(
        std::fs::read_to_string(out.path().join("cleanup.vars"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(
        (vars["stage"].as_str(), vars["ticket"].as_i64()),
        (Some("qa"), Some(42)),
        "extra vars flow to every node"
    );

    // Cancel a running workflow: its running node is canceled and nothing else starts.
    let hang = command_template(&t, org, "hang", &["/bin/sleep", "30"], json!({})).await;
    let (_, wf) = t
        .post("/api/v2/workflow_job_templates/", ADMIN, json!({"name": "long", "organization": org, "nodes": [{"job_template": hang}, {"job_template": deploy}]}))
        .await;
    let (_, run) = t
        .post(
            &format!("/api/v2/workflow_job_templates/{}/launch/", wf["id"]),
            ADMIN,
            json!({}),
        )
        .await;
    let path = format!("/api/v2/workflow_jobs/{}/", run["id"]);
    for _ in 0..500 {
        if t.get(&path, ADMIN).await.1["nodes"][0]["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        t.post(&format!("{path}cancel/"), ADMIN, json!({})).await.0,
        StatusCode::ACCEPTED
    );
    let done = finished(&t, &path).await;
    assert_eq!(done["status"], "canceled");
    assert_eq!(done["nodes"][0]["status"], "canceled");
    assert_eq!(done["nodes"][1]["status"], "not_run");
    let types: Vec<String> = t
        .app()
        .journal
        .read_stream(&format!("workflow_job-{}", run["id"]), 0, 100)
        .unwrap()
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert!(
        types.contains(&"workflow.started".to_string())
            && types.contains(&"workflow.node_completed".to_string()),
        "{types:?}"
    );
    t.shutdown().await;
}

/// A stand-in for the AWX API: launch and job status, as AWX documents them.
async fn awx_stand_in(
    final_status: &'static str,
    polls_before_done: usize,
) -> (String, Arc<Mutex<Vec<Value>>>) {
    use warp::Filter;
    let launches = Arc::new(Mutex::new(Vec::new()));
    let polls = Arc::new(Mutex::new(0usize));
    let seen = launches.clone();
    let launch = warp::path!("api" / "v2" / "job_templates" / u64 / "launch")
        .and(warp::post())
        .and(warp::header::<String>("authorization"))
        .and(warp::body::json())
        .map(move |template: u64, auth: String, body: Value| {
            seen.lock()
                .unwrap()
                .push(json!({"template": template, "auth": auth, "body": body}));
            warp::reply::with_status(
                warp::reply::json(&json!({"job": 4242, "id": 4242, "status": "pending"})),
                warp::http::StatusCode::CREATED,
            )
        });
    let status = warp::path!("api" / "v2" / "jobs" / u64)
        .and(warp::get())
        .map(move |id: u64| {
            let mut n = polls.lock().unwrap();
            *n += 1;
            let status = if *n > polls_before_done {
                final_status
            } else {
                "running"
            };
            warp::reply::json(&json!({"id": id, "status": status, "failed": status == "failed"}))
        });
    let stdout =
        warp::path!("api" / "v2" / "jobs" / u64 / "stdout").map(|_| "PLAY RECAP ok=3 changed=1\n");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        warp::serve(launch.or(stdout).or(status))
            .incoming(listener)
            .run(),
    );
    (format!("http://{addr}"), launches)
}

#[tokio::test]
async fn controller_jobs_run_on_awx_and_map_its_status() {
    let t = server().await;
    let org = t.create_org("acme").await;
    for (final_status, expected) in [("successful", "successful"), ("failed", "failed")] {
        let (url, launches) = awx_stand_in(final_status, 2).await;
        let (status, template) = t
            .post("/api/v2/job_templates/", ADMIN, json!({"name": format!("awx-{final_status}"), "organization": org, "kind": "controller",
                "controller_url": url, "remote_id": 17, "controller_token": "awx-oauth-token", "extra_vars": {"limit": "web"}}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{template}");
        let job = finished(
            &t,
            &format!(
                "/api/v2/jobs/{}/",
                launch(
                    &t,
                    template["id"].as_u64().unwrap(),
                    json!({"version": "1.2"})
                )
                .await
            ),
        )
        .await;
        assert_eq!(job["status"], expected, "{job}");
        assert_eq!(job["remote_job_id"], 4242);
        assert!(
            job["result_stdout"]
                .as_str()
                .unwrap()
                .contains("PLAY RECAP")
        );
        let launched = launches.lock().unwrap().clone();
        assert_eq!(launched.len(), 1);
        assert_eq!(launched[0]["template"], 17);
        assert_eq!(launched[0]["auth"], "Bearer awx-oauth-token");
        assert_eq!(
            launched[0]["body"]["extra_vars"],
            json!({"limit": "web", "version": "1.2"})
        );
    }
    t.shutdown().await;
}

#[tokio::test]
async fn rules_send_signed_notifications() {
    use warp::Filter;
    let received = Arc::new(Mutex::new(
        Vec::<(warp::http::HeaderMap, bytes::Bytes)>::new(),
    ));
    let sink = received.clone();
    let route = warp::post()
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .map(move |h, b| {
            sink.lock().unwrap().push((h, b));
            warp::reply()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let t = server().await;
    let org = t.create_org("acme").await;
    let secret = "notification-hmac-secret";
    let (status, template) = t
        .post("/api/v2/notification_templates/", ADMIN, json!({"name": "ops", "organization": org, "notification_type": "webhook",
            "notification_configuration": {"url": url, "headers": {"X-Team": "ops"}, "secret": secret}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    assert!(
        template["notification_configuration"]["secret"]
            .as_str()
            .unwrap()
            .contains("***")
    );
    let id = template["id"].as_u64().unwrap();
    let (status, tested) = t
        .post(
            &format!("/api/v2/notification_templates/{id}/test/"),
            ADMIN,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, tested["delivered"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{tested}"
    );

    t.post(
        "/api/v2/event_rules/",
        ADMIN,
        json!({"name": "notify", "organization": org, "webhook_path": "n", "webhook_key": KEY,
        "actions": [{"action_type": "send_notification", "target_id": id}]}),
    )
    .await;
    let body = br#"{"event_type": "disk.full"}"#;
    let response = t
        .client
        .post(format!("{}/api/v2/eda_webhooks/n/", t.base))
        .header("content-type", "application/json")
        .header(
            "x-forge-signature",
            format!(
                "sha256={}",
                hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
            ),
        )
        .header("x-forge-delivery", "n-1")
        .body(&body[..])
        .send()
        .await
        .unwrap();
    let event_log_id = response.json::<Value>().await.unwrap()["event_log_id"]
        .as_u64()
        .unwrap();
    wait_status(
        &t,
        &format!("/api/v2/event_logs/{event_log_id}/"),
        "action_fired",
    )
    .await;
    // The rule's send is journaled, then delivered by the runner.
    for _ in 0..500 {
        if received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "the test send and the rule's send");
    let (headers, body) = &received[1];
    let expected = format!(
        "sha256={}",
        hookforge::signing::hmac_sha256_hex(secret.as_bytes(), body)
    );
    assert_eq!(headers["x-forge-signature"].to_str().unwrap(), expected);
    assert_eq!(headers["x-team"], "ops");
    let summary: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(summary["rule_name"], "notify");
    assert_eq!(summary["event_type"], "disk.full");
    assert_eq!(summary["event_guid"], "n-1");
    assert_eq!(summary["event_log_id"], event_log_id);
    assert!(
        summary["event_log_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v2/event_logs/{event_log_id}/"))
    );
    let (_, shown) = t
        .get(&format!("/api/v2/notification_templates/{id}/"), ADMIN)
        .await;
    assert_eq!(shown["recent_notifications"].as_array().unwrap().len(), 2);
    t.shutdown().await;
}

#[tokio::test]
async fn actions_with_missing_targets_fail_on_the_event_log() {
    let t = server().await;
    let org = t.create_org("acme").await;
    let other = t.create_org("other").await;
    let theirs = command_template(&t, other, "theirs", &["/bin/true"], json!({})).await;
    let (status, err) = t
        .post("/api/v2/event_rules/", ADMIN, json!({"name": "r", "organization": org, "actions": [{"action_type": "launch_job_template", "target_id": theirs}]}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "another organization's template is not a valid target"
    );
    assert!(
        err["fields"]["actions"][0]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{err}"
    );
    let mine = command_template(&t, org, "mine", &["/bin/true"], json!({})).await;
    t.post(
        "/api/v2/event_rules/",
        ADMIN,
        json!({"name": "r", "organization": org, "webhook_path": "m", "webhook_key": KEY,
        "actions": [{"action_type": "launch_job_template", "target_id": mine}]}),
    )
    .await;
    assert_eq!(
        t.delete(&format!("/api/v2/job_templates/{mine}/"), ADMIN)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let body = b"{}";
    let response = t
        .client
        .post(format!("{}/api/v2/eda_webhooks/m/", t.base))
        .header("content-type", "application/json")
        .header(
            "x-forge-signature",
            format!(
                "sha256={}",
                hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
            ),
        )
        .body(&body[..])
        .send()
        .await
        .unwrap();
    let id = response.json::<Value>().await.unwrap()["event_log_id"]
        .as_u64()
        .unwrap();
    let log = wait_status(&t, &format!("/api/v2/event_logs/{id}/"), "action_failed").await;
    assert_eq!(log["actions_triggered"][0]["status"], "failed");
    assert!(
        log["actions_triggered"][0]["error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    t.shutdown().await;
}

#[test]
fn a_job_running_during_a_crash_ends_in_error_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let post = |path: &str, body: Value| -> Value {
        client
            .post(format!("{}{path}", server.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let org = post("/api/v2/organizations/", json!({"name": "crash"}));
    let template = post(
        "/api/v2/job_templates/",
        json!({"name": "long", "organization": org["id"], "kind": "command", "argv": ["/bin/sleep", "60"]}),
    );
    let job = post(
        &format!("/api/v2/job_templates/{}/launch/", template["id"]),
        json!({}),
    );
    let path = format!("/api/v2/jobs/{}/", job["id"]);
    for _ in 0..500 {
        let status: Value = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if status["status"] == "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    let server = ServerProcess::spawn(dir.path(), &[]);
    let mut last = Value::Null;
    for _ in 0..500 {
        last = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if last["status"] != "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(last["status"], "error", "{last}");
    assert!(
        last["job_explanation"]
            .as_str()
            .unwrap()
            .contains("server stopped"),
        "{last}"
    );
}

/// The whole chain: a signed webhook fires a rule, the rule launches a job, the job's lifecycle
/// reaches outbound endpoints, filtered by CEL over the envelope.
#[tokio::test]
async fn job_and_workflow_lifecycle_events_reach_outbound_endpoints() {
    use warp::Filter;
    let received = Arc::new(Mutex::new(Vec::<(String, Value)>::new()));
    let sink = received.clone();
    let route = warp::post()
        .and(warp::path::full())
        .and(warp::body::json())
        .map(move |path: warp::path::FullPath, body: Value| {
            sink.lock().unwrap().push((path.as_str().to_owned(), body));
            warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT)
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let t = server().await;
    let org = t.create_org("acme").await;
    let failing = command_template(&t, org, "fails", &["/bin/sh", "-c", "exit 3"], json!({})).await;
    let ok = command_template(&t, org, "ok", &["/bin/true"], json!({})).await;
    let (_, wf) = t
        .post(
            "/api/v2/workflow_job_templates/",
            ADMIN,
            json!({"name": "pipeline", "organization": org, "nodes": [{"job_template": ok}]}),
        )
        .await;
    let wf_id = wf["id"].as_u64().unwrap();
    let endpoint = |name: &str, path: &str, events: Value, filter: Option<String>| {
        let mut body = json!({"name": name, "organization": org, "url": format!("{base}{path}"), "events": events});
        if let Some(filter) = filter {
            body["filter"] = json!(filter);
        }
        body
    };
    for body in [
        endpoint(
            "job failures",
            "/failures",
            json!(["job.failed"]),
            Some("event.payload.elapsed >= 0.0 && event.payload.exit_code == 3".into()),
        ),
        // Ordered, so the receiver sees the workflow's events in journal order.
        {
            let mut body = endpoint(
                "this workflow",
                "/workflow",
                json!(["workflow.*"]),
                Some(format!("event.resource_id == {wf_id}")),
            );
            body["ordered"] = json!(true);
            body
        },
        endpoint(
            "other workflow",
            "/other",
            json!(["workflow.*"]),
            Some(format!("event.resource_id == {}", wf_id + 100)),
        ),
    ] {
        let (status, created) = t.post("/api/v2/outbound_webhooks/", ADMIN, body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    let (status, _) = t
        .post("/api/v2/event_rules/", ADMIN, json!({"name": "r", "organization": org, "webhook_path": "chain", "webhook_key": KEY,
            "actions": [{"action_type": "launch_job_template", "target_id": failing}, {"action_type": "launch_workflow", "target_id": wf_id}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let body = br#"{"event_type": "deploy.requested"}"#;
    let response = t
        .client
        .post(format!("{}/api/v2/eda_webhooks/chain/", t.base))
        .header("content-type", "application/json")
        .header(
            "x-forge-signature",
            format!(
                "sha256={}",
                hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
            ),
        )
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut events = Vec::new();
    for _ in 0..500 {
        events = received.lock().unwrap().clone();
        let workflow_done = events
            .iter()
            .any(|(p, b)| p == "/workflow" && b["event"] == "workflow.succeeded");
        if workflow_done && events.iter().any(|(p, _)| p == "/failures") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failure = events
        .iter()
        .find(|(p, _)| p == "/failures")
        .map(|(_, b)| b.clone())
        .expect("job.failed delivered");
    assert_eq!(failure["event"], "job.failed");
    assert_eq!(
        (
            failure["resource_type"].as_str(),
            failure["resource_id"].as_u64()
        ),
        (Some("job_template"), Some(failing))
    );
    assert_eq!(failure["payload"]["exit_code"], 3);
    assert_eq!(failure["payload"]["status"], "failed");
    let workflow: Vec<&str> = events
        .iter()
        .filter(|(p, _)| p == "/workflow")
        .map(|(_, b)| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        workflow,
        [
            "workflow.started",
            "workflow.node_completed",
            "workflow.succeeded"
        ],
        "{events:?}"
    );
    assert!(
        !events.iter().any(|(p, _)| p == "/other"),
        "the per-workflow filter holds"
    );
    let (_, types) = t.get("/api/v2/event_types/", ADMIN).await;
    let names: Vec<&str> = types["results"]
        .as_array()
        .or(types.as_array())
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in [
        "job.started",
        "job.succeeded",
        "job.failed",
        "job.canceled",
        "job.duration_exceeded",
        "workflow.node_completed",
        "workflow.duration_exceeded",
    ] {
        assert!(
            names.contains(&name),
            "{name} missing from event_types: {names:?}"
        );
    }
    t.shutdown().await;
}

/// A notification whose receiver fails is retried under the outbound retry policy, and a
/// pending retry survives a restart.
#[tokio::test]
async fn notifications_are_retried_and_resume_after_a_restart() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use warp::Filter;
    let calls = Arc::new(AtomicUsize::new(0));
    let fail_until = Arc::new(AtomicUsize::new(2));
    let (c, f) = (calls.clone(), fail_until.clone());
    let route = warp::post().map(move || {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        let status = if n <= f.load(Ordering::SeqCst) {
            503
        } else {
            200
        };
        warp::reply::with_status(
            warp::reply(),
            warp::http::StatusCode::from_u16(status).unwrap(),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/n", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let t = server().await;
    let org = t.create_org("acme").await;
    let (_, template) = t
        .post(
            "/api/v2/notification_templates/",
            ADMIN,
            json!({"name": "flaky", "organization": org, "notification_type": "webhook",
            "notification_configuration": {"url": url}}),
        )
        .await;
    let id = template["id"].as_u64().unwrap();
    t.post(
        "/api/v2/event_rules/",
        ADMIN,
        json!({"name": "n", "organization": org, "webhook_path": "flaky", "webhook_key": KEY,
        "actions": [{"action_type": "send_notification", "target_id": id}]}),
    )
    .await;
    let fire = |t: &TestServer, delivery: &'static str| {
        // Each firing is a distinct webhook (a repeated body would be refused as a replay).
        let body =
            format!(r#"{{"event_type": "disk.full", "delivery": "{delivery}"}}"#).into_bytes();
        let body = &body[..];
        t.client
            .post(format!("{}/api/v2/eda_webhooks/flaky/", t.base))
            .header("content-type", "application/json")
            .header(
                "x-forge-signature",
                format!(
                    "sha256={}",
                    hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
                ),
            )
            .header("x-forge-delivery", delivery)
            .body(body.to_vec())
            .send()
    };
    assert_eq!(
        fire(&t, "f-1").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let path = format!("/api/v2/notification_templates/{id}/");
    let mut attempts = Vec::new();
    for _ in 0..500 {
        attempts = t.get(&path, ADMIN).await.1["recent_notifications"]
            .as_array()
            .unwrap()
            .clone();
        if attempts.first().is_some_and(|a| a["delivered"] == true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        attempts.len(),
        3,
        "two failures, then delivered: {attempts:?}"
    );
    assert_eq!(attempts[0]["attempt"], 3);
    assert_eq!(attempts[2]["response_status"], 503);
    assert!(
        attempts[2]["next_attempt_at"].is_string(),
        "a failed attempt names its retry time"
    );

    // A retry pending at shutdown resumes after the restart.
    calls.store(0, Ordering::SeqCst);
    fail_until.store(1, Ordering::SeqCst);
    assert_eq!(
        fire(&t, "f-2").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    for _ in 0..500 {
        if calls.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = t.restart().await;
    for _ in 0..500 {
        if calls.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the pending retry was sent after the restart"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn a_slow_workflow_publishes_duration_exceeded_once() {
    let t = server().await;
    let org = t.create_org("acme").await;
    let slow = command_template(&t, org, "slow", &["/bin/sleep", "2"], json!({})).await;
    let (status, wf) = t
        .post(
            "/api/v2/workflow_job_templates/",
            ADMIN,
            json!({"name": "slow", "organization": org, "alert_after_seconds": 1,
            "nodes": [{"job_template": slow}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{wf}");
    let (_, run) = t
        .post(
            &format!("/api/v2/workflow_job_templates/{}/launch/", wf["id"]),
            ADMIN,
            json!({}),
        )
        .await;
    let done = finished(&t, &format!("/api/v2/workflow_jobs/{}/", run["id"])).await;
    assert_eq!(done["status"], "successful");
    let types: Vec<String> = t
        .app()
        .journal
        .read_stream(&format!("workflow_job-{}", run["id"]), 0, 100)
        .unwrap()
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "workflow.duration_exceeded")
            .count(),
        1,
        "{types:?}"
    );
    let alert = types
        .iter()
        .position(|t| t == "workflow.duration_exceeded")
        .unwrap();
    let finish = types.iter().position(|t| t == "workflow.finished").unwrap();
    assert!(
        alert < finish,
        "the alert came while it still ran: {types:?}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_variables_environment_and_headers_are_sealed_masked_and_usable() {
    use warp::Filter;
    let received = Arc::new(Mutex::new(Vec::<warp::http::HeaderMap>::new()));
    let sink = received.clone();
    let route = warp::post()
        .and(warp::header::headers_cloned())
        .map(move |h| {
            sink.lock().unwrap().push(h);
            warp::reply()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let t = server().await;
    let org = t.create_org("acme").await;
    let (_, member) = t.create_token(org, "member").await;
    // The job checks it sees every secret in clear, without printing any (split quotes keep the
    // secrets themselves out of its command line, which is stored).
    let check = r#"F=$HOOKFORGE_EXTRA_VARS_FILE; [ "$DEPLOY_PASSWORD" = "env-secret-""4411" ] && grep -q "vars-secret-""5522" "$F" && echo template-secrets-seen; grep -q "launch-secret-""7744" "$F" && echo launch-secret-seen; grep -q "action-secret-""6633" "$F" && echo action-secret-seen; true"#;
    let template = command_template(
        &t,
        org,
        "deploy",
        &["/bin/sh", "-c", check],
        json!({"env": {"DEPLOY_PASSWORD": "env-secret-4411", "REGION": "eu"},
               "extra_vars": {"db": {"password": "vars-secret-5522"}, "user": "bob"}}),
    )
    .await;
    let (status, notification) = t
        .post("/api/v2/notification_templates/", ADMIN, json!({"name": "ops", "organization": org, "notification_type": "webhook",
            "notification_configuration": {"url": url, "headers": {"Authorization": "Bearer header-secret-8855"}}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{notification}");
    let rule = t
        .create_rule(json!({"name": "deploy", "organization": org, "webhook_path": "secrets", "webhook_key": KEY,
            "actions": [{"action_type": "launch_job_template", "target_id": template, "extra_vars": {"api_token": "action-secret-6633"}}]}))
        .await;

    for token in [ADMIN, member.as_str()] {
        let (_, shown) = t
            .get(&format!("/api/v2/job_templates/{template}/"), token)
            .await;
        assert_eq!(
            shown["env"],
            json!({"DEPLOY_PASSWORD": "$encrypted$", "REGION": "eu"})
        );
        assert_eq!(
            shown["extra_vars"],
            json!({"db": {"password": "$encrypted$"}, "user": "bob"})
        );
        let (_, shown) = t
            .get(&format!("/api/v2/event_rules/{}/", rule["id"]), token)
            .await;
        assert_eq!(
            shown["actions"][0]["extra_vars"],
            json!({"api_token": "$encrypted$"})
        );
        let (_, shown) = t
            .get(
                &format!("/api/v2/notification_templates/{}/", notification["id"]),
                token,
            )
            .await;
        let header = shown["notification_configuration"]["headers"]["Authorization"]
            .as_str()
            .unwrap();
        assert!(!header.contains("header-secret"), "{header}");
    }
    // Saving back what was read keeps the secrets.
    let (status, _) = t
        .patch(
            &format!("/api/v2/job_templates/{template}/"),
            ADMIN,
            json!({"env": {"DEPLOY_PASSWORD": "$encrypted$", "REGION": "us"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The launched job sees them all in clear; its own view masks them.
    let job = launch(&t, template, json!({"deploy_key": "launch-secret-7744"})).await;
    let job = finished(&t, &format!("/api/v2/jobs/{job}/")).await;
    assert_eq!(job["status"], "successful", "{job}");
    let stdout = job["result_stdout"].as_str().unwrap();
    assert!(
        stdout.contains("template-secrets-seen") && stdout.contains("launch-secret-seen"),
        "{job}"
    );
    assert_eq!(job["extra_vars"]["deploy_key"], "$encrypted$");
    // A rule firing carries the action's secret to the job, sealed all the way.
    let body = br#"{"event_type": "deploy"}"#;
    let signature = format!(
        "sha256={}",
        hookforge::signing::hmac_sha256_hex(KEY.as_bytes(), body)
    );
    let (status, reply) = t
        .deliver(
            "secrets",
            &[
                ("content-type", "application/json"),
                ("x-forge-signature", &signature),
            ],
            body.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let log = t
        .decided_event_log(reply["event_log_id"].as_u64().unwrap())
        .await;
    let fired = wait_status(
        &t,
        &format!("/api/v2/event_logs/{}/", log["id"]),
        "action_fired",
    )
    .await;
    let job = fired["job_id"].as_u64().unwrap();
    let job = finished(&t, &format!("/api/v2/jobs/{job}/")).await;
    assert_eq!(job["extra_vars"]["api_token"], "$encrypted$");
    let stdout = job["result_stdout"].as_str().unwrap();
    assert!(
        stdout.contains("template-secrets-seen") && stdout.contains("action-secret-seen"),
        "{job}"
    );

    // The notification goes out with its header in clear.
    let (status, tested) = t
        .post(
            &format!(
                "/api/v2/notification_templates/{}/test/",
                notification["id"]
            ),
            ADMIN,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, tested["delivered"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{tested}"
    );
    assert_eq!(
        received.lock().unwrap()[0]["authorization"],
        "Bearer header-secret-8855"
    );

    // And no file of the data directory holds any of them.
    let dir = t.dir.clone();
    let _kept = t.shutdown().await;
    for secret in [
        "env-secret-4411",
        "vars-secret-5522",
        "action-secret-6633",
        "launch-secret-7744",
        "header-secret-8855",
    ] {
        assert_eq!(
            common::files_containing(&dir, secret),
            Vec::<std::path::PathBuf>::new(),
            "{secret} at rest"
        );
    }
}
