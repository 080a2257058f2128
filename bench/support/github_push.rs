//! A realistic ~7 KiB GitHub `push` delivery, in the shape of GitHub's example payload, padded
//! with commits. Shared by the benchmarks.

use serde_json::json;

/// Size the payload is padded to.
pub const TARGET_BYTES: usize = 7 * 1024;

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
pub fn push_payload() -> Vec<u8> {
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
