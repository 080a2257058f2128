//! Tests of [`super::client`] against real servers on loopback, ports bound to 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;
use warp::Filter;
use warp::http::StatusCode;

use super::client::{ClientConfig, DeliveryClient, FailureKind, OutboundRequest, SNIPPET_LIMIT};
use super::retry::{Decision, OutcomeClass, RetryPolicy, decide};
use super::signing::signed_headers;

fn client(allow_private_networks: bool) -> DeliveryClient {
    DeliveryClient::new(&ClientConfig {
        allow_private_networks,
        ..ClientConfig::default()
    })
    .unwrap()
}

fn request(url: &str) -> OutboundRequest {
    OutboundRequest {
        url: Url::parse(url).unwrap(),
        headers: Vec::new(),
        body: Bytes::from_static(b"{}"),
        timeout: Duration::from_secs(5),
        ssl_verify: true,
    }
}

/// Serves `routes` on 127.0.0.1 at a free port until the test's runtime ends.
async fn serve<F>(routes: F) -> SocketAddr
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    addr
}

/// A route that counts its hits and answers 200 "ok".
fn counted(
    path: &'static str,
    hits: Arc<AtomicUsize>,
) -> impl Filter<Extract = (&'static str,), Error = warp::Rejection> + Clone {
    warp::path(path).map(move || {
        hits.fetch_add(1, Ordering::SeqCst);
        "ok"
    })
}

#[tokio::test]
async fn redirects_are_reported_not_followed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let redirect = warp::path("start").map(|| {
        warp::reply::with_header(
            warp::reply::with_status("moved", StatusCode::FOUND),
            "location",
            "/target",
        )
    });
    let addr = serve(redirect.or(counted("target", hits.clone()))).await;

    let outcome = client(true)
        .send(&request(&format!("http://{addr}/start")))
        .await;
    assert_eq!(outcome.status, Some(302));
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::Redirect);
    assert_eq!(
        error.message,
        "HTTP 302 Found to \"/target\": redirects are not followed"
    );
    assert_eq!(outcome.response_snippet, "moved");
    assert_eq!(outcome.class(), OutcomeClass::Status(302));
    assert!(!outcome.is_success());
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    assert!(matches!(
        decide(&RetryPolicy::default(), 1, outcome.class(), None, 0.5),
        Decision::RetryAfter(_)
    ));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut req = request(&format!("http://{addr}/slow"));
    req.timeout = Duration::from_millis(300);

    let outcome = client(true).send(&req).await;
    assert_eq!(outcome.status, None);
    assert_eq!(outcome.error.as_ref().unwrap().kind, FailureKind::Timeout);
    assert_eq!(outcome.class(), OutcomeClass::Timeout);
    assert!(
        (300..5000).contains(&outcome.duration_ms),
        "{}",
        outcome.duration_ms
    );
}

#[tokio::test]
async fn response_snippet_is_capped_at_4_kib() {
    let big = warp::path("big").map(|| "é".repeat(512 * 1024)); // 1 MiB of 2-byte characters
    let small = warp::path("small").map(|| "x".repeat(SNIPPET_LIMIT));
    let addr = serve(big.or(small)).await;
    let client = client(true);

    let outcome = client.send(&request(&format!("http://{addr}/big"))).await;
    assert_eq!(outcome.status, Some(200));
    assert!(outcome.is_success());
    assert_eq!(outcome.response_snippet.len(), SNIPPET_LIMIT);
    assert!(outcome.response_snippet.chars().all(|c| c == 'é'));

    let outcome = client.send(&request(&format!("http://{addr}/small"))).await;
    assert_eq!(outcome.response_snippet, "x".repeat(SNIPPET_LIMIT));
}

#[tokio::test]
async fn localhost_is_blocked_unless_private_networks_are_allowed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let addr = serve(counted("hook", hits.clone())).await;
    let by_name = request(&format!("http://localhost:{}/hook", addr.port()));
    let by_ip = request(&format!("http://{addr}/hook"));

    let outcome = client(false).send(&by_name).await;
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::BlockedBySsrf, "{}", error.message);
    assert!(
        error
            .message
            .starts_with("host localhost resolves only to forbidden addresses"),
        "{}",
        error.message
    );
    assert_eq!(outcome.class(), OutcomeClass::Blocked);

    let outcome = client(false).send(&by_ip).await;
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::BlockedBySsrf);
    assert_eq!(
        error.message,
        "url points to a loopback address (127.0.0.1); \
         set outbound.allow_private_networks = true to allow it"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a blocked request arrived");

    let allowed = client(true);
    assert_eq!(allowed.send(&by_name).await.status, Some(200));
    assert_eq!(allowed.send(&by_ip).await.status, Some(200));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_after_is_read_from_throttling_answers() {
    let seconds = warp::path("seconds").map(|| {
        warp::reply::with_header(
            warp::reply::with_status("slow down", StatusCode::TOO_MANY_REQUESTS),
            "retry-after",
            "7",
        )
    });
    let date = warp::path("date").map(|| {
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        warp::reply::with_header(
            warp::reply::with_status("", StatusCode::SERVICE_UNAVAILABLE),
            "retry-after",
            httpdate::fmt_http_date(later),
        )
    });
    let addr = serve(seconds.or(date)).await;
    let client = client(true);

    let outcome = client
        .send(&request(&format!("http://{addr}/seconds")))
        .await;
    assert_eq!(outcome.status, Some(429));
    assert_eq!(outcome.retry_after, Some(Duration::from_secs(7)));
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::HttpStatus);
    assert_eq!(error.message, "HTTP 429 Too Many Requests");

    let outcome = client.send(&request(&format!("http://{addr}/date"))).await;
    assert_eq!(outcome.status, Some(503));
    let wait = outcome.retry_after.unwrap();
    assert!(
        (Duration::from_secs(115)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn refused_connections_are_connect_failures() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let outcome = client(true)
        .send(&request(&format!("http://{addr}/")))
        .await;
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::Connect, "{}", error.message);
    assert_eq!(outcome.class(), OutcomeClass::Connect);
    assert!(
        !error.message.contains(&addr.to_string()),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_failed_tls_handshake_is_a_tls_failure() {
    // A plain-HTTP server answering a TLS ClientHello: rustls sees a corrupt record.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let outcome = client(true)
        .send(&request(&format!("https://{addr}/")))
        .await;
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::Tls, "{}", error.message);
    assert_eq!(outcome.class(), OutcomeClass::Tls);
}

#[tokio::test]
async fn signed_headers_and_body_reach_the_receiver() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = {
        let seen = seen.clone();
        warp::path("hook")
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |headers: warp::http::HeaderMap, body: Bytes| {
                *seen.lock().unwrap() = Some((headers, body));
                warp::reply::with_status("accepted", StatusCode::ACCEPTED)
            })
    };
    let addr = serve(record).await;
    let body = Bytes::from_static(br#"{"event":"push"}"#);
    let custom = vec![("X-Tenant".to_owned(), "acme".to_owned())];
    let mut req = request(&format!("http://{addr}/hook"));
    req.headers =
        signed_headers("push", "dlv_1", 1_700_000_000, &body, &["s3cret"], &custom).unwrap();
    req.body = body.clone();

    let outcome = client(true).send(&req).await;
    assert_eq!(outcome.status, Some(202));
    assert!(outcome.is_success());
    assert_eq!(outcome.response_snippet, "accepted");
    let (headers, received) = seen.lock().unwrap().take().unwrap();
    assert_eq!(received, body);
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("x-forge-delivery"), "dlv_1");
    assert_eq!(header("webhook-id"), "dlv_1");
    assert_eq!(header("x-tenant"), "acme");
    assert!(crate::signing::verify_hmac_sha256_hex(
        b"s3cret",
        &received,
        header("x-forge-signature").strip_prefix("sha256=").unwrap()
    ));
    assert_eq!(headers.get_all("user-agent").iter().count(), 1);
}

/// A keep-alive HTTP/1.1 server that answers every request `200 ok` and counts connections.
async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Requests here carry a 2-byte body: headers end, then 2 bytes.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        if buf.len() < end + 4 + 2 {
                            break;
                        }
                        buf.drain(..end + 4 + 2);
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn connections_are_reused_across_attempts() {
    let (addr, connections) = counting_server().await;
    let client = client(true);
    let req = request(&format!("http://{addr}/hook"));
    for _ in 0..20 {
        let outcome = client.send(&req).await;
        assert_eq!(outcome.status, Some(200));
        assert_eq!(outcome.response_snippet, "ok");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// An HTTPS server with a self-signed certificate for localhost/127.0.0.1 that answers 200.
///
/// The certificate in `testdata/` was made for these tests with
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
/// -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1
/// -addext basicConstraints=critical,CA:FALSE`.
async fn self_signed_server() -> SocketAddr {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert =
        CertificateDer::from_pem_slice(include_bytes!("testdata/localhost-cert.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/localhost-key.pem")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let reply =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure";
                let _ = tls.write_all(reply).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn ssl_verify_false_accepts_a_self_signed_certificate() {
    let addr = self_signed_server().await;
    let client = client(true);
    let mut req = request(&format!("https://localhost:{}/hook", addr.port()));

    let outcome = client.send(&req).await;
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::Tls, "{}", error.message);
    assert!(
        error.message.contains("invalid peer certificate"),
        "{}",
        error.message
    );

    req.ssl_verify = false;
    let outcome = client.send(&req).await;
    assert_eq!(outcome.status, Some(200), "{:?}", outcome.error);
    assert_eq!(outcome.response_snippet, "secure");
}

#[tokio::test]
async fn non_http_urls_are_refused_before_any_io() {
    let outcome = client(true).send(&request("ftp://127.0.0.1/hook")).await;
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::BlockedBySsrf);
    assert_eq!(
        error.message,
        "url scheme must be http or https, not \"ftp\""
    );
    assert_eq!(outcome.status, None);
}
