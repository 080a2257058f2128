//! Accepting connections, with the limits that keep slow and idle clients from holding the
//! server: a cap on open connections, a deadline for each request's head (which also closes
//! idle keep-alive connections), a bound on header size, and hyper's own error responses in the
//! JSON shape ([`ErrorBodies`]). The body deadline is enforced where the body is read.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use super::error_bodies::ErrorBodies;

/// The peer's address, put into every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// What one connection may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time to send a request's head, from the connection's opening or the previous response.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); hyper also refuses more than 100
    /// headers.
    pub max_header_bytes: usize,
}

/// The answer to a connection over the cap, written without reading the request.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 107\r\n\r\n{\"detail\": \"Too many open connections; retry shortly.\", \"code\": \"too_many_connections\", \"fields\": {}}";

/// Serves `service` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to finish its current request, and returns once all are closed.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<http::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let (service, limits, stopping) = (service.clone(), limits.clone(), stopping.clone());
        tokio::spawn(async move {
            connection(stream, peer, service, &limits, stopping).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every slot back means every connection is closed.
    let _ = slots
        .acquire_many(u32::try_from(limits.max_connections).unwrap_or(u32::MAX))
        .await;
}

async fn refuse(mut stream: TcpStream) {
    let write = async {
        stream.write_all(OVERLOADED).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

async fn connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    limits: &Limits,
    mut stopping: watch::Receiver<bool>,
) where
    S: Service<http::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let io = ErrorBodies::new(TokioIo::new(stream));
    let handler = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(Peer(peer));
        let mut service = service.clone();
        async move { service.call(request).await }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(io, handler);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
            // Finish the request in progress, if any, then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
