//! `hookforge journal replay|verify|stats`: read-only audit tools over a stopped server's journal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use serde_json::json;

use super::DataDir;
use crate::domain::Event;
use crate::journal::{ReadOnlyJournal, RecordedEvent, category_of};

/// Options of `journal verify` and `journal stats`.
#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    #[command(flatten)]
    dir: DataDir,
}

/// Options of `journal replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Only this stream (e.g. `rule-7`).
    #[arg(long)]
    stream: Option<String>,
    /// Only streams of this category (e.g. `rule`).
    #[arg(long)]
    category: Option<String>,
    /// Start at this global position.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Only this event type (e.g. `organization.created`).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Only events recorded at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::FixedOffset>>,
}

fn open(dir: &DataDir) -> anyhow::Result<ReadOnlyJournal> {
    Ok(ReadOnlyJournal::open(&dir.data_dir.join("journal"))?)
}

fn progress(enabled: bool) -> Option<indicatif::ProgressBar> {
    enabled.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} events ({per_sec}) {elapsed}")
                .expect("valid template"),
        );
        bar
    })
}

/// One event as a JSON line: data decoded for known types (secrets stay sealed).
fn render(event: &RecordedEvent) -> serde_json::Value {
    let data = match Event::decode(event) {
        Ok(Some(decoded)) => decoded.data_json(),
        Ok(None) => {
            json!({"undecoded_base64": base64::engine::general_purpose::STANDARD.encode(&event.data)})
        }
        Err(e) => json!({"decode_error": e.to_string()}),
    };
    json!({
        "position": event.position,
        "stream": event.stream,
        "revision": event.revision,
        "type": event.event_type,
        "schema_version": event.schema_version,
        "recorded_at": event.recorded_time().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "actor": event.metadata.actor,
        "correlation_id": event.metadata.correlation_id,
        "data": data,
    })
}

pub(super) fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let journal = open(&args.dir)?;
    let since = args.since.map(|t| t.timestamp_micros());
    let bar = progress(std::io::stderr().is_terminal());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for event in journal.events(args.from) {
        let event = event.context("reading the journal (run `hookforge journal verify`)")?;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        let keep = args.stream.as_ref().is_none_or(|s| *s == event.stream)
            && args
                .category
                .as_ref()
                .is_none_or(|c| c == category_of(&event.stream))
            && args
                .event_type
                .as_ref()
                .is_none_or(|t| *t == event.event_type)
            && since.is_none_or(|t| event.recorded_at >= t);
        if keep {
            serde_json::to_writer(&mut out, &render(&event))?;
            if out.write_all(b"\n").is_err() {
                break; // e.g. `| head`
            }
        }
    }
    let _ = out.flush();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn verify(args: DataDirArg) -> anyhow::Result<ExitCode> {
    let journal = open(&args.dir)?;
    let bar = progress(std::io::stderr().is_terminal());
    let report = journal.verify(|_| {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(torn) = &report.torn_tail {
        eprintln!("note: {torn}");
    }
    match &report.first_bad {
        None => {
            println!(
                "journal intact: {} records verified ({} compacted); head hash {}",
                report.verified, report.compacted, report.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Some((position, why)) => {
            println!("journal damaged at position {position}: {why}");
            println!("{} records before it verified intact", report.verified);
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(super) fn stats(args: DataDirArg) -> anyhow::Result<ExitCode> {
    let stats = open(&args.dir)?.stats(&mut crate::domain::payloads::PayloadExpiry::default())?;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(ExitCode::SUCCESS)
}
