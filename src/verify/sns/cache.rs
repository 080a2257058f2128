//! Fetching SNS signing certificates (the one I/O step of inbound verification) and caching them
//! by URL, so a busy topic costs one HTTPS request per certificate rotation, not per message.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use super::{SnsCertificate, SnsError};

/// Most certificates kept; SNS uses a handful per region, so reaching this means junk URLs,
/// and the cache simply starts over.
const MAX_ENTRIES: usize = 64;
/// Largest certificate body accepted (real ones are about 2 KiB).
const MAX_CERT_BYTES: usize = 64 * 1024;
/// Deadline for one certificate download.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Downloads the bytes at an already allow-listed certificate URL. The injection point that lets
/// tests (and air-gapped deployments) serve certificates without the network.
pub trait CertFetcher: Send + Sync {
    /// Returns the body at `url` (PEM or DER).
    fn fetch(&self, url: &Url) -> impl Future<Output = Result<Vec<u8>, SnsError>> + Send;
}

/// Fetches certificates over HTTPS with reqwest: no redirects, a timeout, a size cap.
#[derive(Debug, Clone)]
pub struct HttpCertFetcher {
    client: reqwest::Client,
}

impl HttpCertFetcher {
    /// A fetcher with its own client configured for certificate downloads.
    pub fn new() -> Result<Self, SnsError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|err| SnsError::CertFetch(format!("cannot build HTTP client ({err})")))?;
        Ok(HttpCertFetcher { client })
    }
}

impl CertFetcher for HttpCertFetcher {
    async fn fetch(&self, url: &Url) -> Result<Vec<u8>, SnsError> {
        let fetch_error = |err: reqwest::Error| SnsError::CertFetch(err.without_url().to_string());
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(fetch_error)?;
        if !response.status().is_success() {
            return Err(SnsError::CertFetch(format!(
                "HTTP status {}",
                response.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > MAX_CERT_BYTES {
                return Err(SnsError::CertFetch(format!(
                    "certificate larger than {MAX_CERT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Parsed SNS certificates by URL. Only certificates that parse are kept; a failed download is
/// retried on the next message. Two concurrent misses for one URL may both download it, which
/// is harmless.
#[derive(Debug)]
pub struct CertCache<F = HttpCertFetcher> {
    fetcher: F,
    certs: Mutex<HashMap<Url, Arc<SnsCertificate>>>,
}

impl CertCache<HttpCertFetcher> {
    /// An empty cache downloading over HTTPS (what the server uses).
    pub fn over_https() -> Result<Self, SnsError> {
        Ok(CertCache::new(HttpCertFetcher::new()?))
    }
}

impl<F: CertFetcher> CertCache<F> {
    /// An empty cache downloading through `fetcher`.
    pub fn new(fetcher: F) -> Self {
        CertCache {
            fetcher,
            certs: Mutex::new(HashMap::new()),
        }
    }

    /// The certificate at `url` (which the caller has passed through
    /// [`check_cert_url`](super::check_cert_url)), from the cache or freshly downloaded.
    pub async fn get(&self, url: &Url) -> Result<Arc<SnsCertificate>, SnsError> {
        if let Some(cert) = self.lock().get(url) {
            return Ok(Arc::clone(cert));
        }
        let bytes = self.fetcher.fetch(url).await?;
        let cert = Arc::new(SnsCertificate::parse(&bytes)?);
        let mut certs = self.lock();
        if certs.len() >= MAX_ENTRIES {
            certs.clear();
        }
        certs.insert(url.clone(), Arc::clone(&cert));
        Ok(cert)
    }

    /// Places a certificate in the cache as if it had been downloaded from `url` (for
    /// air-gapped deployments that ship SNS certificates, and for tests).
    pub fn seed(&self, url: Url, cert: SnsCertificate) {
        self.lock().insert(url, Arc::new(cert));
    }

    /// The fetcher downloads go through.
    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    /// How many certificates are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no certificate is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Url, Arc<SnsCertificate>>> {
        // The map is always left consistent, so a panic elsewhere cannot poison its meaning.
        self.certs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Serves one canned HTTP response on a local port and returns the URL to fetch.
    async fn serve_once(status: &'static str, extra_headers: &'static str, body: Vec<u8>) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/cert.pem",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra_headers}connection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(&body).await.unwrap();
        });
        url
    }

    #[tokio::test]
    async fn http_fetcher_returns_the_body() {
        let url = serve_once("200 OK", "", b"-----BEGIN CERTIFICATE-----".to_vec()).await;
        let body = HttpCertFetcher::new().unwrap().fetch(&url).await.unwrap();
        assert_eq!(body, b"-----BEGIN CERTIFICATE-----");
    }

    #[tokio::test]
    async fn http_fetcher_does_not_follow_redirects() {
        let url = serve_once(
            "302 Found",
            "location: https://evil.example/cert.pem\r\n",
            vec![],
        )
        .await;
        let err = HttpCertFetcher::new()
            .unwrap()
            .fetch(&url)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "could not fetch the SNS signing certificate: HTTP status 302 Found"
        );
    }

    #[tokio::test]
    async fn http_fetcher_refuses_oversized_bodies() {
        let url = serve_once("200 OK", "", vec![b'A'; MAX_CERT_BYTES + 1]).await;
        let err = HttpCertFetcher::new()
            .unwrap()
            .fetch(&url)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "could not fetch the SNS signing certificate: certificate larger than 65536 bytes"
        );
    }

    #[test]
    fn the_https_cache_starts_empty() {
        let cache = CertCache::over_https().unwrap();
        assert!(cache.is_empty());
    }
}
