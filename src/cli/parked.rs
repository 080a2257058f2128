//! `hookforge parked list|retry`: the records consumers set aside, and retrying them after an
//! upgrade. Both open a stopped server's journal (the directory lock refuses a running one).

use std::process::ExitCode;

use anyhow::Context;

use super::DataDir;
use crate::domain::Event;
use crate::domain::rule;
use crate::domain::webhook::WebhookRetryRequested;
use crate::journal::{ExpectedRevision, Journal, JournalOptions, Metadata, Parked};

/// Options of `parked list` and `parked retry`.
#[derive(Debug, clap::Args)]
pub struct ParkedArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Only consumers whose name starts with this (`rule:7`, `view:`, `endpoint:3`).
    #[arg(long)]
    consumer: Option<String>,
}

fn open(dir: &DataDir) -> anyhow::Result<Journal> {
    let path = dir.data_dir.join("journal");
    if !path.join("segments").is_dir() {
        anyhow::bail!("no journal at {} (is --data-dir right?)", path.display());
    }
    Journal::open(&path, JournalOptions::default())
        .with_context(|| format!("opening {} (stop the server first)", path.display()))
}

fn selected(journal: &Journal, args: &ParkedArgs) -> anyhow::Result<Vec<Parked>> {
    let prefix = args.consumer.as_deref().unwrap_or("");
    Ok(journal
        .parked()?
        .into_iter()
        .filter(|p| p.consumer.starts_with(prefix))
        .collect())
}

fn line(item: &Parked) -> String {
    let at = chrono::DateTime::from_timestamp_micros(item.parked_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    format!(
        "{}\t{}\t{at}\t{}",
        item.consumer, item.position, item.reason
    )
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

pub(super) fn list(args: ParkedArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let journal = open(&args.dir)?;
        let items = selected(&journal, &args)?;
        journal.close().await;
        if items.is_empty() {
            eprintln!("nothing is parked");
        }
        for item in &items {
            println!("{}", line(item));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// How a consumer retries: a rule is asked, through its stream, to process the webhook again;
/// views and actors that fold state drop their snapshots and rebuild from the log at the next
/// start, meeting the record again.
enum Retry {
    Rule(u64),
    Snapshot(String),
    Replayed,
}

fn retry_of(consumer: &str) -> Option<Retry> {
    let (kind, id) = consumer.split_once(':').unwrap_or((consumer, ""));
    match kind {
        "rule" => id.parse().ok().map(Retry::Rule),
        "view" => Some(Retry::Snapshot(format!("{id}@"))),
        "endpoint" => Some(Retry::Snapshot(format!("endpoint-{id}@"))),
        "dispatcher" => Some(Retry::Snapshot("dispatcher@".into())),
        "runner" => Some(Retry::Replayed),
        _ => None,
    }
}

pub(super) fn retry(args: ParkedArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let journal = open(&args.dir)?;
        let items = selected(&journal, &args)?;
        let mut code = ExitCode::SUCCESS;
        for item in &items {
            let outcome = match retry_of(&item.consumer) {
                Some(Retry::Rule(id)) => {
                    let event = Event::from(WebhookRetryRequested {
                        event_log_id: item.position,
                    });
                    let metadata = Metadata {
                        actor: "cli".into(),
                        correlation_id: format!("retry-parked-{}", item.position),
                    };
                    journal
                        .append(
                            rule::stream(id),
                            ExpectedRevision::Any,
                            vec![event.encode(metadata)],
                        )
                        .await
                        .map(drop)
                        .map_err(anyhow::Error::from)
                }
                Some(Retry::Snapshot(prefix)) => journal
                    .remove_snapshots(&prefix)
                    .map(drop)
                    .map_err(anyhow::Error::from),
                Some(Retry::Replayed) => Ok(()),
                None => Err(anyhow::anyhow!("unknown consumer")),
            };
            match outcome.and_then(|()| Ok(journal.unpark(&item.consumer, item.position)?)) {
                Ok(()) => println!("retrying\t{}", line(item)),
                Err(e) => {
                    eprintln!("hookforge: not retried: {}: {e:#}", line(item));
                    code = ExitCode::FAILURE;
                }
            }
        }
        journal.close().await;
        if items.is_empty() {
            eprintln!("nothing is parked");
        }
        Ok(code)
    })
}
