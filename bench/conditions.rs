//! Conditions micro-benchmark: a rule of 3 CEL conditions on a ~7 KiB GitHub push payload,
//! evaluated from the raw bytes (JSON parse + conversion + evaluation) with hookforge's pruned
//! conversion, against a baseline measured in the same run: parse to `serde_json::Value`, convert
//! it wholesale with cel's serde path, evaluate.
//!
//! Run: `cargo bench --bench conditions` (env: BENCH_ITERATIONS to scale). Target: <= 20 µs/event.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cel::{Context, Env, Program, Value};
use hookforge::conditions::{Json, RuleProgram};
use serde_json::json;

const CONDITIONS: [&str; 3] = [
    r#"event.ref == "refs/heads/main""#,
    r#"event.repository.full_name.startsWith("octo")"#,
    r#"headers["x-github-event"] == "push""#,
];
const TARGET_BYTES: usize = 7 * 1024;
const TARGET_MICROS: f64 = 20.0;

/// The GitHub API URL fields of a repository, as in a push delivery.
const REPO_URLS: [&str; 40] = [
    "html_url",
    "url",
    "forks_url",
    "keys_url",
    "collaborators_url",
    "teams_url",
    "hooks_url",
    "issue_events_url",
    "events_url",
    "assignees_url",
    "branches_url",
    "tags_url",
    "blobs_url",
    "git_tags_url",
    "git_refs_url",
    "trees_url",
    "statuses_url",
    "languages_url",
    "stargazers_url",
    "contributors_url",
    "subscribers_url",
    "subscription_url",
    "commits_url",
    "git_commits_url",
    "comments_url",
    "issue_comment_url",
    "contents_url",
    "compare_url",
    "merges_url",
    "archive_url",
    "downloads_url",
    "issues_url",
    "pulls_url",
    "milestones_url",
    "notifications_url",
    "labels_url",
    "releases_url",
    "deployments_url",
    "git_url",
    "ssh_url",
];

/// The URL fields of a user (`owner`, `sender`).
const USER_URLS: [&str; 13] = [
    "avatar_url",
    "url",
    "html_url",
    "followers_url",
    "following_url",
    "gists_url",
    "starred_url",
    "subscriptions_url",
    "organizations_url",
    "repos_url",
    "events_url",
    "received_events_url",
    "gravatar_id",
];

fn user(login: &str) -> serde_json::Value {
    let mut user = json!({"login": login, "id": 21031067, "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "type": "User", "site_admin": false});
    for field in USER_URLS {
        user[field] = json!(format!("https://api.github.com/users/{login}/{field}"));
    }
    user
}

fn commit(i: usize) -> serde_json::Value {
    json!({
        "id": format!("{:040x}", 0x6113728f27ae82c7_u64 as usize * (i + 1)),
        "tree_id": format!("{:040x}", 0xf9e96e0adf246_u64 as usize + i),
        "distinct": true,
        "message": format!("Fix webhook retry edge case #{i}\n\nCloses #{}", 100 + i),
        "timestamp": "2019-05-15T15:20:30-05:00",
        "url": format!("https://github.com/octo-org/hello-world/commit/{i:040x}"),
        "author": {"name": "Monalisa Octocat", "email": "octocat@github.com", "username": "octocat"},
        "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
        "added": [], "removed": [], "modified": ["README.md", format!("src/file{i}.rs")]
    })
}

/// A push delivery in the shape of GitHub's `push` example, padded with commits to ~7 KiB.
fn push_payload() -> Vec<u8> {
    let mut repository = json!({
        "id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": "hello-world",
        "full_name": "octo-org/hello-world", "private": false, "owner": user("octo-org"),
        "description": null, "fork": false, "created_at": 1557933565, "updated_at": "2019-05-15T15:20:41Z",
        "pushed_at": 1557933657, "homepage": null, "size": 0, "stargazers_count": 0,
        "watchers_count": 0, "language": "Rust", "has_issues": true, "forks_count": 0,
        "archived": false, "open_issues_count": 0, "license": null, "default_branch": "main",
        "topics": ["webhooks", "rust"], "visibility": "public"
    });
    for field in REPO_URLS {
        repository[field] = json!(format!(
            "https://api.github.com/repos/octo-org/hello-world/{field}"
        ));
    }
    let mut payload = json!({
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": "https://github.com/octo-org/hello-world/compare/6113728f27ae...0d1a26e67d8f",
        "commits": [],
        "head_commit": commit(0),
        "repository": repository,
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "sender": user("octocat"),
    });
    let mut i = 0;
    while serde_json::to_vec(&payload).unwrap().len() < TARGET_BYTES {
        payload["commits"].as_array_mut().unwrap().push(commit(i));
        i += 1;
    }
    serde_json::to_vec(&payload).unwrap()
}

const HEADERS: [(&str, &str); 9] = [
    ("Host", "hookforge.example.com"),
    ("User-Agent", "GitHub-Hookshot/044aadd"),
    ("Content-Type", "application/json"),
    ("Content-Length", "7250"),
    ("X-GitHub-Event", "push"),
    ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ("X-GitHub-Hook-ID", "292430182"),
    (
        "X-Hub-Signature-256",
        "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c",
    ),
    ("Accept", "*/*"),
];

/// The baseline: what binding the payload costs without pruning, through cel's own API.
struct Baseline {
    env: Arc<Env>,
    programs: Vec<Program>,
}

impl Baseline {
    fn new() -> Self {
        let env = Arc::new(Env::stdlib());
        let programs = CONDITIONS.iter().map(|c| env.compile(c).unwrap()).collect();
        Baseline { env, programs }
    }

    fn evaluate(&self, bytes: &[u8]) -> bool {
        let parsed: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let event = cel::to_value(&parsed).unwrap();
        let headers = HEADERS
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>();
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_from_value("event", event);
        context.add_variable_from_value("headers", headers);
        self.programs
            .iter()
            .all(|p| p.execute(&context) == Ok(Value::Bool(true)))
    }
}

/// Runs `f` `iterations` times, 5 rounds, and returns the median time per call.
fn measure(iterations: usize, mut f: impl FnMut() -> bool) -> Duration {
    for _ in 0..iterations / 10 {
        assert!(black_box(f()));
    }
    let mut rounds = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                assert!(black_box(f()));
            }
            start.elapsed() / iterations as u32
        })
        .collect::<Vec<_>>();
    rounds.sort();
    rounds[2]
}

fn report(name: &str, per_event: Duration) {
    let micros = per_event.as_secs_f64() * 1e6;
    println!(
        "{name:<48} {micros:>8.2} µs/event {:>12.0} events/s",
        1.0 / per_event.as_secs_f64()
    );
}

fn main() {
    let iterations = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let payload = push_payload();
    println!(
        "rule of {} conditions on a {} byte push payload, {} iterations x 5 rounds (median)",
        CONDITIONS.len(),
        payload.len(),
        iterations
    );

    let rule = RuleProgram::compile(&CONDITIONS, None).unwrap();
    let pruned = measure(iterations, || {
        rule.evaluate(Json::Bytes(black_box(&payload)), HEADERS)
            .matched()
    });

    let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let pruned_parsed = measure(iterations, || {
        rule.evaluate(Json::Value(black_box(&parsed)), HEADERS)
            .matched()
    });
    let parse_only = measure(iterations, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(&payload)).is_ok())
    });

    let baseline = Baseline::new();
    let full = measure(iterations / 4, || baseline.evaluate(black_box(&payload)));

    report("hookforge, bytes -> pruned CEL (parse+eval)", pruned);
    report(
        "hookforge, parsed Value -> pruned CEL (eval)",
        pruned_parsed,
    );
    report("serde_json::Value parse alone (reference)", parse_only);
    report("baseline: Value parse + cel::to_value + eval", full);
    println!(
        "speed-up over baseline: {:.1}x",
        full.as_secs_f64() / pruned.as_secs_f64()
    );
    let micros = pruned.as_secs_f64() * 1e6;
    let verdict = if micros <= TARGET_MICROS {
        "met"
    } else {
        "MISSED"
    };
    println!("target <= {TARGET_MICROS} µs/event incl. parse: {verdict} ({micros:.2} µs)");
}
