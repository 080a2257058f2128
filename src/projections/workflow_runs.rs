//! Workflow jobs on disk: one row per run, with its nodes' progress, indexed by organization and
//! by template, newest first.

use super::StoredView;
use super::runs::{self, Runs, run_row};
use super::workflows::WorkflowJobRecord;
use crate::domain::Event;
use crate::domain::job::JobStatus;
use crate::domain::workflow::WorkflowRun;
use crate::journal::{EventFilter, RecordedEvent};
use crate::store::{StoreError, Table, Writes};

/// Every workflow job on disk.
pub type WorkflowRunsView = Runs<WorkflowJobRecord>;

run_row!(WorkflowJobRecord);

impl StoredView for Runs<WorkflowJobRecord> {
    const NAME: &'static str = "workflow_runs";
    const SCHEMA: u32 = 2;

    fn filter() -> EventFilter {
        EventFilter::category("workflow_job")
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
        let rows = self.rows();
        match event {
            Event::WorkflowLaunched(e) => {
                let run = WorkflowJobRecord {
                    id: e.id,
                    organization: e.organization,
                    template: e.template,
                    template_name: e.template_name,
                    status: JobStatus::Pending,
                    launched_by: e.launched_by,
                    extra_vars: e.extra_vars,
                    run: WorkflowRun::new(e.nodes),
                    started: None,
                    finished: None,
                    elapsed_ms: None,
                    explanation: None,
                    created: at,
                    modified: at,
                };
                rows.put(writes, e.id, &run)?;
            }
            Event::WorkflowStarted(e) => runs::update(rows, writes, e.id, at, |w| {
                w.status = JobStatus::Running;
                w.started = Some(at);
            })?,
            Event::WorkflowNodeLaunched(e) => {
                runs::update(rows, writes, e.id, at, |w| w.run.launched(&e.node, e.job))?
            }
            Event::WorkflowNodeCompleted(e) => runs::update(rows, writes, e.id, at, |w| {
                w.run.completed(&e.node, e.job, e.status)
            })?,
            Event::WorkflowCancelRequested(e) => {
                runs::update(rows, writes, e.id, at, |w| w.run.cancel())?
            }
            Event::WorkflowFinished(e) => runs::update(rows, writes, e.id, at, |w| {
                w.status = e.status;
                w.finished = Some(at);
                w.elapsed_ms = Some(e.elapsed_ms);
                w.explanation = e.explanation;
            })?,
            _ => {}
        }
        Ok(())
    }
}
