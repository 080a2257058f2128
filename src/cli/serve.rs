//! `hookforge serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, LogFormat, Overrides};
use crate::server::Server;

/// Options of `hookforge serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (default ./hookforge-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

pub(super) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        log_format: args.log_format,
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    super::init_logging(config.log_format, &config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let server = Server::start(config, listener).await?;
        // One stable line on stdout, so scripts (and tests with --listen 127.0.0.1:0) learn the port.
        println!("hookforge listening on http://{}", server.addr);
        tracing::info!(addr = %server.addr, data_dir = %server.app.config.data_dir.display(), "hookforge started");
        let failure = server.run_until(shutdown_signal()).await;
        match failure {
            Some(reason) if reason != "journal closed" => {
                tracing::error!(%reason, "stopped because the journal failed");
                Ok(ExitCode::FAILURE)
            }
            _ => {
                tracing::info!("shut down cleanly");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
    }
}
