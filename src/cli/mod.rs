//! The command line: `serve`, and read-only journal tools for audit.

mod journal;
mod parked;
mod serve;
mod sign;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;

/// hookforge: an event-sourced webhook router.
#[derive(Debug, Parser)]
#[command(name = "hookforge", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Print the signature header(s) for a webhook body read from stdin (to test rules with curl).
    Sign(sign::SignArgs),
    /// Read a stopped server's journal: replay, verify, stats (never writes).
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Records set aside because a consumer could not process them (stopped server).
    Parked {
        #[command(subcommand)]
        command: ParkedCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ParkedCommand {
    /// Print every parked record: consumer, position, when, why.
    List(parked::ParkedArgs),
    /// Process parked records again at the next start (after an upgrade that fixes the cause).
    Retry(parked::ParkedArgs),
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Print events as JSON lines, oldest first.
    Replay(journal::ReplayArgs),
    /// Walk the hash chain; exit 1 naming the first bad position if anything was altered or removed.
    Verify(journal::DataDirArg),
    /// Count events and streams, measure the files.
    Stats(journal::DataDirArg),
}

/// Where the server keeps its data, shared by the journal commands.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDir {
    /// The server's data directory.
    #[arg(long, default_value = "./hookforge-data", env = "HOOKFORGE_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Journal { command } => match command {
            JournalCommand::Replay(args) => journal::replay(args),
            JournalCommand::Verify(args) => journal::verify(args),
            JournalCommand::Stats(args) => journal::stats(args),
        },
        Command::Parked { command } => match command {
            ParkedCommand::List(args) => parked::list(args),
            ParkedCommand::Retry(args) => parked::retry(args),
        },
    };
    result.unwrap_or_else(|e| {
        eprintln!("hookforge: {e:#}");
        ExitCode::from(2)
    })
}

/// Sets up logging to stderr in the chosen format.
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
