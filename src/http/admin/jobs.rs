//! `/api/v2/jobs/`: runs of job templates, their output, cancellation.

use std::sync::Arc;

use serde_json::{Value, json};
use warp::http::StatusCode;

use super::common::{choice, time};
use super::runs;
use crate::app::App;
use crate::codec::EventBody;
use crate::domain::Event;
use crate::domain::access::Principal;
use crate::domain::job::{self, JobCancelRequested, JobLaunched, JobStatus};
use crate::domain::rfc3339;
use crate::http::auth::{authenticate, require_manage};
use crate::http::response::{Response, json, ok, text};
use crate::http::{ApiError, Request, metadata};
use crate::journal::ExpectedRevision;
use crate::projections::{JobRecord, RunFilter};

/// A job as the API shows it (secrets in extra variables redacted).
pub fn render_job(app: &App, j: &JobRecord) -> Value {
    json!({
        "id": j.id,
        "type": "job",
        "url": format!("/api/v2/jobs/{}/", j.id),
        "job_template": j.template,
        "job_template_name": j.template_name,
        "organization": j.organization,
        "kind": j.kind,
        "status": j.status,
        "failed": matches!(j.status, JobStatus::Failed | JobStatus::Error),
        "started": time(j.started),
        "finished": time(j.finished),
        "elapsed": j.elapsed_ms.map(|ms| ms as f64 / 1000.0),
        "extra_vars": runs::extra_vars(app, j.organization, JobLaunched::TYPE, &j.extra_vars),
        "result_stdout": j.stdout_tail,
        "exit_code": j.exit_code,
        "job_explanation": j.explanation,
        "launched_by": j.launched_by.to_json(),
        "remote_job_id": j.remote_job_id,
        "duration_exceeded": j.duration_exceeded,
        "cancel_requested": j.cancel_requested,
        "created": rfc3339(j.created),
        "modified": rfc3339(j.modified),
    })
}

fn visible(app: &App, req: &Request) -> Result<(Principal, JobRecord), ApiError> {
    runs::visible(app, req, |id| app.views.job_runs.read().get(id))
}

/// `GET`: filters `job_template`, `status`, `launched_by` (`event_log:<id>`, `token:<id>`,
/// `admin`, `workflow_job:<id>`), `since`.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let template = req.query_parsed::<u64>("job_template", "a job template id")?;
    let status = choice(&req, "status", JobStatus::parse, JobStatus::NAMES)?;
    let launched_by = req.query("launched_by").filter(|v| !v.is_empty());
    let since = req.query_time("since")?;
    let filter = RunFilter {
        organization: principal.scope(),
        template,
        status,
        launched_by: launched_by.map(str::to_owned),
        since,
    };
    runs::list(&req, &app.views.job_runs.read(), &filter, |j| {
        render_job(&app, j)
    })
}

/// `GET /{id}`.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let (_, job) = visible(&app, &req)?;
    Ok(ok(&render_job(&app, &job)))
}

/// `GET /{id}/stdout/`: the captured output (live while running; the last 1 MiB).
pub async fn stdout(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let (_, job) = visible(&app, &req)?;
    let bytes = match job.finished_revision {
        Some(revision) => {
            let record = app
                .journal
                .read_stream(&job::stream(job.id), revision, 1)?
                .into_iter()
                .next();
            match record.as_ref().map(Event::decode) {
                Some(Ok(Some(Event::JobFinished(finished)))) => finished.stdout,
                _ => Vec::new(),
            }
        }
        None => app
            .live_output
            .lock()
            .expect("live output poisoned")
            .get(&job.id)
            .map(|tail| tail.lock().expect("output poisoned").to_vec())
            .unwrap_or_default(),
    };
    Ok(text(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// `POST /{id}/cancel/`: SIGTERM, then SIGKILL after the grace period; the job ends `canceled`.
pub async fn cancel(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let (principal, job) = visible(&app, &req)?;
    require_manage(&principal, job.organization)?;
    runs::unfinished("Job", job.id, job.status)?;
    let event = JobCancelRequested {
        id: job.id,
        organization: job.organization,
    };
    app.commit(
        &metadata(&principal, &req),
        job::stream(job.id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    let job = app
        .views
        .job_runs
        .read()
        .get(job.id)?
        .ok_or_else(ApiError::not_found)?;
    Ok(json(StatusCode::ACCEPTED, &render_job(&app, &job)))
}
