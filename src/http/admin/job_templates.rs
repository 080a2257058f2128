//! `/api/v2/job_templates/`: what jobs run; `launch/` runs one by hand.

use std::sync::Arc;

use serde_json::{Value, json};

use super::common::{launch_overrides, target_organization, url_policy};
use super::jobs::render_job;
use crate::app::App;
use crate::domain::access::Principal;
use crate::domain::job::LaunchedBy;
use crate::domain::job_template::{
    self, JobKind, JobTemplateConfig, JobTemplateCreated, JobTemplateDeleted, JobTemplateInput,
    JobTemplateUpdated,
};
use crate::domain::{organization_unchanged, rfc3339};
use crate::http::auth::{authenticate, require_manage, require_read};
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, created, no_content, ok};
use crate::http::{ApiError, Request, metadata};
use crate::jobs::launch::LaunchError;
use crate::journal::ExpectedRevision;
use crate::projections::JobTemplateRecord;
use crate::secrets::mask;

fn token_field(id: u64) -> String {
    format!("{}/controller_token", job_template::stream(id))
}

fn render(app: &App, t: &JobTemplateRecord) -> Value {
    let c = &t.config;
    let mut body = json!({
        "id": t.id,
        "type": "job_template",
        "url": format!("/api/v2/job_templates/{}/", t.id),
        "name": c.name,
        "description": c.description,
        "organization": t.organization,
        "kind": c.kind.name(),
        "timeout_seconds": c.timeout_seconds,
        "alert_after_seconds": c.alert_after_seconds,
        "extra_vars": c.extra_vars.to_value(),
        "concurrency": c.concurrency,
        "created": rfc3339(t.created),
        "modified": rfc3339(t.modified),
    });
    match &c.kind {
        JobKind::Command(spec) => {
            body["argv"] = json!(spec.argv);
            body["env"] = json!(spec.env);
            body["working_dir"] = json!(spec.working_dir);
        }
        JobKind::Controller(spec) => {
            body["controller_url"] = json!(spec.controller_url);
            body["remote_id"] = json!(spec.remote_id);
            body["ssl_verify"] = json!(spec.ssl_verify);
            let token = app
                .master_key
                .open_string(&token_field(t.id), &spec.token)
                .map(|t| mask(&t));
            body["controller_token"] = json!(token.unwrap_or_else(|_| "***".into()));
        }
    }
    body
}

fn visible(app: &App, principal: &Principal, id: u64) -> Result<JobTemplateRecord, ApiError> {
    let template = app
        .views
        .jobs
        .read()
        .template(id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    require_read(principal, template.organization)?;
    Ok(template)
}

/// Command templates run code as the server's user: only system admins may create or change
/// them, and only when the operator allows the kind.
fn check_kind(app: &App, principal: &Principal, kind: Option<&str>) -> Result<(), ApiError> {
    if kind != Some("command") {
        return Ok(());
    }
    if !app.config.jobs.allow_commands {
        return Err(ApiError::field(
            "kind",
            "Command job templates are switched off on this server (jobs.allow_commands = false).",
        ));
    }
    if !principal.is_system_admin() {
        return Err(ApiError::forbidden(
            "A command job template runs code as the server's user: only a system admin may create or change one.",
        ));
    }
    Ok(())
}

/// `GET`: filters `organization`, `name`, `kind`.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let organization = req.query_parsed::<u64>("organization", "an organization id")?;
    let (name, kind) = (
        req.query("name").filter(|v| !v.is_empty()),
        req.query("kind").filter(|v| !v.is_empty()),
    );
    let scope = principal.scope();
    let templates: Vec<JobTemplateRecord> = app
        .views
        .jobs
        .read()
        .templates()
        .rev()
        .filter(|t| {
            scope.is_none_or(|o| t.organization == o)
                && organization.is_none_or(|o| t.organization == o)
        })
        .filter(|t| {
            name.is_none_or(|n| t.config.name == n)
                && kind.is_none_or(|k| t.config.kind.name() == k)
        })
        .cloned()
        .collect();
    paginate_iter(&req, templates.iter().map(|t| render(&app, t)))
}

/// `POST`.
pub async fn create(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let input: JobTemplateInput = req.json()?;
    let organization = target_organization(&app, &principal, input.organization)?;
    check_kind(&app, &principal, input.kind.as_deref())?;
    let _serial = app.commands.lock().await;
    let id = app.views.jobs.read().next_template_id();
    let config = {
        let view = app.views.jobs.read();
        job_template::configure(
            None,
            JobTemplateInput {
                organization: None,
                ..input
            },
            |token| app.master_key.seal(&token_field(id), token.as_bytes()),
            url_policy(&app),
            |name| view.name_taken(organization, name),
        )?
    };
    let event = JobTemplateCreated {
        id,
        organization,
        config,
    };
    app.commit(
        &metadata(&principal, &req),
        job_template::stream(id),
        ExpectedRevision::NoStream,
        vec![event.into()],
    )
    .await?;
    let template = app
        .views
        .jobs
        .read()
        .template(id)
        .cloned()
        .ok_or_else(|| ApiError::internal("template missing", id))?;
    Ok(created(&render(&app, &template)))
}

/// `GET /{id}`.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    Ok(ok(&render(
        &app,
        &visible(&app, &principal, req.id("id")?)?,
    )))
}

/// `PATCH /{id}`.
pub async fn update(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let current = visible(&app, &principal, id)?;
    require_manage(&principal, current.organization)?;
    let input: JobTemplateInput = req.json()?;
    check_kind(&app, &principal, Some(current.config.kind.name()))?;
    check_kind(&app, &principal, input.kind.as_deref())?;
    organization_unchanged("A job template", current.organization, input.organization)
        .into_result()?;
    let _serial = app.commands.lock().await;
    let config: JobTemplateConfig = {
        let view = app.views.jobs.read();
        job_template::configure(
            Some(current.config.clone()),
            input,
            |token| app.master_key.seal(&token_field(id), token.as_bytes()),
            url_policy(&app),
            |name| view.name_taken(current.organization, name),
        )?
    };
    if config != current.config {
        let event = JobTemplateUpdated {
            id,
            organization: current.organization,
            config,
        };
        app.commit(
            &metadata(&principal, &req),
            job_template::stream(id),
            ExpectedRevision::StreamExists,
            vec![event.into()],
        )
        .await?;
    }
    Ok(ok(&render(&app, &visible(&app, &principal, id)?)))
}

/// `DELETE /{id}`: its jobs remain.
pub async fn delete(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let current = visible(&app, &principal, id)?;
    require_manage(&principal, current.organization)?;
    if matches!(current.config.kind, JobKind::Command(_)) && !principal.is_system_admin() {
        return Err(ApiError::forbidden(
            "Only a system admin may delete a command job template.",
        ));
    }
    let _serial = app.commands.lock().await;
    let event = JobTemplateDeleted {
        id,
        organization: current.organization,
        name: current.config.name.clone(),
    };
    app.commit(
        &metadata(&principal, &req),
        job_template::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    Ok(no_content())
}

/// `POST /{id}/launch/ {"extra_vars": {...}}`: launches a job (201 with the job).
pub async fn launch(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let template = visible(&app, &principal, id)?;
    require_manage(&principal, template.organization)?;
    let overrides = launch_overrides(&req)?;
    let job = app
        .launcher
        .launch_job(
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
        .jobs
        .wait_for(app.journal.next_position().saturating_sub(1))
        .await;
    let record = app
        .views
        .jobs
        .read()
        .job(job)
        .cloned()
        .ok_or_else(|| ApiError::internal("job missing", job))?;
    Ok(created(&render_job(&record)))
}

/// A launch refusal as an API error.
pub fn launch_error(e: LaunchError) -> ApiError {
    match e {
        LaunchError::NotFound(_) => ApiError::not_found(),
        LaunchError::Disabled(detail) => ApiError::conflict(detail),
        LaunchError::Journal(e) => e.into(),
    }
}
