//! Running the whole server: start the application, serve HTTP, shut down cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{App, StartError};
use crate::config::Config;

/// A running server: its address, its application, and a way to stop it.
pub struct Server {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The application behind it.
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Starts the application and serves HTTP on `listener`.
    pub async fn start(mut config: Config, listener: TcpListener) -> Result<Server, StartError> {
        let addr = listener.local_addr().map_err(|e| StartError::DataDir {
            path: "listener".into(),
            source: e,
        })?;
        // Links such as webhook_url use the address actually bound (port 0 picks one).
        config.listen = addr;
        let app = App::start(config).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let journal = app.journal.clone();
        let shutdown = async move {
            tokio::select! {
                _ = stopped => {}
                reason = journal.wait_stopped() => tracing::error!(%reason, "journal stopped; shutting down"),
            }
        };
        let task = tokio::spawn(crate::http::serve(app.clone(), listener, shutdown));
        Ok(Server {
            addr,
            app,
            stop: Some(stop),
            task,
        })
    }

    /// Stops accepting, lets in-flight requests finish (up to the configured grace), stops the
    /// actors and closes the journal.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let grace = Duration::from_secs(self.app.config.http.shutdown_grace_seconds);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!(?grace, "in-flight requests did not finish in time");
            self.task.abort();
        }
        self.app.shutdown().await;
    }

    /// Serves until `signal` resolves (or the journal fails), then shuts down.
    /// Returns why the journal stopped if it failed rather than closed.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Option<String> {
        let journal = self.app.journal.clone();
        tokio::select! {
            _ = signal => {}
            _ = journal.wait_stopped() => {}
        }
        let failure = journal.stopped();
        self.shutdown().await;
        failure
    }
}
