//! The HTTP server (warp): one filter reads the request, a route table dispatches it, and every
//! failure leaves through [`ApiError`] in one JSON shape. See
//! `docs/decisions/0003-http-routing.md` for why routing is a table rather than warp filters.

pub mod admin;
pub mod auth;
pub mod error;
mod error_bodies;
pub mod health;
pub mod ingress;
pub mod listener;
pub mod pagination;
pub mod request;
pub mod response;
pub mod router;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::path::FullPath;

pub use self::error::ApiError;
use self::listener::{Limits, Peer};
pub use self::request::Request;
pub use self::response::Response;
use self::router::{Router, with_allow};
use crate::app::App;
use crate::domain::access::Principal;
use crate::journal::Metadata;

/// How long an API request waits for the read models after a start before getting 503.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let router = Arc::new(routes::table());
    let filter = warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Peer>())
        .and(warp::body::stream())
        .then({
            let app = app.clone();
            move |method: Method,
                  path: FullPath,
                  query: String,
                  headers: HeaderMap,
                  peer: Option<Peer>,
                  body| {
                let app = app.clone();
                let router = router.clone();
                async move {
                    dispatch(
                        app,
                        router,
                        method,
                        path.as_str().to_owned(),
                        query,
                        headers,
                        peer.map(|p| p.0),
                        body,
                    )
                    .await
                }
            }
        });
    let http = &app.config.http;
    let limits = Limits {
        max_connections: http.max_connections,
        header_read_timeout: std::time::Duration::from_secs(http.header_read_timeout_seconds),
        max_header_bytes: http.max_header_bytes,
    };
    listener::serve(listener, warp::service(filter), limits, shutdown).await;
}

#[allow(clippy::too_many_arguments)]
async fn dispatch<S, B>(
    app: Arc<App>,
    router: Arc<Router>,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let started = Instant::now();
    let correlation_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (pattern, response) = match router.find(&method, &path) {
        Err(error) => (
            "unmatched",
            with_allow(error.into_response(), router.allow(&path)),
        ),
        Ok(matched) => {
            let limit = app.config.http.max_body_bytes;
            let not_ready =
                matched.pattern.starts_with("/api/") && !app.wait_ready(READY_WAIT).await;
            let deadline =
                std::time::Duration::from_secs(app.config.http.body_read_timeout_seconds);
            let body = tokio::time::timeout(deadline, read_body(&headers, body, limit))
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        format!(
                            "The request body did not arrive within {} seconds.",
                            deadline.as_secs()
                        ),
                    ))
                });
            let response = match body {
                _ if not_ready => ApiError::unavailable(
                    "The server is starting and rebuilding its read models; retry shortly.",
                    2,
                )
                .into_response(),
                Err(error) => error.into_response(),
                Ok(body) => {
                    let request = Request {
                        method: method.clone(),
                        path: path.clone(),
                        params: matched.params,
                        query: url::form_urlencoded::parse(query.as_bytes())
                            .into_owned()
                            .collect(),
                        headers,
                        body,
                        remote,
                        correlation_id: correlation_id.clone(),
                    };
                    (matched.handler)(app.clone(), request)
                        .await
                        .unwrap_or_else(ApiError::into_response)
                }
            };
            (matched.pattern, response)
        }
    };
    let mut response = response;
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status();
    app.metrics
        .http_requests
        .with_label_values(&[pattern, method.as_str(), status.as_str()])
        .inc();
    app.metrics
        .http_seconds
        .with_label_values(&[pattern])
        .observe(started.elapsed().as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), correlation_id, "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), "request");
    }
    response
}

/// Reads the body, refusing (413) anything larger than `limit` before reading further.
async fn read_body<S, B>(headers: &HeaderMap, body: S, limit: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The body exceeds the limit of {limit} bytes."),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("bad_body", format!("Could not read the request body: {e}."))
        })?;
        if buf.len() + chunk.remaining() > limit {
            return Err(too_large());
        }
        buf.put(chunk);
    }
    Ok(buf.freeze())
}

/// Event metadata for a command issued by `principal` in request `req`.
pub fn metadata(principal: &Principal, req: &Request) -> Metadata {
    Metadata {
        actor: principal.actor(),
        correlation_id: req.correlation_id.clone(),
    }
}
