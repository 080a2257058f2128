//! The real binary: durability across kill -9, graceful shutdown, config errors, CLI tools.

mod common;

use common::{ADMIN, ServerProcess, hookforge};
use serde_json::json;

#[test]
fn acknowledged_api_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::blocking::Client::new();
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let mut server = ServerProcess::spawn(dir.path(), &[]);
        let base = server.base.clone();
        let writer = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut names = Vec::new();
            for i in 0.. {
                let name = format!("round-{round}-org-{i}");
                let response = client
                    .post(format!("{base}/api/v2/organizations/"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"name": name}))
                    .send();
                match response {
                    Ok(r) if r.status() == 201 => names.push(name),
                    _ => break,
                }
            }
            names
        });
        std::thread::sleep(std::time::Duration::from_millis(400 + 200 * round));
        server.kill9();
        acknowledged.extend(writer.join().unwrap());
    }
    assert!(
        acknowledged.len() > 10,
        "too few writes: {}",
        acknowledged.len()
    );
    let server = ServerProcess::spawn(dir.path(), &[]);
    let mut names = std::collections::HashSet::new();
    let mut page = 1;
    loop {
        let body: serde_json::Value = client
            .get(format!(
                "{}/api/v2/organizations/?page_size=200&page={page}",
                server.base
            ))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        for org in body["results"].as_array().unwrap() {
            names.insert(org["name"].as_str().unwrap().to_owned());
        }
        if body["next"].is_null() {
            break;
        }
        page += 1;
    }
    for name in &acknowledged {
        assert!(
            names.contains(name),
            "acknowledged organization {name} was lost"
        );
    }
    drop(server);
    let (code, out, err) = hookforge(&[
        "journal",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn sigterm_shuts_down_cleanly_and_cli_tools_read_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let response = client
        .post(format!("{}/api/v2/organizations/", server.base))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "cli-visible"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);

    // While the server runs, the read-only tools refuse with a clear message.
    let (code, _, err) = hookforge(&["journal", "verify", "--data-dir", data]);
    assert_eq!(code, 2);
    assert!(err.contains("running hookforge server"), "{err}");

    let status = server.terminate();
    assert!(status.success(), "exit status {status}");

    let (code, out, err) = hookforge(&["journal", "verify", "--data-dir", data]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("journal intact: 1 records verified"), "{out}");

    let (code, out, _) = hookforge(&[
        "journal",
        "replay",
        "--data-dir",
        data,
        "--type",
        "organization.created",
    ]);
    assert_eq!(code, 0);
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["data"]["name"], "cli-visible");
    assert_eq!(line["actor"], "admin");
    assert_eq!(line["stream"], "organization-1");
    let (_, none, _) = hookforge(&[
        "journal",
        "replay",
        "--data-dir",
        data,
        "--category",
        "token",
    ]);
    assert!(none.is_empty());

    let (code, out, _) = hookforge(&["journal", "stats", "--data-dir", data]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (stats["events"].as_u64(), stats["streams"].as_u64()),
        (Some(1), Some(1))
    );

    // Tamper with the segment: verify names the position and exits non-zero.
    let segment = dir.path().join("journal/segments/00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 50;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let (code, out, _) = hookforge(&["journal", "verify", "--data-dir", data]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("journal damaged at position 0"), "{out}");
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[journal]\nsync = \"sometimes\"\n").unwrap();
    let (code, _, err) = hookforge(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("journal.sync"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookforge"))
        .args(["serve", "--data-dir", dir.path().to_str().unwrap()])
        .env("HOOKFORGE_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "maybe")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outbound.allow_private_networks"), "{err}");
    let (code, _, err) = hookforge(&["journal", "verify", "--data-dir", "/nonexistent/dir"]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "hookforge: journal I/O error: no journal at /nonexistent/dir/journal (expected a segments/ directory)",
        "said once, precisely"
    );
}
