//! A lean HTTP/1.1 load generator: N keep-alive connections, each sending its next request as
//! soon as the previous answer arrives, for a fixed time. Shared by the benchmarks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

/// What a run measured.
pub struct LoadReport {
    /// Requests answered, by status code.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Latency of every answered request, sorted.
    pub latencies: Vec<Duration>,
    /// Measured time.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Answers with `status` per second.
    pub fn rate(&self, status: u16) -> f64 {
        self.statuses.get(&status).copied().unwrap_or(0) as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile of latency (0..=1).
    pub fn quantile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies[((self.latencies.len() - 1) as f64 * p).round() as usize]
    }
}

/// Sends requests built by `make(n)` (n counts up across connections) to `addr` over
/// `connections` keep-alive connections for `duration`.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    make: Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>,
) -> LoadReport {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let make = make.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            let mut statuses = std::collections::BTreeMap::new();
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let request = make(counter.fetch_add(1, Ordering::Relaxed));
                let sent = Instant::now();
                let Ok(response) = sender.send_request(request).await else {
                    break;
                };
                let status = response.status().as_u16();
                let _ = response.into_body().collect().await;
                latencies.push(sent.elapsed());
                *statuses.entry(status).or_insert(0u64) += 1;
            }
            (statuses, latencies)
        }));
    }
    let mut report = LoadReport {
        statuses: Default::default(),
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (statuses, latencies) = task.await.expect("load task");
        for (status, n) in statuses {
            *report.statuses.entry(status).or_insert(0) += n;
        }
        report.latencies.extend(latencies);
    }
    report.elapsed = start.elapsed();
    report.latencies.sort_unstable();
    report
}
