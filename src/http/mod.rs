//! The HTTP server (warp): one filter reads the request, a route table dispatches it, and every
//! failure leaves through [`ApiError`] in one JSON shape. See
//! `docs/decisions/0003-http-routing.md` for why routing is a table rather than warp filters.

pub mod admin;
pub mod auth;
pub mod error;
pub mod health;
pub mod ingress;
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
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: FullPath,
                  query: String,
                  headers: HeaderMap,
                  remote: Option<SocketAddr>,
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
                        remote,
                        body,
                    )
                    .await
                }
            },
        );
    warp::serve(filter)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
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
            let response = match read_body(&headers, body, limit).await {
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
