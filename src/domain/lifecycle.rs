//! Job and workflow lifecycle events as outbound endpoints receive them:
//! `job.started`, `job.succeeded`, `job.failed`, `job.canceled`, `job.duration_exceeded`,
//! `workflow.started`, `workflow.node_completed`, `workflow.succeeded`, `workflow.failed`,
//! `workflow.canceled`, `workflow.duration_exceeded`.
//!
//! The envelope's resource is the template (`job_template` / `workflow_job_template` and its
//! id), so an endpoint can follow one workflow with `event.resource_id == 7`; the run itself
//! (job or workflow job id, status, `elapsed` in seconds) is in the payload, so
//! `event.payload.elapsed > 600` selects slow ones.

use serde_json::json;

use super::Event;
use super::job::{JobDurationExceeded, JobFinished, JobStarted, JobStatus};
use super::published::{BuiltinType, Deliverable};
use super::workflow::{
    WorkflowDurationExceeded, WorkflowFinished, WorkflowNodeCompleted, WorkflowStarted,
};
use crate::codec::{EventBody, Protected, RawJson};

/// Journal event types that become lifecycle deliveries.
pub const JOURNAL_TYPES: &[&str] = &[
    JobStarted::TYPE,
    JobFinished::TYPE,
    JobDurationExceeded::TYPE,
    WorkflowStarted::TYPE,
    WorkflowNodeCompleted::TYPE,
    WorkflowFinished::TYPE,
    WorkflowDurationExceeded::TYPE,
];

fn outcome(prefix: &str, status: JobStatus) -> String {
    let verb = match status {
        JobStatus::Successful => "succeeded",
        JobStatus::Canceled => "canceled",
        _ => "failed",
    };
    format!("{prefix}.{verb}")
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The deliverable view of a lifecycle event recorded at `at` (µs), if it is one.
pub fn deliverable(event: Event, at: i64) -> Option<Deliverable> {
    let job =
        |organization, template: u64, event_type: String, payload: serde_json::Value| Deliverable {
            organization,
            event_type,
            resource_type: "job_template".into(),
            resource_id: template.to_string(),
            payload: Protected::Clear(RawJson::from_value(&payload)),
            occurred_at: at,
        };
    let workflow =
        |organization, template: u64, event_type: String, payload: serde_json::Value| Deliverable {
            organization,
            event_type,
            resource_type: "workflow_job_template".into(),
            resource_id: template.to_string(),
            payload: Protected::Clear(RawJson::from_value(&payload)),
            occurred_at: at,
        };
    Some(match event {
        Event::JobStarted(e) => job(
            e.organization,
            e.template,
            "job.started".into(),
            json!({"job_id": e.id, "job_template": e.template, "status": "running", "remote_job_id": e.remote_job_id,
                   "job_url": format!("/api/v2/jobs/{}/", e.id)}),
        ),
        Event::JobFinished(e) => job(
            e.organization,
            e.template,
            outcome("job", e.status),
            json!({"job_id": e.id, "job_template": e.template, "status": e.status, "exit_code": e.exit_code,
                   "elapsed": seconds(e.elapsed_ms), "job_explanation": e.explanation,
                   "job_url": format!("/api/v2/jobs/{}/", e.id)}),
        ),
        Event::JobDurationExceeded(e) => job(
            e.organization,
            e.template,
            "job.duration_exceeded".into(),
            json!({"job_id": e.id, "job_template": e.template, "status": "running",
                   "alert_after_seconds": e.alert_after_seconds, "elapsed": e.alert_after_seconds,
                   "job_url": format!("/api/v2/jobs/{}/", e.id)}),
        ),
        Event::WorkflowStarted(e) => workflow(
            e.organization,
            e.template,
            "workflow.started".into(),
            json!({"workflow_job_id": e.id, "workflow_job_template": e.template, "status": "running"}),
        ),
        Event::WorkflowNodeCompleted(e) => workflow(
            e.organization,
            e.template,
            "workflow.node_completed".into(),
            json!({"workflow_job_id": e.id, "workflow_job_template": e.template, "node": e.node, "job_id": e.job,
                   "status": e.status}),
        ),
        Event::WorkflowFinished(e) => workflow(
            e.organization,
            e.template,
            outcome("workflow", e.status),
            json!({"workflow_job_id": e.id, "workflow_job_template": e.template, "status": e.status,
                   "elapsed": seconds(e.elapsed_ms), "job_explanation": e.explanation}),
        ),
        Event::WorkflowDurationExceeded(e) => workflow(
            e.organization,
            e.template,
            "workflow.duration_exceeded".into(),
            json!({"workflow_job_id": e.id, "workflow_job_template": e.template, "status": "running",
                   "alert_after_seconds": e.alert_after_seconds, "elapsed": e.alert_after_seconds}),
        ),
        _ => return None,
    })
}

/// The lifecycle types `GET /api/v2/event_types/` lists.
pub const BUILTIN_TYPES: &[BuiltinType] = &[
    BuiltinType {
        name: "job.started",
        description: "A job started running (a command's process, or a controller job was launched).",
        example: r#"{"job_id": 12, "job_template": 5, "status": "running", "remote_job_id": null, "job_url": "/api/v2/jobs/12/"}"#,
    },
    BuiltinType {
        name: "job.succeeded",
        description: "A job finished successfully.",
        example: r#"{"job_id": 12, "job_template": 5, "status": "successful", "exit_code": 0, "elapsed": 42.7, "job_explanation": null, "job_url": "/api/v2/jobs/12/"}"#,
    },
    BuiltinType {
        name: "job.failed",
        description: "A job failed (non-zero exit, timeout, remote failure) or errored (it could not run, or the server stopped while it ran).",
        example: r#"{"job_id": 12, "job_template": 5, "status": "failed", "exit_code": 2, "elapsed": 3.1, "job_explanation": "exited with code 2", "job_url": "/api/v2/jobs/12/"}"#,
    },
    BuiltinType {
        name: "job.canceled",
        description: "A job was canceled on request.",
        example: r#"{"job_id": 12, "job_template": 5, "status": "canceled", "exit_code": null, "elapsed": 9.0, "job_explanation": "canceled on request", "job_url": "/api/v2/jobs/12/"}"#,
    },
    BuiltinType {
        name: "job.duration_exceeded",
        description: "A job is still running after its template's alert_after_seconds.",
        example: r#"{"job_id": 12, "job_template": 5, "status": "running", "alert_after_seconds": 600, "elapsed": 600, "job_url": "/api/v2/jobs/12/"}"#,
    },
    BuiltinType {
        name: "workflow.started",
        description: "A workflow job started its first nodes.",
        example: r#"{"workflow_job_id": 3, "workflow_job_template": 7, "status": "running"}"#,
    },
    BuiltinType {
        name: "workflow.node_completed",
        description: "One node of a workflow job finished; one event per node, with its job and status.",
        example: r#"{"workflow_job_id": 3, "workflow_job_template": 7, "node": "build", "job_id": 12, "status": "successful"}"#,
    },
    BuiltinType {
        name: "workflow.succeeded",
        description: "A workflow job finished and every failure (if any) was handled by a failure or always edge.",
        example: r#"{"workflow_job_id": 3, "workflow_job_template": 7, "status": "successful", "elapsed": 120.5, "job_explanation": null}"#,
    },
    BuiltinType {
        name: "workflow.failed",
        description: "A workflow job finished with a node failure that no failure or always edge handled.",
        example: r#"{"workflow_job_id": 3, "workflow_job_template": 7, "status": "failed", "elapsed": 30.2, "job_explanation": "node(s) build failed with no failure path"}"#,
    },
    BuiltinType {
        name: "workflow.canceled",
        description: "A workflow job was canceled on request.",
        example: r#"{"workflow_job_id": 3, "workflow_job_template": 7, "status": "canceled", "elapsed": 8.0, "job_explanation": "canceled on request"}"#,
    },
    BuiltinType {
        name: "workflow.duration_exceeded",
        description: "A workflow job is still running after its template's alert_after_seconds.",
        example: r#"{"workflow_job_id": 3, "workflow_job_template": 7, "status": "running", "alert_after_seconds": 900, "elapsed": 900}"#,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_jobs_map_to_their_outcome_and_carry_elapsed() {
        let finished = |status| JobFinished {
            id: 12,
            organization: 1,
            template: 5,
            status,
            exit_code: Some(2),
            elapsed_ms: 720_500,
            explanation: None,
            stdout: vec![],
        };
        for (status, name) in [
            (JobStatus::Successful, "job.succeeded"),
            (JobStatus::Failed, "job.failed"),
            (JobStatus::Error, "job.failed"),
            (JobStatus::Canceled, "job.canceled"),
        ] {
            let d = deliverable(finished(status).into(), 7).unwrap();
            assert_eq!(d.event_type, name);
            assert_eq!(
                (d.resource_type.as_str(), d.resource_id.as_str()),
                ("job_template", "5")
            );
            assert_eq!(d.payload.clear().unwrap().to_value()["elapsed"], 720.5);
            assert_eq!(d.payload.clear().unwrap().to_value()["job_id"], 12);
        }
        let done = WorkflowFinished {
            id: 3,
            organization: 1,
            template: 7,
            status: JobStatus::Failed,
            elapsed_ms: 1,
            explanation: None,
        };
        let d = deliverable(done.into(), 0).unwrap();
        assert_eq!(
            (d.event_type.as_str(), d.resource_id.as_str()),
            ("workflow.failed", "7")
        );
        let names: Vec<&str> = BUILTIN_TYPES.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), 11);
    }
}
