//! `/api/v2/job_templates/`: what jobs run; `launch/` runs one by hand.

use std::sync::Arc;

use serde_json::{Value, json};

use super::common::{launch_overrides, url_policy};
use super::jobs::render_job;
use super::templates::{Change, TemplateResource, template_events, visible};
use crate::app::App;
use crate::codec::RawJson;
use crate::domain::access::Principal;
use crate::domain::job::LaunchedBy;
use crate::domain::job_template::{
    self, JobKind, JobTemplateConfig, JobTemplateCreated, JobTemplateDeleted, JobTemplateInput,
    JobTemplateUpdated,
};
use crate::domain::{DomainError, Event, rfc3339};
use crate::http::auth::{authenticate, require_manage};
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, created};
use crate::http::{ApiError, Request, metadata};
use crate::jobs::launch::LaunchError;
use crate::projections::JobTemplateRecord;
use crate::secrets::{MASK, is_secret_name, mask, mask_secret_members, mask_text};

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
        "extra_vars": mask_secret_members(&c.extra_vars.to_value()),
        "concurrency": c.concurrency,
        "created": rfc3339(t.created),
        "modified": rfc3339(t.modified),
    });
    match &c.kind {
        JobKind::Command(spec) => {
            body["argv"] = json!(spec.argv);
            let env: serde_json::Map<String, Value> = spec
                .env
                .iter()
                .map(|(k, v)| {
                    let shown = if is_secret_name(k) {
                        MASK
                    } else {
                        mask_text(v)
                    };
                    (k.clone(), json!(shown))
                })
                .collect();
            body["env"] = Value::Object(env);
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

/// Whether `principal` may create or change a template of `kind` (see
/// [`JobTemplates::authorize`]).
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

/// The shared template handlers' view of job templates.
pub struct JobTemplates;

impl TemplateResource for JobTemplates {
    type Record = JobTemplateRecord;
    type Config = JobTemplateConfig;
    type Input = JobTemplateInput;
    const WHAT: &'static str = "A job template";

    fn find(app: &App, id: u64) -> Option<JobTemplateRecord> {
        app.views.jobs.read().template(id).cloned()
    }
    fn config(record: &JobTemplateRecord) -> &JobTemplateConfig {
        &record.config
    }
    fn next_id(app: &App) -> u64 {
        app.views.jobs.read().next_template_id()
    }
    fn stream(id: u64) -> String {
        job_template::stream(id)
    }
    fn organization(input: &JobTemplateInput) -> Option<u64> {
        input.organization
    }
    fn configure(
        app: &App,
        id: u64,
        organization: u64,
        current: Option<JobTemplateConfig>,
        input: JobTemplateInput,
    ) -> Result<JobTemplateConfig, DomainError> {
        let view = app.views.jobs.read();
        let before = current.clone();
        let mut config = job_template::configure(
            current,
            input,
            |token| app.master_key.seal(&token_field(id), token.as_bytes()),
            url_policy(app),
            |name| view.name_taken(organization, name),
        )?;
        // Secret variables and environment never reach the journal in clear.
        let key = &app.master_key;
        let before_vars = before.as_ref().map(|b| b.extra_vars.to_value());
        config.extra_vars = RawJson::from_value(
            &key.seal_secret_members_over(&config.extra_vars.to_value(), before_vars.as_ref()),
        );
        if let JobKind::Command(spec) = &mut config.kind {
            let before_env = match before.as_ref().map(|b| &b.kind) {
                Some(JobKind::Command(b)) => Some(&b.env),
                _ => None,
            };
            key.seal_texts(&mut spec.env, before_env, false);
        }
        Ok(config)
    }
    template_events!(JobTemplateCreated, JobTemplateUpdated, JobTemplateDeleted);
    fn render(app: &App, template: &JobTemplateRecord) -> Value {
        render(app, template)
    }

    /// Command templates run code as the server's user: only system admins may create, change
    /// or delete them, and only when the operator allows the kind.
    fn authorize(
        app: &App,
        principal: &Principal,
        change: Change<'_, Self>,
    ) -> Result<(), ApiError> {
        match change {
            Change::Create(input) => check_kind(app, principal, input.kind.as_deref()),
            Change::Update(current, input) => {
                check_kind(app, principal, Some(current.kind.name()))?;
                check_kind(app, principal, input.kind.as_deref())
            }
            Change::Delete(current) => {
                if matches!(current.kind, JobKind::Command(_)) && !principal.is_system_admin() {
                    return Err(ApiError::forbidden(
                        "Only a system admin may delete a command job template.",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// `POST /{id}/launch/ {"extra_vars": {...}}`: launches a job (201 with the job).
pub async fn launch(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let template = visible::<JobTemplates>(&app, &principal, id)?;
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
        .job_runs
        .wait_for(app.journal.next_position().saturating_sub(1))
        .await;
    let record = app
        .views
        .job_runs
        .read()
        .get(job)?
        .ok_or_else(|| ApiError::internal("job missing", job))?;
    Ok(created(&render_job(&app, &record)))
}

/// A launch refusal as an API error.
pub fn launch_error(e: LaunchError) -> ApiError {
    match e {
        LaunchError::NotFound(_) => ApiError::not_found(),
        LaunchError::Disabled(detail) => ApiError::conflict(detail),
        LaunchError::Journal(e) => e.into(),
        LaunchError::Sealing(detail) => ApiError::internal("data key", detail),
    }
}
