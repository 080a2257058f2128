//! `/api/v2/workflow_job_templates/` and `/api/v2/workflow_jobs/`: graphs of job templates and
//! their runs.

use std::sync::Arc;

use serde_json::{Value, json};
use warp::http::StatusCode;

use super::common::{choice, launch_overrides, time};
use super::job_templates::launch_error;
use super::runs;
use super::templates::{TemplateResource, template_events, visible};
use crate::app::App;
use crate::codec::EventBody;
use crate::domain::access::Principal;
use crate::domain::job::{JobStatus, LaunchedBy};
use crate::domain::workflow::{
    self, NodeState, WorkflowCancelRequested, WorkflowConfig, WorkflowInput, WorkflowLaunched,
    WorkflowTemplateCreated, WorkflowTemplateDeleted, WorkflowTemplateUpdated,
};
use crate::domain::{DomainError, Event, rfc3339};
use crate::http::auth::{authenticate, require_manage};
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, created, json, ok};
use crate::http::{ApiError, Request, metadata};
use crate::journal::ExpectedRevision;
use crate::projections::{RunFilter, WorkflowJobRecord, WorkflowTemplateRecord};

fn render_template(t: &WorkflowTemplateRecord) -> Value {
    json!({
        "id": t.id,
        "type": "workflow_job_template",
        "url": format!("/api/v2/workflow_job_templates/{}/", t.id),
        "name": t.config.name,
        "description": t.config.description,
        "organization": t.organization,
        "nodes": t.config.nodes,
        "extra_vars": t.config.extra_vars.to_value(),
        "alert_after_seconds": t.config.alert_after_seconds,
        "created": rfc3339(t.created),
        "modified": rfc3339(t.modified),
    })
}

fn render_job(app: &App, w: &WorkflowJobRecord) -> Value {
    let nodes: Vec<Value> = w
        .run
        .nodes
        .iter()
        .map(|n| {
            let (job, status) = match w.run.states.get(&n.id) {
                Some(NodeState::Running(job)) => (Some(*job), "running"),
                Some(NodeState::Done(job, status)) => (Some(*job), status.as_str()),
                _ => (None, "not_run"),
            };
            json!({"id": n.id, "job_template": n.job_template, "job": job, "status": status,
                   "success_nodes": n.success_nodes, "failure_nodes": n.failure_nodes, "always_nodes": n.always_nodes})
        })
        .collect();
    json!({
        "id": w.id,
        "type": "workflow_job",
        "url": format!("/api/v2/workflow_jobs/{}/", w.id),
        "workflow_job_template": w.template,
        "name": w.template_name,
        "organization": w.organization,
        "status": w.status,
        "failed": matches!(w.status, JobStatus::Failed | JobStatus::Error),
        "started": time(w.started),
        "finished": time(w.finished),
        "elapsed": w.elapsed_ms.map(|ms| ms as f64 / 1000.0),
        "extra_vars": runs::extra_vars(app, w.organization, WorkflowLaunched::TYPE, &w.extra_vars),
        "launched_by": w.launched_by.to_json(),
        "job_explanation": w.explanation,
        "nodes": nodes,
        "created": rfc3339(w.created),
        "modified": rfc3339(w.modified),
    })
}

fn template_exists(app: &App, organization: u64) -> impl Fn(u64) -> bool + '_ {
    move |id| {
        app.views
            .jobs
            .read()
            .template(id)
            .is_some_and(|t| t.organization == organization)
    }
}

/// `GET /workflow_job_templates/`.
pub async fn list_templates(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let organization = req.query_parsed::<u64>("organization", "an organization id")?;
    let scope = principal.scope();
    let items: Vec<Value> = app
        .views
        .workflows
        .read()
        .templates()
        .rev()
        .filter(|t| {
            scope.is_none_or(|o| t.organization == o)
                && organization.is_none_or(|o| t.organization == o)
        })
        .map(render_template)
        .collect();
    paginate_iter(&req, items.into_iter())
}

/// The shared template handlers' view of workflow job templates.
pub struct WorkflowTemplates;

impl TemplateResource for WorkflowTemplates {
    type Record = WorkflowTemplateRecord;
    type Config = WorkflowConfig;
    type Input = WorkflowInput;
    const WHAT: &'static str = "A workflow";

    fn find(app: &App, id: u64) -> Option<WorkflowTemplateRecord> {
        app.views.workflows.read().template(id).cloned()
    }
    fn config(record: &WorkflowTemplateRecord) -> &WorkflowConfig {
        &record.config
    }
    fn next_id(app: &App) -> u64 {
        app.views.workflows.read().next_template_id()
    }
    fn stream(id: u64) -> String {
        workflow::template_stream(id)
    }
    fn organization(input: &WorkflowInput) -> Option<u64> {
        input.organization
    }
    fn configure(
        app: &App,
        _id: u64,
        organization: u64,
        current: Option<WorkflowConfig>,
        input: WorkflowInput,
    ) -> Result<WorkflowConfig, DomainError> {
        let view = app.views.workflows.read();
        let before = current.as_ref().map(|c| c.extra_vars.to_value());
        let mut config =
            workflow::configure(current, input, template_exists(app, organization), |n| {
                view.name_taken(organization, n)
            })?;
        config.extra_vars = crate::codec::RawJson::from_value(
            &app.master_key
                .seal_secret_members_over(&config.extra_vars.to_value(), before.as_ref()),
        );
        Ok(config)
    }
    template_events!(
        WorkflowTemplateCreated,
        WorkflowTemplateUpdated,
        WorkflowTemplateDeleted
    );
    fn render(_app: &App, template: &WorkflowTemplateRecord) -> Value {
        render_template(template)
    }
}

/// `POST /workflow_job_templates/{id}/launch/ {"extra_vars": {...}}`.
pub async fn launch(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let template = visible::<WorkflowTemplates>(&app, &principal, id)?;
    require_manage(&principal, template.organization)?;
    let overrides = launch_overrides(&req)?;
    let job = app
        .launcher
        .launch_workflow(
            id,
            template.organization,
            &overrides,
            None,
            LaunchedBy::User(principal.actor()),
            metadata(&principal, &req),
        )
        .await
        .map_err(launch_error)?;
    app.views
        .workflow_runs
        .wait_for(app.journal.next_position().saturating_sub(1))
        .await;
    let record = app
        .views
        .workflow_runs
        .read()
        .get(job)?
        .ok_or_else(|| ApiError::internal("workflow job missing", job))?;
    Ok(created(&render_job(&app, &record)))
}

/// `GET /workflow_jobs/`: filters `workflow_job_template`, `status`.
pub async fn list_jobs(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let template =
        req.query_parsed::<u64>("workflow_job_template", "a workflow job template id")?;
    let status = choice(&req, "status", JobStatus::parse, JobStatus::NAMES)?;
    let filter = RunFilter {
        organization: principal.scope(),
        template,
        status,
        ..RunFilter::default()
    };
    runs::list(&req, &app.views.workflow_runs.read(), &filter, |w| {
        render_job(&app, w)
    })
}

fn visible_job(app: &App, req: &Request) -> Result<(Principal, WorkflowJobRecord), ApiError> {
    runs::visible(app, req, |id| app.views.workflow_runs.read().get(id))
}

/// `GET /workflow_jobs/{id}`: with each node's status.
pub async fn job_detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let (_, job) = visible_job(&app, &req)?;
    Ok(ok(&render_job(&app, &job)))
}

/// `POST /workflow_jobs/{id}/cancel/`: cancels running node jobs; nothing more launches.
pub async fn cancel(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let (principal, job) = visible_job(&app, &req)?;
    require_manage(&principal, job.organization)?;
    runs::unfinished("Workflow job", job.id, job.status)?;
    let event = WorkflowCancelRequested {
        id: job.id,
        organization: job.organization,
    };
    app.commit(
        &metadata(&principal, &req),
        workflow::job_stream(job.id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    let job = app
        .views
        .workflow_runs
        .read()
        .get(job.id)?
        .ok_or_else(ApiError::not_found)?;
    Ok(json(StatusCode::ACCEPTED, &render_job(&app, &job)))
}
