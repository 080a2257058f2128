//! The real `hookforge serve` binary as a child process, so a benchmark measures the server's
//! memory alone and its start-up as an operator sees it (time to the first 200 of `/readyz`).

// Shared by several benches, each of which uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed if the benchmark fails before stopping it.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The address the server listens on.
    pub addr: std::net::SocketAddr,
    /// From spawning the binary to the first 200 of `/readyz`.
    pub ready_in: Duration,
}

impl ServerProcess {
    /// Starts the binary on `dir` with the admin token `admin` and the extra environment `env`,
    /// and waits until it is ready.
    pub async fn start(dir: &Path, admin: &str, env: &[(&str, &str)]) -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_hookforge"))
            .args(["serve", "--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(dir)
            .env("HOOKFORGE_ADMIN_TOKEN", admin)
            .env("HOOKFORGE_LOG_LEVEL", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the hookforge binary starts");
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "never ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Self {
            child,
            base,
            addr,
            ready_in: started.elapsed(),
        }
    }

    /// The server's resident set, in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// Stops the server cleanly (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    /// A bench that fails mid-way leaves no server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the Prometheus series `series` (name and labels exactly as printed) at `base`;
/// 0 while the series has no sample.
pub async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(series))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
