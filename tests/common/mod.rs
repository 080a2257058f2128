//! Shared test harness: a real server on 127.0.0.1:0 (in-process, or the real binary), and a
//! small JSON client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookforge::config::Config;
use hookforge::server::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The bootstrap admin token every test server uses.
pub const ADMIN: &str = "test-admin-token-0123456789";

/// A configuration for a test server in `dir`.
pub fn config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(ADMIN.into()),
        ..Config::default()
    };
    config.http.shutdown_grace_seconds = 5;
    config
}

/// An in-process server with a JSON client.
pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server on a fresh data dir.
    pub async fn start() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let mut server = Self::start_with(config(temp.path())).await;
        server._temp = Some(temp);
        server
    }

    /// Starts a server with `config` (its data dir is kept by the caller).
    pub async fn start_with(config: Config) -> Self {
        let dir = config.data_dir.clone();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let server = Server::start(config, listener)
            .await
            .expect("server starts");
        let base = format!("http://{}", server.addr);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let this = Self {
            server: Some(server),
            base,
            client,
            dir,
            _temp: None,
        };
        this.wait_ready().await;
        this
    }

    /// Shuts down and starts again on the same data dir (same config otherwise).
    pub async fn restart(mut self) -> Self {
        let server = self.server.take().unwrap();
        let mut config = server.app.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        server.shutdown().await;
        let mut next = Self::start_with(config).await;
        next._temp = self._temp.take();
        next
    }

    pub async fn shutdown(mut self) -> Option<tempfile::TempDir> {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self._temp.take()
    }

    /// Keeps `temp` alive as long as the server (for servers started with `start_with`).
    pub fn keep(&mut self, temp: tempfile::TempDir) {
        self._temp = Some(temp);
    }

    pub fn app(&self) -> &hookforge::app::App {
        &self.server.as_ref().unwrap().app
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server never became ready");
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates an organization and returns its id.
    pub async fn create_org(&self, name: &str) -> u64 {
        let (status, body) = self
            .post("/api/v2/organizations/", ADMIN, json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_u64().unwrap()
    }

    /// Issues a token in `org` with `role` and returns `(id, token)`.
    pub async fn create_token(&self, org: u64, role: &str) -> (u64, String) {
        let (status, body) = self
            .post(
                "/api/v2/tokens/",
                ADMIN,
                json!({"organization": org, "role": role, "description": "test"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_u64().unwrap(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }
}

/// The real binary running as a child process.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts `hookforge serve` on `data_dir` with extra environment, waiting for its address.
    pub fn spawn(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookforge"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("HOOKFORGE_ADMIN_TOKEN", ADMIN)
            .env("HOOKFORGE_LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("hookforge binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("hookforge listening on ")
            .unwrap_or_else(|| panic!("unexpected: {line}"))
            .to_owned();
        // No readiness wait here on purpose: the server itself holds API requests until its
        // read models have caught up, and the kill -9 test relies on that.
        Self { child, base }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `hookforge` binary with `args` and returns (exit code, stdout, stderr).
pub fn hookforge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookforge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The bytes of `fixtures/<path>` (real provider payloads; see `fixtures/SOURCES.md`).
pub fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
}

/// Polls `check` every 20 ms until it returns `Some`, failing with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestServer {
    /// Creates an event rule from `body` and returns the create response (which carries the
    /// webhook key in clear, once).
    pub async fn create_rule(&self, body: Value) -> Value {
        let (status, rule) = self.post("/api/v2/event_rules/", ADMIN, body).await;
        assert_eq!(status, StatusCode::CREATED, "{rule}");
        rule
    }

    /// POSTs `body` to the ingress of `webhook_path` with exactly `headers` (no others but what
    /// HTTP itself needs) and returns the status and JSON body.
    pub async fn deliver(
        &self,
        webhook_path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}/api/v2/eda_webhooks/{webhook_path}/", self.base))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// The event log `id` once its rule has decided it (status no longer `received`).
    pub async fn decided_event_log(&self, id: u64) -> Value {
        eventually(
            Duration::from_secs(10),
            &format!("event log {id} to be decided"),
            || async move {
                let (status, log) = self.get(&format!("/api/v2/event_logs/{id}/"), ADMIN).await;
                (status == StatusCode::OK && log["status"] != "received").then_some(log)
            },
        )
        .await
    }

    /// How many event logs exist (all rules, all statuses).
    pub async fn event_log_count(&self) -> u64 {
        let (status, page) = self.get("/api/v2/event_logs/?page_size=1", ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["count"].as_u64().unwrap()
    }

    /// The event logs matching `query` (e.g. `event_rule=3&status=matched`), newest first.
    pub async fn event_logs(&self, query: &str) -> Vec<Value> {
        let (status, page) = self
            .get(&format!("/api/v2/event_logs/?page_size=200&{query}"), ADMIN)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["results"].as_array().unwrap().clone()
    }
}

/// Runs the `hookforge` binary with `args` and `stdin`, returning (exit code, stdout, stderr).
pub fn hookforge_with_stdin(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookforge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The `webhook.received` event journaled as event log `id`, read straight from the journal
/// (the exact bytes and headers hookforge kept, not the API's rendering of them).
/// The journaled webhook at `id`, its content opened with the organization's data key (the
/// record holds it sealed: checked here, for every test that reads one back).
pub fn journaled_webhook(t: &TestServer, id: u64) -> hookforge::domain::webhook::OpenedWebhook {
    use hookforge::codec::EventBody as _;
    use hookforge::domain::Event;
    use hookforge::domain::webhook::{OpenedWebhook, WebhookReceived};
    let record = t
        .app()
        .journal
        .read_all(id, 1)
        .unwrap()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no journal record at position {id}"));
    assert_eq!(record.position, id);
    let Some(Event::WebhookReceived(mut received)) = Event::decode(&record).unwrap() else {
        panic!(
            "position {id} holds {}, not webhook.received",
            record.event_type
        );
    };
    assert!(received.content.clear().is_none(), "the content is sealed");
    let sealed = std::mem::take(&mut received.content);
    let content = t
        .app()
        .data_keys
        .open(received.organization, WebhookReceived::TYPE, sealed)
        .unwrap();
    OpenedWebhook { received, content }
}

/// Files under `dir` (recursively) whose bytes contain `secret`.
pub fn files_containing(dir: &Path, secret: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, secret));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
        {
            hits.push(path);
        }
    }
    hits
}
