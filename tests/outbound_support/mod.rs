//! Shared harness of the outbound tests: the real server over loopback, an admin client, and a
//! receiver that records every request it gets and answers as each test scripts it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookforge::config::Config;
use hookforge::server::Server;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// When the receiver finished answering it.
    pub done: Instant,
    /// How many requests with this `webhook-id` arrived before this one, plus one.
    pub nth: usize,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            body: String::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.into();
        self
    }
}

pub type Script = Arc<dyn Fn(&str, usize) -> Reply + Send + Sync>;

/// A loopback HTTP receiver; `script(path, nth)` decides each answer.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    in_flight: Arc<Mutex<(usize, usize)>>,
}

impl Receiver {
    pub async fn start(script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver {
            addr,
            log: Arc::default(),
            script: Arc::new(Mutex::new(Arc::new(script))),
            seen: Arc::default(),
            in_flight: Arc::default(),
        };
        let handle = receiver.clone();
        let filter = warp::any()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |path: warp::path::FullPath, headers: HeaderMap, body: Bytes| {
                    let r = handle.clone();
                    async move { r.answer(path.as_str().to_owned(), headers, body).await }
                },
            );
        tokio::spawn(warp::serve(filter).incoming(listener).run());
        receiver
    }

    async fn answer(&self, path: String, headers: HeaderMap, body: Bytes) -> warp::reply::Response {
        let at = Instant::now();
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let nth = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(format!("{path}#{id}")).or_default();
            *n += 1;
            *n
        };
        {
            let mut f = self.in_flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        let script = self.script.lock().unwrap().clone();
        let reply = script(&path, nth);
        // Logged on arrival: a sender that dies while we answer still counts as having sent.
        let index = {
            let mut log = self.log.lock().unwrap();
            log.push(Received {
                path,
                headers,
                body,
                at,
                done: at,
                nth,
            });
            log.len() - 1
        };
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        self.in_flight.lock().unwrap().0 -= 1;
        self.log.lock().unwrap()[index].done = Instant::now();
        let mut response = warp::reply::Response::new(reply.body.into());
        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
        for (name, value) in reply.headers {
            response.headers_mut().insert(
                warp::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                warp::http::HeaderValue::from_str(&value).unwrap(),
            );
        }
        response
    }

    pub fn set_script(&self, script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Most requests that were being answered at the same moment.
    pub fn max_concurrency(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }

    pub async fn wait_for(&self, path: &str, count: usize, timeout: Duration) -> Vec<Received> {
        wait_until(timeout, || self.received_at(path).len() >= count).await;
        self.received_at(path)
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes (then panics).
pub async fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < timeout,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn config(dir: &std::path::Path, allow_private: bool) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        admin_token: Some(ADMIN_TOKEN.into()),
        log_level: "warn".into(),
        ..Config::default()
    };
    config.outbound.allow_private_networks = allow_private;
    config
}

/// The server under test with an HTTP client.
pub struct Harness {
    pub server: Server,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(allow_private: bool) -> Harness {
        Self::start_with(allow_private, |_| {}).await
    }

    pub async fn start_with(allow_private: bool, tweak: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), allow_private);
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(config, listener).await.unwrap();
        Harness {
            server,
            client: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, ADMIN_TOKEN, None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, ADMIN_TOKEN, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, ADMIN_TOKEN, Some(body))
            .await
    }

    pub async fn organization(&self, name: &str) -> u64 {
        let (status, body) = self
            .post("/api/v2/organizations/", json!({"name": name}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_u64().unwrap()
    }

    pub async fn token(&self, organization: u64, role: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v2/tokens/",
                json!({"organization": organization, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Creates an endpoint (defaults: every event, short retries) and returns its body.
    pub async fn endpoint(&self, organization: u64, url: &str, extra: Value) -> Value {
        let mut body = json!({
            "name": "test endpoint",
            "organization": organization,
            "url": url,
            "events": ["*"],
            "retry": {"max_attempts": 5, "initial_delay_seconds": 0.1, "max_delay_seconds": 0.5},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, created) = self.post("/api/v2/outbound_webhooks/", body).await;
        assert_eq!(status, 201, "{created}");
        created
    }

    pub async fn publish(&self, organization: u64, event_type: &str, payload: Value) -> Value {
        let (status, body) = self
            .post(
                "/api/v2/events/",
                json!({"organization": organization, "event_type": event_type, "payload": payload}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body
    }

    /// Every delivery of `endpoint`, newest first (all pages).
    pub async fn deliveries(&self, endpoint: u64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let (status, body) = self
                .get(&format!(
                    "/api/v2/outbound_webhooks/{endpoint}/deliveries/?page_size=200&page={page}"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            all.extend(body["results"].as_array().unwrap().iter().cloned());
            if body["next"].is_null() {
                return all;
            }
            page += 1;
        }
    }

    /// Waits until `endpoint` has `count` deliveries, none pending.
    pub async fn settle(&self, endpoint: u64, count: usize, timeout: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let deliveries = self.deliveries(endpoint).await;
            if deliveries.len() >= count && deliveries.iter().all(|d| d["status"] != "pending") {
                return deliveries;
            }
            assert!(
                started.elapsed() < timeout,
                "deliveries of endpoint {endpoint} did not settle: {deliveries:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the endpoint's newest delivery has failed once and awaits its retry.
    pub async fn settle_pending(&self, endpoint: u64) -> Value {
        let started = Instant::now();
        loop {
            let deliveries = self.deliveries(endpoint).await;
            if let Some(d) = deliveries.first()
                && d["attempt_count"] == 1
                && d["next_retry_at"].is_string()
            {
                return d.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no pending retry: {deliveries:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}
