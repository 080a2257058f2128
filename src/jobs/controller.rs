//! Running a `controller` job on AWX / Ansible Automation Platform, through the controller's
//! documented API: `POST /api/v2/job_templates/{id}/launch/` with `{"extra_vars": ...}`, then
//! `GET /api/v2/jobs/{job}/` until the job finishes, `POST /api/v2/jobs/{job}/cancel/` to
//! cancel, and `GET /api/v2/jobs/{job}/stdout/?format=txt` for the output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::command::Outcome;
use super::output::MAX_OUTPUT;
use crate::delivery::ssrf::{SsrfResolver, check_url};
use crate::domain::job::JobStatus;

/// A client for one controller.
pub struct Controller {
    client: reqwest::Client,
    base: String,
    token: String,
    allow_private: bool,
}

impl Controller {
    /// A client for `base_url` with a bearer `token`, under the outbound network policy.
    pub fn new(
        base_url: &str,
        token: String,
        ssl_verify: bool,
        allow_private: bool,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .tls_danger_accept_invalid_certs(!ssl_verify);
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(SsrfResolver::new(false)));
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the controller client: {e}"))?;
        Ok(Self {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            token,
            allow_private,
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| format!("bad controller URL: {e}"))?;
        check_url(&url, self.allow_private).map_err(|e| e.to_string())?;
        Ok(url)
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("controller unreachable: {e}"))?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Launches remote job template `remote_id`; returns the controller's job id.
    pub async fn launch(&self, remote_id: u64, extra_vars: &Value) -> Result<u64, String> {
        let url = self.url(&format!("/api/v2/job_templates/{remote_id}/launch/"))?;
        let (status, body) = self
            .json(
                self.client
                    .post(url)
                    .json(&serde_json::json!({"extra_vars": extra_vars})),
            )
            .await?;
        if !(200..300).contains(&status) {
            let detail = body.get("detail").and_then(Value::as_str).unwrap_or("");
            return Err(
                format!("the controller refused the launch with HTTP {status} {detail}")
                    .trim()
                    .to_owned(),
            );
        }
        body.get("job")
            .or_else(|| body.get("id"))
            .and_then(Value::as_u64)
            .ok_or_else(|| "the controller's launch answer has no job id".to_owned())
    }

    /// The remote job's status (`None` while it has not finished).
    async fn status(&self, job: u64) -> Result<Option<JobStatus>, String> {
        let (status, body) = self
            .json(self.client.get(self.url(&format!("/api/v2/jobs/{job}/"))?))
            .await?;
        match status {
            200 => {}
            404 => {
                return Err(format!(
                    "remote job {job} no longer exists on the controller"
                ));
            }
            other => {
                return Ok(if other >= 500 {
                    None
                } else {
                    Some(JobStatus::Error)
                });
            }
        }
        Ok(
            match body.get("status").and_then(Value::as_str).unwrap_or("") {
                "successful" => Some(JobStatus::Successful),
                "failed" => Some(JobStatus::Failed),
                "error" => Some(JobStatus::Error),
                "canceled" => Some(JobStatus::Canceled),
                _ => None,
            },
        )
    }

    async fn cancel(&self, job: u64) {
        if let Ok(url) = self.url(&format!("/api/v2/jobs/{job}/cancel/")) {
            let _ = self.client.post(url).bearer_auth(&self.token).send().await;
        }
    }

    async fn stdout(&self, job: u64) -> Vec<u8> {
        let Ok(url) = self.url(&format!("/api/v2/jobs/{job}/stdout/?format=txt")) else {
            return Vec::new();
        };
        match self.client.get(url).bearer_auth(&self.token).send().await {
            Ok(r) if r.status().is_success() => {
                let bytes = r.bytes().await.unwrap_or_default();
                bytes[bytes.len().saturating_sub(MAX_OUTPUT)..].to_vec()
            }
            _ => Vec::new(),
        }
    }

    /// Polls remote job `job` until it finishes, `timeout` (counted from `started`) passes or
    /// `cancel` turns true (then it asks the controller to cancel and waits for that).
    pub async fn follow(
        &self,
        job: u64,
        started: Instant,
        timeout: Duration,
        poll: Duration,
        mut cancel: watch::Receiver<bool>,
    ) -> Outcome {
        let mut canceling = false;
        loop {
            if !canceling && started.elapsed() >= timeout {
                self.cancel(job).await;
                return Outcome {
                    status: JobStatus::Failed,
                    exit_code: None,
                    explanation: Some(format!(
                        "timed out after {} s; asked the controller to cancel it",
                        timeout.as_secs()
                    )),
                    stdout: self.stdout(job).await,
                };
            }
            match self.status(job).await {
                Ok(Some(status)) => {
                    let explanation = match status {
                        JobStatus::Successful => None,
                        JobStatus::Canceled => Some("canceled on the controller".to_owned()),
                        other => Some(format!("the controller reports the job {}", other.as_str())),
                    };
                    return Outcome {
                        status,
                        exit_code: None,
                        explanation,
                        stdout: self.stdout(job).await,
                    };
                }
                Ok(None) => {}
                Err(e) if e.contains("no longer exists") => {
                    return Outcome {
                        status: JobStatus::Error,
                        exit_code: None,
                        explanation: Some(e),
                        stdout: Vec::new(),
                    };
                }
                // Transient (connection, 5xx): keep polling until the timeout.
                Err(e) => {
                    tracing::warn!(job, error = %e, "polling the controller failed; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = super::canceled(&mut cancel), if !canceling => {
                    canceling = true;
                    self.cancel(job).await;
                }
            }
        }
    }
}
