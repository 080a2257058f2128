//! Jobs (runs of job templates), on disk: one row per job, indexed by organization and by
//! template, newest first. Rules launch a job per firing, so this grows with traffic.

use super::StoredView;
use super::jobs::JobRecord;
use super::runs::{self, Runs, run_row};
use crate::domain::Event;
use crate::domain::job::JobStatus;
use crate::journal::{EventFilter, RecordedEvent};
use crate::store::{StoreError, Table, Writes};

/// Output kept in the read model for `result_stdout` (the full tail stays in the journal).
const STDOUT_TAIL: usize = 4096;

/// Every job on disk.
pub type JobRunsView = Runs<JobRecord>;

run_row!(JobRecord);

impl StoredView for Runs<JobRecord> {
    const NAME: &'static str = "job_runs";
    const SCHEMA: u32 = 2;

    fn filter() -> EventFilter {
        EventFilter::category("job")
    }

    fn open(table: Table) -> Result<Self, StoreError> {
        Ok(Self::new(table))
    }

    fn table(&self) -> &Table {
        self.rows().table()
    }

    fn apply(&mut self, record: &RecordedEvent, writes: &mut Writes) -> Result<(), StoreError> {
        let Ok(Some(event)) = Event::decode(record) else {
            return Ok(());
        };
        let at = record.recorded_at;
        let jobs = self.rows();
        match event {
            Event::JobLaunched(e) => {
                let job = JobRecord {
                    id: e.id,
                    organization: e.organization,
                    template: e.template,
                    template_name: e.template_name,
                    kind: e.kind.name().to_owned(),
                    status: JobStatus::Pending,
                    launched_by: e.launched_by,
                    extra_vars: e.extra_vars,
                    started: None,
                    finished: None,
                    elapsed_ms: None,
                    exit_code: None,
                    explanation: None,
                    stdout_tail: String::new(),
                    remote_job_id: None,
                    duration_exceeded: false,
                    cancel_requested: false,
                    finished_revision: None,
                    created: at,
                    modified: at,
                };
                jobs.put(writes, e.id, &job)?;
            }
            Event::JobStarted(e) => runs::update(jobs, writes, e.id, at, |job| {
                job.status = JobStatus::Running;
                job.started = Some(at);
                job.remote_job_id = e.remote_job_id;
            })?,
            Event::JobFinished(e) => runs::update(jobs, writes, e.id, at, |job| {
                job.status = e.status;
                job.finished = Some(at);
                job.elapsed_ms = Some(e.elapsed_ms);
                job.exit_code = e.exit_code;
                job.explanation = e.explanation;
                let tail = &e.stdout[e.stdout.len().saturating_sub(STDOUT_TAIL)..];
                job.stdout_tail = String::from_utf8_lossy(tail).into_owned();
                job.finished_revision = Some(record.revision);
            })?,
            Event::JobCancelRequested(e) => {
                runs::update(jobs, writes, e.id, at, |job| job.cancel_requested = true)?
            }
            Event::JobDurationExceeded(e) => {
                // Not a change by anyone: `modified` stays as the API showed it before.
                jobs.update(writes, e.id, |job| job.duration_exceeded = true)?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::job::{JobFinished, JobLaunched, LaunchedBy};
    use crate::domain::job_template::{CommandSpec, JobKind};
    use crate::journal::Metadata;
    use crate::projections::RunFilter;
    use crate::store::Store;

    fn fold(view: &mut JobRunsView, position: u64, event: Event) {
        let new = event.encode(Metadata::default());
        let record = RecordedEvent {
            position,
            stream: "job-1".into(),
            revision: 0,
            event_type: new.event_type,
            schema_version: new.schema_version,
            recorded_at: position as i64 * 1000,
            metadata: new.metadata,
            data: new.data.into(),
            compacted: false,
        };
        let mut writes = Writes::new(view.table());
        view.apply(&record, &mut writes).unwrap();
        writes.commit(position + 1).unwrap();
    }

    fn launched(id: u64, organization: u64, template: u64, by: LaunchedBy) -> Event {
        JobLaunched {
            id,
            organization,
            template,
            template_name: format!("t{template}"),
            kind: JobKind::Command(CommandSpec {
                argv: vec!["true".into()],
                env: Default::default(),
                working_dir: None,
            }),
            timeout_seconds: 60,
            alert_after_seconds: None,
            concurrency: 1,
            extra_vars: Default::default(),
            launched_by: by,
        }
        .into()
    }

    #[test]
    fn lists_filter_by_scope_template_status_and_origin_newest_first() {
        let store = Store::temporary().unwrap();
        let mut view = JobRunsView::open(store.table("jobs").unwrap()).unwrap();
        fold(&mut view, 1, launched(1, 1, 10, LaunchedBy::EventLog(77)));
        fold(
            &mut view,
            2,
            launched(2, 1, 11, LaunchedBy::User("admin".into())),
        );
        fold(
            &mut view,
            3,
            launched(3, 2, 20, LaunchedBy::User("admin".into())),
        );
        fold(
            &mut view,
            4,
            launched(4, 1, 10, LaunchedBy::User("token:5".into())),
        );
        fold(
            &mut view,
            5,
            JobFinished {
                id: 4,
                organization: 1,
                template: 10,
                status: JobStatus::Successful,
                exit_code: Some(0),
                elapsed_ms: 5,
                explanation: None,
                stdout: b"done".to_vec(),
            }
            .into(),
        );
        let ids = |filter: RunFilter| -> (u64, Vec<u64>) {
            let page = view.list(&filter, 0, 10).unwrap();
            (page.count, page.rows.iter().map(|j| j.id).collect())
        };
        assert_eq!(ids(RunFilter::default()), (4, vec![4, 3, 2, 1]));
        let org1 = RunFilter {
            organization: Some(1),
            ..RunFilter::default()
        };
        assert_eq!(ids(org1.clone()), (3, vec![4, 2, 1]));
        let template = RunFilter {
            template: Some(10),
            ..org1.clone()
        };
        assert_eq!(ids(template.clone()), (2, vec![4, 1]));
        // Another tenant naming this template sees nothing.
        assert_eq!(
            ids(RunFilter {
                organization: Some(2),
                ..template
            }),
            (0, vec![])
        );
        assert_eq!(
            ids(RunFilter {
                status: Some(JobStatus::Successful),
                ..org1.clone()
            }),
            (1, vec![4])
        );
        assert_eq!(
            ids(RunFilter {
                launched_by: Some("event_log:77".into()),
                ..org1
            }),
            (1, vec![1])
        );
        assert_eq!(
            ids(RunFilter {
                since: Some(3000),
                ..RunFilter::default()
            }),
            (2, vec![4, 3])
        );
        let finished = view.get(4).unwrap().unwrap();
        assert_eq!(
            (finished.stdout_tail.as_str(), finished.modified),
            ("done", 5000)
        );
    }
}
