//! The runner: one actor that runs every job and drives every workflow.
//!
//! It folds the `job` and `workflow_job` streams into a [`RunnerState`] (only unfinished runs)
//! and reconciles it with the processes it owns after every batch and every second:
//! - **Pending jobs.** These start when their template has a free concurrency slot (launch
//!   order). A cancel requested before the start finishes them as canceled.
//! - **Running jobs.** A running job's task appends `job.started`, then `job.finished`. A job
//!   the log says was running, but that no task of this process owns, died with a previous
//!   process: a command is finished as `error`; a controller job is followed again.
//! - **Workflows.** The runner starts them, launches due nodes (recording the node's job id
//!   before launching it, so a crash in between relaunches the same id idempotently), records
//!   node completions, cancels node jobs on request, and finishes the workflow once its
//!   scheduler has an outcome.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::codec::EventBody;
use crate::delivery::retry::{Decision, RetryPolicy, decide};
use crate::domain::Event;
use crate::domain::job::{
    self, JobCancelRequested, JobDurationExceeded, JobFinished, JobLaunched, JobStarted, JobStatus,
    LaunchedBy,
};
use crate::domain::job_template::{self, JobKind};
use crate::domain::notification::NotificationSent;
use crate::domain::workflow::{
    self, NodeState, WorkflowDurationExceeded, WorkflowFinished, WorkflowLaunched,
    WorkflowNodeCompleted, WorkflowNodeLaunched, WorkflowStarted,
};
use crate::jobs::LiveOutput;
use crate::jobs::command::{self, Outcome, new_output};
use crate::jobs::controller::Controller;
use crate::jobs::launch::Launcher;
use crate::jobs::notify::{Summary, sent_from};
use crate::jobs::state::{PendingNotification, RunnerState};
use crate::journal::{
    EventFilter, ExpectedRevision, Journal, JournalError, Metadata, Position, RecordedEvent,
};
use crate::secrets::MasterKey;

use super::Parking;

/// Operator settings the runner obeys.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Between controller polls.
    pub controller_poll: Duration,
    /// `outbound.allow_private_networks`, for controller URLs.
    pub allow_private_networks: bool,
    /// `jobs.allow_commands`.
    pub allow_commands: bool,
    /// How notification sends are retried (the outbound delivery policy).
    pub notification_retry: RetryPolicy,
}

/// The runner actor.
pub struct Runner {
    /// The journal.
    pub journal: Journal,
    /// Launches workflow node jobs.
    pub launcher: Arc<Launcher>,
    /// Opens controller tokens.
    pub master_key: Arc<MasterKey>,
    /// Settings.
    pub settings: RunnerSettings,
    /// Live output of running jobs.
    pub live_output: LiveOutput,
    /// Where records the runner cannot process are set aside.
    pub parking: Parking,
}

/// Messages the runner handles.
pub enum RunnerMsg {
    /// Events from the subscription, which has read everything below the position.
    Events(Vec<RecordedEvent>, Position, RpcReplyPort<()>),
    /// A job task ended; this is the `job.finished` it appended (folded at once, so the job is
    /// never mistaken for one orphaned by a previous process).
    JobEnded(Box<JobFinished>),
    /// A notification attempt ended; this is its record (folded at once).
    NotificationAttempted(u64, Box<NotificationSent>),
    /// A workflow's duration alert may be due.
    Tick,
}

struct Active {
    template: u64,
    cancel: watch::Sender<bool>,
}

/// The runner's state.
pub struct RunnerActorState {
    /// When the next workflow duration alert falls due (µs), if a timer is set for it.
    alarm: Option<i64>,
    state: RunnerState,
    active: HashMap<u64, Active>,
    /// Notification requests with an attempt in progress.
    sending: HashSet<u64>,
    pump: Option<JoinHandle<()>>,
    snapshots: SnapshotProgress,
}

/// Where the runner's state was last saved, so that a restart folds only the journal's tail.
struct SnapshotProgress {
    /// The subscription has read everything below this.
    position: Position,
    applied: u64,
    saved_at_position: Position,
    saved_at: std::time::Instant,
}

/// Snapshots are only trusted by the build that wrote them.
fn snapshot_tag() -> String {
    format!("runner@{}", env!("CARGO_PKG_VERSION"))
}

fn system(correlation: String) -> Metadata {
    Metadata {
        actor: "system".into(),
        correlation_id: correlation,
    }
}

impl Runner {
    fn filter() -> EventFilter {
        EventFilter::Categories(vec![
            "job".into(),
            "workflow_job".into(),
            "notification".into(),
        ])
    }

    /// Appends `event` to `stream` and folds it at once (the log's copy is then a no-op).
    fn record(
        &self,
        actor: &mut RunnerActorState,
        stream: String,
        event: Event,
        correlation: &str,
    ) {
        let now = chrono::Utc::now().timestamp_micros();
        drop(self.journal.append(
            stream,
            ExpectedRevision::Any,
            vec![event.encode(system(correlation.to_owned()))],
        ));
        actor.state.apply(event, now, 0);
    }

    /// Folds one record; one that does not decode or panics is parked, not retried forever.
    /// The saved state and the position to resume from, or an empty state from the start.
    fn load_snapshot(&self) -> (RunnerState, Position) {
        match self.journal.load_snapshot(&snapshot_tag()) {
            Ok(Some((position, bytes))) => match postcard::from_bytes(&bytes) {
                Ok(state) => return (state, position),
                Err(e) => {
                    tracing::warn!(error = %e, "runner snapshot does not decode; folding the log")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "runner snapshot unreadable; folding the log"),
        }
        (RunnerState::default(), 0)
    }

    /// Saves `state` as of the subscription's position. The runner's own appends folded ahead
    /// of the log are in it too; folding them again from the tail is a no-op.
    fn save_snapshot(&self, state: &RunnerState, progress: &mut SnapshotProgress) {
        let saved = postcard::to_stdvec(state)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.journal
                    .save_snapshot(&snapshot_tag(), progress.position, &bytes)
                    .map_err(|e| e.to_string())
            });
        match saved {
            Ok(()) => {
                progress.applied = 0;
                progress.saved_at_position = progress.position;
                progress.saved_at = std::time::Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "runner snapshot not saved"),
        }
    }

    fn fold(&self, state: &mut RunnerState, record: &RecordedEvent) {
        match Event::decode(record) {
            Ok(Some(event)) => {
                self.parking.guard("runner", record, || {
                    state.apply(event, record.recorded_at, record.position)
                });
            }
            Ok(None) => {}
            Err(e) => self.parking.park(
                "runner",
                record.position,
                format!("{} does not decode: {e}", record.event_type),
            ),
        }
    }

    fn reconcile(&self, myself: &ActorRef<RunnerMsg>, actor: &mut RunnerActorState) {
        self.reconcile_jobs(myself, actor);
        self.reconcile_workflows(actor);
        self.reconcile_notifications(myself, actor);
        self.set_alarm(myself, actor);
    }

    /// Starts an attempt for every notification request that is due and not being sent.
    fn reconcile_notifications(&self, myself: &ActorRef<RunnerMsg>, actor: &mut RunnerActorState) {
        let now = chrono::Utc::now().timestamp_micros();
        let due: Vec<(u64, PendingNotification)> = actor
            .state
            .notifications
            .iter()
            .filter(|(request, n)| {
                !actor.sending.contains(request) && n.next_at.is_none_or(|at| at <= now)
            })
            .map(|(request, n)| (*request, n.clone()))
            .collect();
        for (request, pending) in due {
            actor.sending.insert(request);
            let launcher = self.launcher.clone();
            let policy = self.settings.notification_retry.clone();
            let myself = myself.clone();
            tokio::spawn(async move {
                let sent = attempt_notification(&launcher, request, &pending, &policy).await;
                let _ = myself.cast(RunnerMsg::NotificationAttempted(request, Box::new(sent)));
            });
        }
    }

    /// Sets a timer for the earliest workflow duration alert or notification retry still to come
    /// (the runner has no periodic tick: an idle runner wakes no one).
    fn set_alarm(&self, myself: &ActorRef<RunnerMsg>, actor: &mut RunnerActorState) {
        let alerts = actor
            .state
            .workflows
            .values()
            .filter(|w| !w.alerted)
            .filter_map(|w| {
                w.launched
                    .alert_after_seconds
                    .map(|s| w.launched_at + s as i64 * 1_000_000)
            });
        let retries = actor.state.notifications.values().filter_map(|n| n.next_at);
        let next = alerts.chain(retries).min();
        let Some(due) = next else { return };
        if actor.alarm.is_some_and(|set| set <= due) {
            return;
        }
        actor.alarm = Some(due);
        let wait = (due - chrono::Utc::now().timestamp_micros()).max(0) as u64;
        myself.send_after(Duration::from_micros(wait), || RunnerMsg::Tick);
    }

    fn reconcile_jobs(&self, myself: &ActorRef<RunnerMsg>, actor: &mut RunnerActorState) {
        let open: Vec<_> = actor.state.jobs.values().cloned().collect();
        for job in open {
            let id = job.launched.id;
            if let Some(active) = actor.active.get(&id) {
                if job.cancel_requested {
                    let _ = active.cancel.send(true);
                }
                continue;
            }
            let finish = |status, explanation: &str| JobFinished {
                id,
                organization: job.launched.organization,
                template: job.launched.template,
                status,
                exit_code: None,
                elapsed_ms: 0,
                explanation: Some(explanation.to_owned()),
                stdout: Vec::new(),
            };
            if let Some(started_at) = job.started_at {
                match (&job.launched.kind, job.remote_job_id) {
                    (JobKind::Controller(_), Some(remote)) => {
                        let age = chrono::Utc::now()
                            .timestamp_micros()
                            .saturating_sub(started_at)
                            .max(0) as u64;
                        self.spawn_job(
                            myself,
                            actor,
                            job.launched.clone(),
                            Some((remote, Duration::from_micros(age))),
                        );
                    }
                    _ => {
                        let event = finish(
                            JobStatus::Error,
                            "the server stopped while this job was running; its process died with it",
                        );
                        self.record(actor, job::stream(id), event.into(), &format!("job-{id}"));
                    }
                }
                continue;
            }
            if job.cancel_requested {
                self.record(
                    actor,
                    job::stream(id),
                    finish(JobStatus::Canceled, "canceled before it started").into(),
                    &format!("job-{id}"),
                );
                continue;
            }
            let running = actor
                .active
                .values()
                .filter(|a| a.template == job.launched.template)
                .count();
            if running < job.launched.concurrency as usize {
                self.spawn_job(myself, actor, job.launched.clone(), None);
            }
        }
    }

    fn reconcile_workflows(&self, actor: &mut RunnerActorState) {
        let ids: Vec<u64> = actor.state.workflows.keys().copied().collect();
        for id in ids {
            let Some(workflow) = actor.state.workflows.get(&id).cloned() else {
                continue;
            };
            let organization = workflow.launched.organization;
            let template = workflow.launched.template;
            let correlation = format!("workflow_job-{id}");
            let stream = workflow::job_stream(id);
            if !workflow.started {
                self.record(
                    actor,
                    stream.clone(),
                    WorkflowStarted {
                        id,
                        organization,
                        template,
                    }
                    .into(),
                    &correlation,
                );
            }
            // Node jobs that finished: record their completion (this makes successors due).
            for (node, state) in &workflow.run.states {
                if let NodeState::Running(job) = state
                    && let Some(status) = workflow.job_results.get(job)
                {
                    let event = WorkflowNodeCompleted {
                        id,
                        organization,
                        template,
                        node: node.clone(),
                        job: *job,
                        status: *status,
                    };
                    self.record(actor, stream.clone(), event.into(), &correlation);
                }
            }
            let Some(workflow) = actor.state.workflows.get(&id).cloned() else {
                continue;
            };
            if workflow.run.canceled {
                for job in workflow.run.running_jobs() {
                    if actor
                        .state
                        .jobs
                        .get(&job)
                        .is_some_and(|j| !j.cancel_requested)
                    {
                        self.record(
                            actor,
                            job::stream(job),
                            JobCancelRequested {
                                id: job,
                                organization,
                            }
                            .into(),
                            &correlation,
                        );
                    }
                }
            }
            // Nodes whose launch may have been lost in a crash: relaunch the same job id.
            for (node, state) in &workflow.run.states {
                if let NodeState::Running(job) = state
                    && !actor.state.jobs.contains_key(job)
                    && !workflow.job_results.contains_key(job)
                {
                    self.launch_node(actor, id, node, *job, &workflow);
                }
            }
            for node in workflow.run.due.iter() {
                let job = self.launcher.ids.next_job();
                let event = WorkflowNodeLaunched {
                    id,
                    organization,
                    node: node.clone(),
                    job,
                };
                self.record(actor, stream.clone(), event.into(), &correlation);
                self.launch_node(actor, id, node, job, &workflow);
            }
            let Some(workflow) = actor.state.workflows.get(&id).cloned() else {
                continue;
            };
            if let Some(alert) = workflow.launched.alert_after_seconds
                && !workflow.alerted
                && chrono::Utc::now().timestamp_micros() - workflow.launched_at
                    >= alert as i64 * 1_000_000
            {
                let event = WorkflowDurationExceeded {
                    id,
                    organization,
                    template,
                    alert_after_seconds: alert,
                };
                self.record(actor, stream.clone(), event.into(), &correlation);
            }
            if let Some((status, explanation)) = workflow.run.outcome() {
                let elapsed_ms = ((chrono::Utc::now().timestamp_micros() - workflow.launched_at)
                    .max(0)
                    / 1000) as u64;
                let event = WorkflowFinished {
                    id,
                    organization,
                    template,
                    status,
                    elapsed_ms,
                    explanation,
                };
                self.record(actor, stream, event.into(), &correlation);
            }
        }
    }

    /// Launches a node's job (idempotently, by id). A template that no longer exists makes the
    /// node fail at once.
    fn launch_node(
        &self,
        actor: &mut RunnerActorState,
        workflow_job: u64,
        node: &str,
        job: u64,
        workflow: &crate::jobs::state::OpenWorkflow,
    ) {
        let Some(spec) = workflow.run.node(node).cloned() else {
            return;
        };
        let organization = workflow.launched.organization;
        let template = workflow.launched.template;
        let overrides = self.launcher.open_vars(
            organization,
            WorkflowLaunched::TYPE,
            &workflow.launched.extra_vars,
        );
        let launcher = self.launcher.clone();
        let journal = self.journal.clone();
        let node = node.to_owned();
        let by = LaunchedBy::Workflow {
            workflow_job,
            node: node.clone(),
        };
        let metadata = system(format!("workflow_job-{workflow_job}"));
        // Launching appends and awaits durability: do it off the actor; its events come back
        // through the subscription.
        tokio::spawn(async move {
            let launched = match overrides {
                Ok(overrides) => launcher
                    .launch_job_as(
                        job,
                        spec.job_template,
                        organization,
                        &overrides,
                        None,
                        by,
                        metadata.clone(),
                    )
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = launched {
                tracing::warn!(workflow_job, node, error = %e, "workflow node could not launch");
                let completed = WorkflowNodeCompleted {
                    id: workflow_job,
                    organization,
                    template,
                    node,
                    job,
                    status: JobStatus::Error,
                };
                drop(journal.append(
                    workflow::job_stream(workflow_job),
                    ExpectedRevision::Any,
                    vec![Event::from(completed).encode(metadata)],
                ));
            }
        });
        let _ = actor;
    }

    fn spawn_job(
        &self,
        myself: &ActorRef<RunnerMsg>,
        actor: &mut RunnerActorState,
        launched: JobLaunched,
        resume: Option<(u64, Duration)>,
    ) {
        let (cancel, cancel_rx) = watch::channel(false);
        actor.active.insert(
            launched.id,
            Active {
                template: launched.template,
                cancel,
            },
        );
        let journal = self.journal.clone();
        let settings = self.settings.clone();
        let master_key = self.master_key.clone();
        let vars = self.launcher.open_vars(
            launched.organization,
            JobLaunched::TYPE,
            &launched.extra_vars,
        );
        let live = self.live_output.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            let finished = run_job(
                journal, launched, vars, settings, master_key, live, cancel_rx, resume,
            )
            .await;
            let _ = myself.cast(RunnerMsg::JobEnded(Box::new(finished)));
        });
    }
}

/// Makes one attempt at a notification request, decides what follows under the retry policy
/// and records the attempt (returned, to be folded at once).
async fn attempt_notification(
    launcher: &Launcher,
    request: u64,
    pending: &PendingNotification,
    policy: &RetryPolicy,
) -> NotificationSent {
    let r = &pending.requested;
    let summary = Summary {
        rule_name: r.rule_name.clone(),
        event_type: r.event_type.clone(),
        event_guid: r.event_guid.clone(),
        status: r.status.clone(),
        event_log_id: r.event_log_id,
    };
    let attempt = pending.attempts + 1;
    let notifier = launcher.notifier();
    let sent = match notifier.attempt(r.template, r.organization, &summary).await {
        Ok(outcome) => {
            let jitter = rand::random::<f64>();
            let next = match decide(
                policy,
                attempt,
                outcome.class(),
                outcome.retry_after,
                jitter,
            ) {
                Decision::RetryAfter(delay) => {
                    Some(chrono::Utc::now().timestamp_micros() + delay.as_micros() as i64)
                }
                Decision::Delivered | Decision::DeadLetter | Decision::DisableEndpoint { .. } => {
                    None
                }
            };
            sent_from(
                r.template,
                r.organization,
                Some(request),
                attempt,
                r.event_log_id,
                &outcome,
                next,
            )
        }
        // The template is gone (or its secret does not open): nothing to retry.
        Err(error) => NotificationSent {
            template: r.template,
            organization: r.organization,
            request: Some(request),
            attempt,
            next_attempt_at: None,
            event_log_id: r.event_log_id,
            delivered: false,
            response_status: None,
            error: Some(error),
            duration_ms: 0,
        },
    };
    if let Err(e) = notifier
        .record(sent.clone(), system(format!("notification-{request}")))
        .await
    {
        tracing::error!(request, error = %e, "could not record a notification attempt");
    }
    sent
}

/// Runs one job with its opened extra variables `vars` to its end and journals `job.started`,
/// `job.duration_exceeded` and `job.finished` (which it returns).
#[allow(clippy::too_many_arguments)]
async fn run_job(
    journal: Journal,
    launched: JobLaunched,
    vars: Result<Value, String>,
    settings: RunnerSettings,
    master_key: Arc<MasterKey>,
    live: LiveOutput,
    cancel: watch::Receiver<bool>,
    resume: Option<(u64, Duration)>,
) -> JobFinished {
    let id = launched.id;
    let metadata = system(format!("job-{id}"));
    let append = |event: Event| {
        journal.append(
            job::stream(id),
            ExpectedRevision::Any,
            vec![event.encode(metadata.clone())],
        )
    };
    let started_event = |remote_job_id| JobStarted {
        id,
        organization: launched.organization,
        template: launched.template,
        remote_job_id,
    };
    let timeout = Duration::from_secs(launched.timeout_seconds);
    let began = Instant::now() - resume.map_or(Duration::ZERO, |(_, age)| age);
    let output = new_output();
    live.lock()
        .expect("live output poisoned")
        .insert(id, output.clone());

    // The duration alert fires once if the job is still running past its threshold.
    let alert = launched.alert_after_seconds.map(|seconds| {
        let journal = journal.clone();
        let metadata = metadata.clone();
        let event = JobDurationExceeded {
            id,
            organization: launched.organization,
            template: launched.template,
            alert_after_seconds: seconds,
        };
        let wait = Duration::from_secs(seconds).saturating_sub(began.elapsed());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = journal
                .append(
                    job::stream(id),
                    ExpectedRevision::Any,
                    vec![Event::from(event).encode(metadata)],
                )
                .await;
        })
    });

    // Secrets sealed in the variables and environment are opened for the job itself only.
    let opened = vars.and_then(|vars| {
        master_key
            .open_secret_members(&vars)
            .map_err(|e| format!("the job's secret variables do not open: {e}"))
    });
    let outcome = match (&launched.kind, opened) {
        (_, Err(explanation)) => Outcome {
            status: JobStatus::Error,
            exit_code: None,
            explanation: Some(explanation),
            stdout: Vec::new(),
        },
        (JobKind::Command(spec), Ok(_)) if !settings.allow_commands => Outcome {
            status: JobStatus::Error,
            exit_code: None,
            explanation: Some("command job templates are switched off on this server (jobs.allow_commands = false)".into()),
            stdout: Vec::new(),
        },
        (JobKind::Command(spec), Ok(vars)) => {
            let mut spec = spec.clone();
            let opened_env: Result<(), _> = spec.env.values_mut().try_for_each(|v| {
                *v = master_key.open_text(v)?;
                Ok::<_, crate::secrets::SecretError>(())
            });
            match opened_env {
                Err(e) => Outcome { status: JobStatus::Error, exit_code: None, explanation: Some(format!("the job's environment does not open: {e}")), stdout: Vec::new() },
                Ok(()) => {
                    let vars = serde_json::to_vec(&vars).expect("JSON values serialize");
                    let started = append(started_event(None).into());
                    let outcome = command::run(&spec, &vars, timeout, settings.kill_grace, cancel, output.clone(), || {}).await;
                    let _ = started.await;
                    outcome
                }
            }
        }
        (JobKind::Controller(spec), Ok(vars)) => {
            let field = format!("{}/controller_token", job_template::stream(launched.template));
            match master_key.open_string(&field, &spec.token).map_err(|e| e.to_string()).and_then(|token| {
                Controller::new(&spec.controller_url, token, spec.ssl_verify, settings.allow_private_networks)
            }) {
                Err(e) => Outcome { status: JobStatus::Error, exit_code: None, explanation: Some(e), stdout: Vec::new() },
                Ok(controller) => {
                    let remote = match resume {
                        Some((remote, _)) => Ok(remote),
                        None => controller.launch(spec.remote_id, &vars).await,
                    };
                    match remote {
                        Err(e) => Outcome { status: JobStatus::Error, exit_code: None, explanation: Some(e), stdout: Vec::new() },
                        Ok(remote) => {
                            if resume.is_none() {
                                let _ = append(started_event(Some(remote)).into()).await;
                            }
                            controller.follow(remote, began, timeout, settings.controller_poll, cancel).await
                        }
                    }
                }
            }
        }
    };
    if let Some(alert) = alert {
        alert.abort();
    }
    let finished = JobFinished {
        id,
        organization: launched.organization,
        template: launched.template,
        status: outcome.status,
        exit_code: outcome.exit_code,
        elapsed_ms: began.elapsed().as_millis() as u64,
        explanation: outcome.explanation,
        stdout: outcome.stdout,
    };
    if let Err(e) = append(finished.clone().into()).await {
        tracing::error!(job = id, error = %e, "could not record the end of a job");
    }
    live.lock().expect("live output poisoned").remove(&id);
    finished
}

impl Actor for Runner {
    type Msg = RunnerMsg;
    type State = RunnerActorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        // Fold everything since the snapshot (only unfinished runs are kept), then follow live.
        let head = self.journal.next_position();
        let (mut state, from) = self.load_snapshot();
        let mut subscription = self.journal.subscribe(from, Self::filter());
        while subscription.position() < head {
            for record in subscription.next_batch(1024).await? {
                self.fold(&mut state, &record);
            }
        }
        let mut snapshots = SnapshotProgress {
            position: subscription.position(),
            applied: 0,
            saved_at_position: from,
            saved_at: std::time::Instant::now(),
        };
        if snapshots.position > from {
            self.save_snapshot(&state, &mut snapshots);
        }
        let pump_self = myself.clone();
        let pump = tokio::spawn(async move {
            loop {
                match subscription.next_batch(1024).await {
                    Ok(batch) => {
                        let next = subscription.position();
                        if ractor::call!(pump_self, RunnerMsg::Events, batch, next).is_err() {
                            break;
                        }
                    }
                    Err(JournalError::Closed(_)) => break,
                    Err(e) => {
                        pump_self.stop(Some(format!("journal read failed: {e}")));
                        break;
                    }
                }
            }
        });
        Ok(RunnerActorState {
            alarm: None,
            state,
            active: HashMap::new(),
            sending: HashSet::new(),
            pump: Some(pump),
            snapshots,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        actor: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.reconcile(&myself, actor);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        actor: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RunnerMsg::Events(events, next, reply) => {
                for record in &events {
                    self.fold(&mut actor.state, record);
                }
                let progress = &mut actor.snapshots;
                progress.position = next;
                progress.applied += events.len() as u64;
                if super::projector::snapshot_due(
                    progress.applied,
                    next.saturating_sub(progress.saved_at_position),
                    progress.saved_at.elapsed(),
                ) {
                    self.save_snapshot(&actor.state, progress);
                }
                let _ = reply.send(());
            }
            RunnerMsg::JobEnded(finished) => {
                actor.active.remove(&finished.id);
                actor
                    .state
                    .apply((*finished).into(), chrono::Utc::now().timestamp_micros(), 0);
            }
            RunnerMsg::NotificationAttempted(request, sent) => {
                actor.sending.remove(&request);
                actor
                    .state
                    .apply((*sent).into(), chrono::Utc::now().timestamp_micros(), 0);
            }
            RunnerMsg::Tick => actor.alarm = None,
        }
        self.reconcile(&myself, actor);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        actor: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(pump) = actor.pump.take() {
            pump.abort();
        }
        if actor.snapshots.position > actor.snapshots.saved_at_position {
            self.save_snapshot(&actor.state, &mut actor.snapshots);
        }
        Ok(())
    }
}
