//! The HTTP client of outbound delivery and one delivery attempt.
//!
//! One [`DeliveryClient`] is shared by every endpoint: it holds two connection-pooling reqwest
//! clients (certificate verification on and off) and applies each endpoint's timeout per
//! request, so connections to a receiver are reused across deliveries. Redirects are never
//! followed (a 3xx is a failed attempt), proxies from the environment are ignored (a proxy would
//! resolve and connect on our behalf, past the SSRF guard), and reqwest's own retries are off so
//! one [`DeliveryClient::send`] is exactly one attempt.

use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::redirect::Policy;
use url::Url;

use super::retry::OutcomeClass;
use super::retry_after::parse_retry_after;
use super::ssrf::{SsrfError, SsrfResolver, check_url};

/// How much of a response body is kept for the delivery log.
pub const SNIPPET_LIMIT: usize = 4096;

/// Longest `Location` kept in a redirect's error message.
const LOCATION_LIMIT: usize = 256;

/// Operator settings of the outbound client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `outbound.allow_private_networks`: lifts the SSRF guard (for on-premise receivers).
    pub allow_private_networks: bool,
    /// Upper bound of the TCP (and TLS) connect phase, within the per-request timeout.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept for reuse.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per receiver host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
        }
    }
}

/// Why the outbound client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// reqwest refused the configuration (for example the TLS backend failed to start).
    #[error("could not build the outbound HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Everything needed for one attempt; built by the endpoint actor from the delivery.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// The endpoint URL.
    pub url: Url,
    /// Headers from [`super::signing::signed_headers`].
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The JSON body from [`super::envelope::Envelope::to_body`].
    pub body: Bytes,
    /// The endpoint's timeout for the whole attempt: connect, send and reading the snippet.
    pub timeout: Duration,
    /// `false` accepts invalid certificates (the endpoint's `ssl_verify` setting).
    pub ssl_verify: bool,
}

/// What kind of failure ended an attempt; stored with the attempt and shown in the delivery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No complete answer within the timeout.
    Timeout,
    /// The connection could not be made, or the host could not be resolved.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The SSRF guard refused the destination: a forbidden address, or a URL that is not
    /// `http(s)` (endpoint validation refuses those first, so this is rare).
    BlockedBySsrf,
    /// The receiver answered 3xx; redirects are not followed.
    Redirect,
    /// The receiver answered with a non-2xx, non-3xx status.
    HttpStatus,
    /// Any other transport failure.
    Other,
}

impl FailureKind {
    /// Stable snake_case name, for storage, metrics labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::BlockedBySsrf => "blocked_by_ssrf",
            Self::Redirect => "redirect",
            Self::HttpStatus => "http_status",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt's classification and a human-readable cause (never contains the URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// The class of failure.
    pub kind: FailureKind,
    /// What went wrong, for the delivery log.
    pub message: String,
}

/// The record of one attempt, as the delivery log and the retry policy need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The response status, if the receiver answered.
    pub status: Option<u16>,
    /// Wall time of the attempt, including reading the snippet.
    pub duration_ms: u64,
    /// The first [`SNIPPET_LIMIT`] bytes of the response body, lossy UTF-8.
    pub response_snippet: String,
    /// The receiver's `Retry-After`, if it sent a valid one.
    pub retry_after: Option<Duration>,
    /// Why the attempt failed; `None` for a 2xx.
    pub error: Option<AttemptError>,
}

impl AttemptOutcome {
    /// Whether the receiver accepted the delivery (2xx).
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }

    /// The outcome as the retry policy sees it.
    pub fn class(&self) -> OutcomeClass {
        if let Some(status) = self.status {
            return OutcomeClass::Status(status);
        }
        match self.error.as_ref().map(|e| e.kind) {
            Some(FailureKind::Timeout) => OutcomeClass::Timeout,
            Some(FailureKind::Connect) => OutcomeClass::Connect,
            Some(FailureKind::Tls) => OutcomeClass::Tls,
            Some(FailureKind::BlockedBySsrf) => OutcomeClass::Blocked,
            _ => OutcomeClass::Other,
        }
    }

    fn failed(started: Instant, kind: FailureKind, message: String) -> Self {
        Self {
            status: None,
            duration_ms: elapsed_ms(started),
            response_snippet: String::new(),
            retry_after: None,
            error: Some(AttemptError { kind, message }),
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The shared outbound HTTP client; cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct DeliveryClient {
    verifying: reqwest::Client,
    insecure: reqwest::Client,
    allow_private_networks: bool,
}

impl DeliveryClient {
    /// Builds both pooled clients from the operator's settings.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        Ok(Self {
            verifying: build(config, true)?,
            insecure: build(config, false)?,
            allow_private_networks: config.allow_private_networks,
        })
    }

    /// Performs exactly one attempt and records how it went; never fails, never follows redirects.
    pub async fn send(&self, request: &OutboundRequest) -> AttemptOutcome {
        let started = Instant::now();
        // reqwest resolves names through the SSRF resolver, but IP literals bypass resolvers.
        if let Err(refused) = check_url(&request.url, self.allow_private_networks) {
            return AttemptOutcome::failed(
                started,
                FailureKind::BlockedBySsrf,
                refused.to_string(),
            );
        }
        let client = if request.ssl_verify {
            &self.verifying
        } else {
            &self.insecure
        };
        let mut headers = HeaderMap::with_capacity(request.headers.len());
        for (name, value) in &request.headers {
            headers.append(name.clone(), value.clone());
        }
        let sent = client
            .post(request.url.clone())
            .headers(headers)
            .body(request.body.clone())
            .timeout(request.timeout)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => {
                let (kind, message) = classify(err);
                return AttemptOutcome::failed(started, kind, message);
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let error = if status.is_success() {
            None
        } else if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .map(|l| truncate_utf8(l.into_bytes(), LOCATION_LIMIT))
                .unwrap_or_default();
            Some(AttemptError {
                kind: FailureKind::Redirect,
                message: format!("HTTP {status} to {location:?}: redirects are not followed"),
            })
        } else {
            Some(AttemptError {
                kind: FailureKind::HttpStatus,
                message: format!("HTTP {status}"),
            })
        };
        let response_snippet = read_snippet(&mut response).await;
        AttemptOutcome {
            status: Some(status.as_u16()),
            duration_ms: elapsed_ms(started),
            response_snippet,
            retry_after,
            error,
        }
    }
}

fn build(config: &ClientConfig, verify: bool) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .redirect(Policy::none())
        .retry(reqwest::retry::never())
        .no_proxy()
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .tls_danger_accept_invalid_certs(!verify);
    if !config.allow_private_networks {
        builder = builder.dns_resolver(SsrfResolver::new(false));
    }
    builder.build().map_err(ClientError::Build)
}

/// Reads at most [`SNIPPET_LIMIT`] bytes of the body, then stops reading.
///
/// A body that ends within the limit is read to its end, so its connection goes back to the
/// pool; a longer one is abandoned (its connection closes) rather than downloaded. Read errors
/// keep what arrived: the status already decided the attempt.
async fn read_snippet(response: &mut reqwest::Response) -> String {
    let mut kept = Vec::new();
    let mut received = 0usize;
    while received <= SNIPPET_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                received += chunk.len();
                let room = SNIPPET_LIMIT - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    truncate_utf8(kept, SNIPPET_LIMIT)
}

/// At most `limit` bytes as lossy UTF-8, without a dangling half character at the cut.
fn truncate_utf8(mut bytes: Vec<u8>, limit: usize) -> String {
    bytes.truncate(limit);
    if let Err(e) = std::str::from_utf8(&bytes)
        && e.error_len().is_none()
    {
        bytes.truncate(e.valid_up_to());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Classifies a transport error and describes it without the URL (which may hold a token).
fn classify(err: reqwest::Error) -> (FailureKind, String) {
    let err = err.without_url();
    let mut kind = None;
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(ssrf) = cause.downcast_ref::<SsrfError>() {
            let kind = match ssrf {
                SsrfError::ForbiddenAddress { .. } | SsrfError::OnlyForbiddenAddresses { .. } => {
                    FailureKind::BlockedBySsrf
                }
                _ => FailureKind::Connect,
            };
            return (kind, ssrf.to_string());
        }
        if is_rustls_error(cause) && kind.is_none() {
            kind = Some(FailureKind::Tls);
        }
        source = cause.source();
    }
    let kind = if err.is_timeout() {
        FailureKind::Timeout
    } else if let Some(kind) = kind {
        kind
    } else if err.is_connect() {
        FailureKind::Connect
    } else if err.is_redirect() {
        FailureKind::Redirect
    } else {
        FailureKind::Other
    };
    (kind, describe(&err))
}

/// Whether `err` is a rustls error, possibly inside (nested) `io::Error`s.
///
/// tokio-rustls reports TLS failures as `io::Error`s wrapping `rustls::Error`, which reqwest
/// wraps in another `io::Error`; `io::Error::source()` skips the wrapped error, so look inside.
fn is_rustls_error(err: &(dyn std::error::Error + 'static)) -> bool {
    if err.is::<rustls::Error>() {
        return true;
    }
    err.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| is_rustls_error(inner))
}

/// The error and its causes, outermost first, joined with ": ", repeats dropped.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(cause) = current {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = cause.source();
    }
    parts.join(": ")
}
