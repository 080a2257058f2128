//! The runner's state: a pure fold of the job and workflow streams that keeps only unfinished
//! runs. The runner reconciles it with the processes it owns; its own appends are folded at
//! once and again when they come back from the log, so every apply is idempotent.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::Event;
use crate::domain::job::{JobLaunched, JobStatus, LaunchedBy};
use crate::domain::notification::NotificationRequested;
use crate::domain::workflow::{WorkflowLaunched, WorkflowRun};

/// A launched job that has not finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenJob {
    /// Its launch.
    pub launched: JobLaunched,
    /// When it started (µs), once started.
    pub started_at: Option<i64>,
    /// The controller's job id.
    pub remote_job_id: Option<u64>,
    /// A cancel was requested.
    pub cancel_requested: bool,
}

/// A workflow job that has not finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenWorkflow {
    /// Its launch.
    pub launched: WorkflowLaunched,
    /// Node progress.
    pub run: WorkflowRun,
    /// `workflow.started` was recorded.
    pub started: bool,
    /// Launch time (µs).
    pub launched_at: i64,
    /// `workflow.duration_exceeded` was recorded.
    pub alerted: bool,
    /// Results of node jobs that finished, by job id, not yet recorded as node completions.
    pub job_results: HashMap<u64, JobStatus>,
}

/// A notification request not yet delivered (or given up on).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingNotification {
    /// The request.
    pub requested: NotificationRequested,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (µs); `None`: now.
    pub next_at: Option<i64>,
}

/// Unfinished jobs, workflows and notifications.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunnerState {
    /// Unfinished jobs, by id (launch order).
    pub jobs: BTreeMap<u64, OpenJob>,
    /// Unfinished workflow jobs, by id.
    pub workflows: BTreeMap<u64, OpenWorkflow>,
    /// Notification requests still to deliver, by request (journal position).
    pub notifications: BTreeMap<u64, PendingNotification>,
}

impl RunnerState {
    /// Folds one event (recorded at `at`, µs, at journal `position`; the runner's own appends are
    /// folded before they have a position, and none of them needs it).
    pub fn apply(&mut self, event: Event, at: i64, position: u64) {
        match event {
            Event::NotificationRequested(e) => {
                self.notifications
                    .entry(position)
                    .or_insert(PendingNotification {
                        requested: e,
                        attempts: 0,
                        next_at: None,
                    });
            }
            Event::NotificationSent(e) => {
                let Some(request) = e.request else { return };
                if e.delivered || e.next_attempt_at.is_none() {
                    self.notifications.remove(&request);
                } else if let Some(pending) = self.notifications.get_mut(&request)
                    && e.attempt >= pending.attempts
                {
                    pending.attempts = e.attempt;
                    pending.next_at = e.next_attempt_at;
                }
            }
            Event::JobLaunched(e) => {
                self.jobs.entry(e.id).or_insert(OpenJob {
                    launched: e,
                    started_at: None,
                    remote_job_id: None,
                    cancel_requested: false,
                });
            }
            Event::JobStarted(e) => {
                if let Some(job) = self.jobs.get_mut(&e.id) {
                    job.started_at.get_or_insert(at);
                    job.remote_job_id = job.remote_job_id.or(e.remote_job_id);
                }
            }
            Event::JobCancelRequested(e) => {
                if let Some(job) = self.jobs.get_mut(&e.id) {
                    job.cancel_requested = true;
                }
            }
            Event::JobFinished(e) => {
                if let Some(job) = self.jobs.remove(&e.id)
                    && let LaunchedBy::Workflow { workflow_job, .. } = job.launched.launched_by
                    && let Some(workflow) = self.workflows.get_mut(&workflow_job)
                {
                    workflow.job_results.insert(e.id, e.status);
                }
            }
            Event::WorkflowLaunched(e) => {
                let run = WorkflowRun::new(e.nodes.clone());
                self.workflows.entry(e.id).or_insert(OpenWorkflow {
                    launched: e,
                    run,
                    started: false,
                    launched_at: at,
                    alerted: false,
                    job_results: HashMap::new(),
                });
            }
            Event::WorkflowStarted(e) => {
                if let Some(w) = self.workflows.get_mut(&e.id) {
                    w.started = true;
                }
            }
            Event::WorkflowNodeLaunched(e) => {
                if let Some(w) = self.workflows.get_mut(&e.id) {
                    w.run.launched(&e.node, e.job);
                }
            }
            Event::WorkflowNodeCompleted(e) => {
                if let Some(w) = self.workflows.get_mut(&e.id) {
                    if !matches!(
                        w.run.states.get(&e.node),
                        Some(crate::domain::workflow::NodeState::Done(..))
                    ) {
                        w.run.completed(&e.node, e.job, e.status);
                    }
                    w.job_results.remove(&e.job);
                }
            }
            Event::WorkflowCancelRequested(e) => {
                if let Some(w) = self.workflows.get_mut(&e.id) {
                    w.run.cancel();
                }
            }
            Event::WorkflowDurationExceeded(e) => {
                if let Some(w) = self.workflows.get_mut(&e.id) {
                    w.alerted = true;
                }
            }
            Event::WorkflowFinished(e) => {
                self.workflows.remove(&e.id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RawJson;
    use crate::domain::job::{JobFinished, JobStarted};
    use crate::domain::job_template::{CommandSpec, JobKind};
    use crate::domain::workflow::{WorkflowNode, WorkflowNodeCompleted, WorkflowNodeLaunched};

    fn launched(id: u64, by: LaunchedBy) -> Event {
        JobLaunched {
            id,
            organization: 1,
            template: 1,
            template_name: "t".into(),
            kind: JobKind::Command(CommandSpec {
                argv: vec!["true".into()],
                env: Default::default(),
                working_dir: None,
            }),
            timeout_seconds: 10,
            alert_after_seconds: None,
            concurrency: 1,
            extra_vars: crate::codec::Protected::Clear(RawJson::from_value(&serde_json::json!({}))),
            launched_by: by,
        }
        .into()
    }

    fn finished(id: u64, status: JobStatus) -> Event {
        JobFinished {
            id,
            organization: 1,
            template: 1,
            status,
            exit_code: None,
            elapsed_ms: 1,
            explanation: None,
            stdout: vec![],
        }
        .into()
    }

    #[test]
    fn jobs_open_and_close_and_applies_are_idempotent() {
        let mut state = RunnerState::default();
        state.apply(launched(1, LaunchedBy::User("admin".into())), 0, 0);
        state.apply(launched(1, LaunchedBy::User("admin".into())), 0, 0);
        state.apply(
            JobStarted {
                id: 1,
                organization: 1,
                template: 1,
                remote_job_id: Some(9),
            }
            .into(),
            5,
            0,
        );
        state.apply(
            JobStarted {
                id: 1,
                organization: 1,
                template: 1,
                remote_job_id: None,
            }
            .into(),
            7,
            0,
        );
        assert_eq!(
            (state.jobs[&1].started_at, state.jobs[&1].remote_job_id),
            (Some(5), Some(9))
        );
        state.apply(finished(1, JobStatus::Successful), 9, 0);
        state.apply(finished(1, JobStatus::Successful), 9, 0);
        assert!(state.jobs.is_empty());
    }

    #[test]
    fn node_results_wait_until_recorded_as_completions() {
        let mut state = RunnerState::default();
        let nodes = vec![WorkflowNode {
            id: "a".into(),
            job_template: 1,
            success_nodes: vec![],
            failure_nodes: vec![],
            always_nodes: vec![],
        }];
        state.apply(
            WorkflowLaunched {
                id: 3,
                organization: 1,
                template: 1,
                template_name: "w".into(),
                nodes,
                extra_vars: crate::codec::Protected::Clear(RawJson::from_value(
                    &serde_json::json!({}),
                )),
                alert_after_seconds: None,
                launched_by: LaunchedBy::User("admin".into()),
            }
            .into(),
            0,
            0,
        );
        state.apply(
            WorkflowNodeLaunched {
                id: 3,
                organization: 1,
                node: "a".into(),
                job: 7,
            }
            .into(),
            1,
            0,
        );
        state.apply(
            launched(
                7,
                LaunchedBy::Workflow {
                    workflow_job: 3,
                    node: "a".into(),
                },
            ),
            1,
            0,
        );
        state.apply(finished(7, JobStatus::Failed), 2, 0);
        assert_eq!(
            state.workflows[&3].job_results.get(&7),
            Some(&JobStatus::Failed)
        );
        let completed = WorkflowNodeCompleted {
            id: 3,
            organization: 1,
            template: 1,
            node: "a".into(),
            job: 7,
            status: JobStatus::Failed,
        };
        state.apply(completed.clone().into(), 3, 0);
        state.apply(completed.into(), 3, 0);
        assert!(state.workflows[&3].job_results.is_empty());
        assert_eq!(
            state.workflows[&3].run.outcome().map(|o| o.0),
            Some(JobStatus::Failed)
        );
    }
}
