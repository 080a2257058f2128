//! Launching jobs and workflows, by hand or as rule actions: merge the extra variables, give
//! the run an id, journal its launch. The runner takes it from there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::notify::{Notifier, Summary};
use crate::actors::rule::{ActionLauncher, LaunchRequest};
use crate::codec::{EventBody, Protected, RawJson};
use crate::domain::Event;
use crate::domain::job::{self, Injected, JobLaunched, LaunchedBy, merge_extra_vars};
use crate::domain::job_template::JobKind;
use crate::domain::rule::ActionType;
use crate::domain::webhook::{ActionResult, ActionStatus};
use crate::domain::workflow::{self, WorkflowLaunched};
use crate::journal::{AppendError, ExpectedRevision, Journal, Metadata};
use crate::projections::{JobsView, Projection, WorkflowsView};
use crate::secrets::{DataKeys, MasterKey, Unreadable};

/// Why a launch did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The template does not exist in the organization.
    #[error("{0}")]
    NotFound(String),
    /// The operator switched this kind of job off.
    #[error("{0}")]
    Disabled(String),
    /// The journal refused the launch.
    #[error(transparent)]
    Journal(#[from] AppendError),
    /// The organization's data key could not seal the variables.
    #[error("the launch's variables cannot be sealed: {0}")]
    Sealing(String),
}

/// Ids for jobs and workflow jobs, continuing after the highest ever used.
#[derive(Debug, Default)]
pub struct Ids {
    jobs: AtomicU64,
    workflow_jobs: AtomicU64,
}

impl Ids {
    /// Continues after these highest ids (called once the read models have caught up).
    pub fn resume(&self, max_job: u64, max_workflow_job: u64) {
        self.jobs.fetch_max(max_job, Ordering::SeqCst);
        self.workflow_jobs
            .fetch_max(max_workflow_job, Ordering::SeqCst);
    }

    /// A new job id.
    pub fn next_job(&self) -> u64 {
        self.jobs.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A new workflow job id.
    pub fn next_workflow_job(&self) -> u64 {
        self.workflow_jobs.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Launches jobs, workflows and notifications.
pub struct Launcher {
    journal: Journal,
    jobs: Projection<JobsView>,
    workflows: Projection<WorkflowsView>,
    /// Id allocation.
    pub ids: Ids,
    notifier: Notifier,
    allow_commands: bool,
    master_key: Arc<MasterKey>,
    data_keys: Arc<DataKeys>,
}

impl Launcher {
    /// A launcher over the journal and read models.
    pub fn new(
        journal: Journal,
        jobs: Projection<JobsView>,
        workflows: Projection<WorkflowsView>,
        notifier: Notifier,
        allow_commands: bool,
        master_key: Arc<MasterKey>,
        data_keys: Arc<DataKeys>,
    ) -> Self {
        Self {
            journal,
            jobs,
            workflows,
            ids: Ids::default(),
            notifier,
            allow_commands,
            master_key,
            data_keys,
        }
    }

    /// Extra variables as a launch of `organization` records them (as event `kind`): merged,
    /// secret members sealed by the master key (the runner opens them when the job starts),
    /// and the whole sealed under the organization's data key, which erasure destroys.
    fn launch_vars(
        &self,
        organization: u64,
        kind: &str,
        template: &Value,
        overrides: &Value,
        injected: Option<Injected<'_>>,
    ) -> Result<Protected<RawJson>, LaunchError> {
        let merged = merge_extra_vars(template, overrides, injected);
        let vars = RawJson::from_value(&self.master_key.seal_secret_members(&merged));
        self.data_keys
            .seal(organization, kind, &vars)
            .map_err(|e| LaunchError::Sealing(e.to_string()))
    }

    /// The extra variables a launch recorded as event `kind`, opened (secret members stay
    /// sealed by the master key); an error says why they no longer open.
    pub fn open_vars(
        &self,
        organization: u64,
        kind: &str,
        vars: &Protected<RawJson>,
    ) -> Result<Value, String> {
        match self.data_keys.open(organization, kind, vars.clone()) {
            Ok(vars) if vars.0.is_empty() => {
                Err("the job's variables were removed by retention before it ran".into())
            }
            Ok(vars) => Ok(vars.to_value()),
            Err(Unreadable::Erased) => Err("the job's variables were erased before it ran".into()),
            Err(e) => Err(format!("the job's variables do not open: {e}")),
        }
    }

    /// The notifier.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Launches job template `template` of `organization` with `overrides` over its extra vars
    /// (and `injected` rule variables); returns the job id once the launch is durable.
    pub async fn launch_job(
        &self,
        template: u64,
        organization: u64,
        overrides: &Value,
        injected: Option<Injected<'_>>,
        launched_by: LaunchedBy,
        metadata: Metadata,
    ) -> Result<u64, LaunchError> {
        let id = self.ids.next_job();
        self.launch_job_as(
            id,
            template,
            organization,
            overrides,
            injected,
            launched_by,
            metadata,
        )
        .await?;
        Ok(id)
    }

    /// Launches with a given job id; an already launched id is a success (idempotent, so a
    /// workflow can relaunch a node whose launch a crash may have lost).
    #[allow(clippy::too_many_arguments)]
    pub async fn launch_job_as(
        &self,
        id: u64,
        template: u64,
        organization: u64,
        overrides: &Value,
        injected: Option<Injected<'_>>,
        launched_by: LaunchedBy,
        metadata: Metadata,
    ) -> Result<(), LaunchError> {
        let record = self
            .jobs
            .read()
            .template(template)
            .filter(|t| t.organization == organization)
            .cloned()
            .ok_or_else(|| {
                LaunchError::NotFound(format!("job template {template} does not exist"))
            })?;
        if matches!(record.config.kind, JobKind::Command(_)) && !self.allow_commands {
            return Err(LaunchError::Disabled(
                "command job templates are switched off on this server (jobs.allow_commands = false)".into(),
            ));
        }
        let extra_vars = self.launch_vars(
            organization,
            JobLaunched::TYPE,
            &record.config.extra_vars.to_value(),
            overrides,
            injected,
        )?;
        let launched = JobLaunched {
            id,
            organization,
            template,
            template_name: record.config.name.clone(),
            kind: record.config.kind.clone(),
            timeout_seconds: record.config.timeout_seconds,
            alert_after_seconds: record.config.alert_after_seconds,
            concurrency: record.config.concurrency,
            extra_vars,
            launched_by,
        };
        let result = self
            .journal
            .append(
                job::stream(id),
                ExpectedRevision::NoStream,
                vec![Event::from(launched).encode(metadata)],
            )
            .await;
        match result {
            Ok(_) | Err(AppendError::WrongExpectedRevision { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Launches workflow template `template`; returns the workflow job id once durable.
    pub async fn launch_workflow(
        &self,
        template: u64,
        organization: u64,
        overrides: &Value,
        injected: Option<Injected<'_>>,
        launched_by: LaunchedBy,
        metadata: Metadata,
    ) -> Result<u64, LaunchError> {
        let record = self
            .workflows
            .read()
            .template(template)
            .filter(|t| t.organization == organization)
            .cloned()
            .ok_or_else(|| {
                LaunchError::NotFound(format!("workflow job template {template} does not exist"))
            })?;
        let id = self.ids.next_workflow_job();
        let launched = WorkflowLaunched {
            id,
            organization,
            template,
            template_name: record.config.name.clone(),
            nodes: record.config.nodes.clone(),
            extra_vars: self.launch_vars(
                organization,
                WorkflowLaunched::TYPE,
                &record.config.extra_vars.to_value(),
                overrides,
                injected,
            )?,
            alert_after_seconds: record.config.alert_after_seconds,
            launched_by,
        };
        self.journal
            .append(
                workflow::job_stream(id),
                ExpectedRevision::NoStream,
                vec![Event::from(launched).encode(metadata)],
            )
            .await?;
        Ok(id)
    }
}

impl ActionLauncher for Launcher {
    fn launch(
        &self,
        request: LaunchRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = ActionResult> + Send + '_>> {
        Box::pin(async move {
            let action = &request.action;
            let metadata = Metadata {
                actor: format!("rule:{}", request.rule),
                correlation_id: request.correlation_id.clone(),
            };
            let payload = serde_json::from_slice(&request.webhook.payload()).unwrap_or(Value::Null);
            let injected = Injected {
                event_type: request.webhook.received.event_type.as_deref(),
                event_guid: request.webhook.received.event_guid.as_deref(),
                rule_name: &request.rule_name,
                payload,
                event_log_id: request.event_log_id,
            };
            let overrides = action.extra_vars.to_value();
            let launched_by = LaunchedBy::EventLog(request.event_log_id);
            let mut result = ActionResult {
                action_type: action.action_type,
                target_id: action.target_id,
                status: ActionStatus::Fired,
                job_id: None,
                workflow_job_id: None,
                error: None,
            };
            let outcome = match action.action_type {
                ActionType::LaunchJobTemplate => self
                    .launch_job(
                        action.target_id,
                        request.organization,
                        &overrides,
                        Some(injected),
                        launched_by,
                        metadata,
                    )
                    .await
                    .map(|id| result.job_id = Some(id))
                    .map_err(|e| e.to_string()),
                ActionType::LaunchWorkflow => self
                    .launch_workflow(
                        action.target_id,
                        request.organization,
                        &overrides,
                        Some(injected),
                        launched_by,
                        metadata,
                    )
                    .await
                    .map(|id| result.workflow_job_id = Some(id))
                    .map_err(|e| e.to_string()),
                ActionType::SendNotification => {
                    let summary = Summary {
                        rule_name: request.rule_name.clone(),
                        event_type: request.webhook.received.event_type.clone(),
                        event_guid: request.webhook.received.event_guid.clone(),
                        status: "fired".into(),
                        event_log_id: Some(request.event_log_id),
                    };
                    // Fired once the request is durable; the runner delivers it, with retries.
                    self.notifier
                        .request(action.target_id, request.organization, &summary, metadata)
                        .await
                        .map(drop)
                }
            };
            if let Err(e) = outcome {
                result.status = ActionStatus::Failed;
                result.error = Some(e);
            }
            result
        })
    }
}

/// Shared handle, as the rule actors take it.
pub type SharedLauncher = Arc<Launcher>;
