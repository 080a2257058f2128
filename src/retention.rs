//! The retention sweeper: a background task that, for each organization and kind of history,
//! decides what has expired and records it as `retention.expired` events, which the read models
//! fold (see [`crate::domain::retention`]). It proceeds in bounded batches at a bounded rate, so
//! a first sweep over months of history never competes with ingress.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::app::App;
use crate::domain::Event;
use crate::domain::retention::{self, Expiring, RetentionExpired};
use crate::journal::{ExpectedRevision, Metadata};
use crate::store::TimeRange;

/// Event logs one expiry drops at most (one store batch).
const BATCH: usize = 1000;

/// Starts sweeping: once shortly after start, then every `retention.sweep_interval_seconds`.
/// Holds the application weakly, so it ends when the application does.
pub fn spawn(app: &Arc<App>) -> JoinHandle<()> {
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        let Some(interval) = app
            .upgrade()
            .map(|a| Duration::from_secs(a.config.retention.sweep_interval_seconds))
        else {
            return;
        };
        if interval.is_zero() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1).min(interval)).await;
        loop {
            if !sweep(&app).await {
                return;
            }
            tokio::time::sleep(interval).await;
        }
    })
}

/// One sweep over every organization; `false` once the application is gone.
async fn sweep(app: &Weak<App>) -> bool {
    let organizations: Vec<(u64, retention::Effective)> = {
        let Some(app) = app.upgrade() else {
            return false;
        };
        let defaults = app.config.retention.defaults();
        app.views
            .organizations
            .read()
            .retention()
            .map(|(id, retention)| (id, retention.effective(&defaults)))
            .collect()
    };
    for (organization, policy) in organizations {
        for kind in Expiring::ALL {
            loop {
                let Some(app) = app.upgrade() else {
                    return false;
                };
                let now = chrono::Utc::now().timestamp_micros();
                let cutoff = retention::cutoff(now, kind.days(&policy));
                let Some((before, rows)) = plan(&app, organization, kind, cutoff) else {
                    break;
                };
                let event = RetentionExpired {
                    organization,
                    kind,
                    before,
                };
                let metadata = Metadata::system(format!("retention-{organization}"));
                let appended = app
                    .journal
                    .append(
                        retention::stream(organization),
                        ExpectedRevision::Any,
                        vec![Event::from(event).encode(metadata)],
                    )
                    .await;
                match appended {
                    // The next plan must see this cut applied.
                    Ok(appended) => app.views.wait_for(appended.last_position).await,
                    Err(e) => {
                        tracing::warn!(organization, kind = kind.name(), error = %e, "retention sweep stopped; it resumes at the next interval");
                        return true;
                    }
                }
                app.metrics
                    .retention
                    .expired
                    .with_label_values(&[kind.name()])
                    .inc_by(rows as u64);
                let pace = rows as f64 / f64::from(app.config.retention.max_rows_per_second);
                drop(app);
                tokio::time::sleep(Duration::from_secs_f64(pace)).await;
                if before >= cutoff {
                    break;
                }
            }
        }
    }
    if let Some(app) = app.upgrade() {
        compact(&app).await;
        app.metrics.retention.sweeps.inc();
        app.metrics
            .retention
            .last_sweep
            .set(chrono::Utc::now().timestamp());
    }
    true
}

/// The next cut for `organization`'s `kind` and how many rows it drops, if anything expired.
fn plan(app: &App, organization: u64, kind: Expiring, cutoff: i64) -> Option<(i64, usize)> {
    match kind {
        Expiring::EventLogs => {
            let oldest = match app.views.event_logs.read().oldest(organization, BATCH + 1) {
                Ok(oldest) => oldest,
                Err(e) => {
                    tracing::warn!(organization, error = %e, "event logs unreadable; retention skips them");
                    return None;
                }
            };
            let before = retention::next_cut(&oldest, cutoff, BATCH)?;
            Some((before, oldest.iter().filter(|t| **t < before).count()))
        }
        Expiring::Deliveries => {
            let oldest = match app
                .views
                .deliveries
                .read()
                .oldest_finished(organization, BATCH + 1)
            {
                Ok(oldest) => oldest,
                Err(e) => {
                    tracing::warn!(organization, error = %e, "deliveries unreadable; retention skips them");
                    return None;
                }
            };
            let before = retention::next_cut(&oldest, cutoff, BATCH)?;
            Some((before, oldest.iter().filter(|t| **t < before).count()))
        }
        Expiring::Audit => {
            let rows = match app.views.audit.read().expirable(organization, cutoff) {
                Ok(rows) => usize::try_from(rows).unwrap_or(usize::MAX),
                Err(e) => {
                    tracing::warn!(organization, error = %e, "audit trail unreadable; retention skips it");
                    return None;
                }
            };
            (rows > 0).then_some((cutoff, rows))
        }
        Expiring::Payloads => {
            // One cut for every payload in between; none when no webhook arrived and no
            // delivery was made since the last (a published event's payload, a job's variables
            // from a rule, are cut with them).
            let since = app.views.organizations.read().payloads().cut(organization);
            let range = TimeRange {
                since,
                until: Some(cutoff - 1),
            };
            let webhooks = || {
                app.views
                    .event_logs
                    .read()
                    .any_within(organization, range)
                    .unwrap_or_else(|e| {
                        tracing::warn!(organization, error = %e, "event logs unreadable; payload expiry skips them");
                        false
                    })
            };
            let deliveries = || {
                app.views
                    .deliveries
                    .read()
                    .any_finished_within(organization, range)
                    .unwrap_or_else(|e| {
                        tracing::warn!(organization, error = %e, "deliveries unreadable; payload expiry skips them");
                        false
                    })
            };
            let due = since.is_none_or(|since| since < cutoff) && (webhooks() || deliveries());
            due.then_some((cutoff, 0))
        }
    }
}

/// Cuts expired payloads out of the journal's closed segments, on a blocking thread.
async fn compact(app: &Arc<App>) {
    let policy = app.views.organizations.read().payloads().clone();
    let journal = app.journal.clone();
    let rate = app.config.retention.compaction_bytes_per_second();
    let done = tokio::task::spawn_blocking(move || journal.compact(&policy, rate)).await;
    match done {
        Ok(Ok(report)) => {
            let metrics = &app.metrics.retention;
            metrics.compacted.inc_by(report.records_compacted);
            metrics.reclaimed.inc_by(report.bytes_reclaimed);
            metrics.segments_compacted.inc_by(report.segments_rewritten);
            if report.records_compacted > 0 {
                tracing::info!(
                    records = report.records_compacted,
                    segments = report.segments_rewritten,
                    bytes = report.bytes_reclaimed,
                    "compacted expired payloads"
                );
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "compaction stopped; it resumes after the next sweep")
        }
        Err(e) => tracing::warn!(error = %e, "compaction task failed"),
    }
}
