//! Jobs: one run of a job template, as an event-sourced stream `job-<id>`:
//! `job.launched` → `job.started` → `job.finished`, with cancel requests and duration alerts
//! along the way. The lifecycle events are what outbound webhooks publish.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::event::{AuditInfo, Audited};
use super::job_template::JobKind;
use crate::codec::{CodecError, EventBody, Protected, RawJson, decode_as};

/// Stream of one job.
pub fn stream(id: u64) -> String {
    format!("job-{id}")
}

/// Where a job stands (AWX's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Launched, waiting for a concurrency slot.
    Pending,
    /// Being started (a controller launch in flight).
    Waiting,
    /// Running.
    Running,
    /// Finished with success.
    Successful,
    /// Finished with failure (non-zero exit, timeout, remote failure).
    Failed,
    /// Could not run properly (launch error, or the server stopped while it ran).
    Error,
    /// Canceled.
    Canceled,
}

impl JobStatus {
    /// Every status, as the API names them.
    pub const NAMES: &'static str =
        "pending, waiting, running, successful, failed, error, canceled";

    /// Parses the API name.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(Value::String(name.to_owned())).ok()
    }

    /// Whether the job has finished.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Successful | Self::Failed | Self::Error | Self::Canceled
        )
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Successful => "successful",
            Self::Failed => "failed",
            Self::Error => "error",
            Self::Canceled => "canceled",
        }
    }
}

/// Who launched a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LaunchedBy {
    /// A rule, for this event log.
    EventLog(u64),
    /// An API caller (`token:<id>` or `admin`).
    User(String),
    /// A workflow job, for one of its nodes.
    Workflow {
        /// The workflow job.
        workflow_job: u64,
        /// The node id.
        node: String,
    },
}

impl LaunchedBy {
    /// As the API shows it.
    pub fn to_json(&self) -> Value {
        match self {
            LaunchedBy::EventLog(id) => serde_json::json!({"type": "event_log", "id": id}),
            LaunchedBy::User(actor) => serde_json::json!({"type": "user", "id": actor}),
            LaunchedBy::Workflow { workflow_job, node } => {
                serde_json::json!({"type": "workflow_job", "id": workflow_job, "node": node})
            }
        }
    }
}

/// A job was launched; it runs when its template has a free concurrency slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLaunched {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// The template.
    pub template: u64,
    /// The template's name at launch.
    pub template_name: String,
    /// What runs (a snapshot: later template edits do not change a launched job).
    pub kind: JobKind,
    /// Seconds before it is killed.
    pub timeout_seconds: u64,
    /// Seconds before `job.duration_exceeded`.
    pub alert_after_seconds: Option<u64>,
    /// The template's concurrency limit at launch.
    pub concurrency: u32,
    /// Merged extra variables (JSON object), sealed under the organization's data key: they
    /// carry `forge_eda_payload`, a copy of the webhook's payload.
    pub extra_vars: Protected<RawJson>,
    /// Who launched it.
    pub launched_by: LaunchedBy,
}

/// [`JobLaunched`] v1, before extra variables were sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct JobLaunchedV1 {
    id: u64,
    organization: u64,
    template: u64,
    template_name: String,
    kind: JobKind,
    timeout_seconds: u64,
    alert_after_seconds: Option<u64>,
    concurrency: u32,
    extra_vars: RawJson,
    launched_by: LaunchedBy,
}

impl EventBody for JobLaunched {
    const TYPE: &'static str = "job.launched";
    const VERSION: u16 = 2;

    fn upcast(version: u16, data: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_as::<JobLaunchedV1>(Self::TYPE, 1, data).map(|v1| Self {
                id: v1.id,
                organization: v1.organization,
                template: v1.template,
                template_name: v1.template_name,
                kind: v1.kind,
                timeout_seconds: v1.timeout_seconds,
                alert_after_seconds: v1.alert_after_seconds,
                concurrency: v1.concurrency,
                extra_vars: Protected::Clear(v1.extra_vars),
                launched_by: v1.launched_by,
            }),
            _ => Err(CodecError::UnknownVersion {
                event_type: Self::TYPE,
                version,
            }),
        }
    }
}

/// A job started running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStarted {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Template.
    pub template: u64,
    /// The controller's job id, for controller jobs.
    pub remote_job_id: Option<u64>,
}

impl EventBody for JobStarted {
    const TYPE: &'static str = "job.started";
}

/// A job finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFinished {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Template.
    pub template: u64,
    /// Final status.
    pub status: JobStatus,
    /// Process exit code (commands), when it exited.
    pub exit_code: Option<i32>,
    /// Milliseconds from start to finish.
    pub elapsed_ms: u64,
    /// Why it failed, errored or was canceled.
    pub explanation: Option<String>,
    /// The last (at most 1 MiB) of its output.
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
}

impl EventBody for JobFinished {
    const TYPE: &'static str = "job.finished";
}

/// Someone asked to cancel a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCancelRequested {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
}

impl EventBody for JobCancelRequested {
    const TYPE: &'static str = "job.cancel_requested";
}

/// A job has been running longer than its template's `alert_after_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDurationExceeded {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Template.
    pub template: u64,
    /// The threshold crossed.
    pub alert_after_seconds: u64,
}

impl EventBody for JobDurationExceeded {
    const TYPE: &'static str = "job.duration_exceeded";
}

fn audit(id: u64, organization: u64, details: Value) -> Option<AuditInfo> {
    Some(AuditInfo {
        organization: Some(organization),
        resource_type: "job",
        resource_id: id.to_string(),
        details,
    })
}

impl Audited for JobLaunched {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"job_template": self.template, "launched_by": self.launched_by.to_json()}),
        )
    }
}

impl Audited for JobCancelRequested {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, serde_json::json!({}))
    }
}

impl Audited for JobStarted {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

impl Audited for JobFinished {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

impl Audited for JobDurationExceeded {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

/// What a rule injects into the extra variables of what it launches.
#[derive(Debug, Clone)]
pub struct Injected<'a> {
    /// Provider event type.
    pub event_type: Option<&'a str>,
    /// Provider delivery id.
    pub event_guid: Option<&'a str>,
    /// The rule's name.
    pub rule_name: &'a str,
    /// The full payload.
    pub payload: Value,
    /// The event log id.
    pub event_log_id: u64,
}

/// Merges extra variables, later layers winning per top-level key: template defaults, then the
/// action's (or launch request's) variables, then, for rule launches, the injected
/// `forge_eda_*` variables.
pub fn merge_extra_vars(
    template: &Value,
    overrides: &Value,
    injected: Option<Injected<'_>>,
) -> Value {
    let mut merged = Map::new();
    for layer in [template, overrides] {
        if let Value::Object(map) = layer {
            merged.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    if let Some(i) = injected {
        merged.insert(
            "forge_eda_event_type".into(),
            i.event_type
                .map_or(Value::Null, |t| Value::String(t.into())),
        );
        merged.insert(
            "forge_eda_event_guid".into(),
            i.event_guid
                .map_or(Value::Null, |g| Value::String(g.into())),
        );
        merged.insert(
            "forge_eda_rule_name".into(),
            Value::String(i.rule_name.into()),
        );
        merged.insert("forge_eda_payload".into(), i.payload);
        merged.insert("forge_eda_event_log_id".into(), Value::from(i.event_log_id));
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_vars_merge_in_order_and_injected_win() {
        let merged = merge_extra_vars(
            &json!({"env": "dev", "region": "eu", "forge_eda_rule_name": "spoofed"}),
            &json!({"env": "prod"}),
            Some(Injected {
                event_type: Some("push"),
                event_guid: Some("g"),
                rule_name: "deploy",
                payload: json!({"ref": "main"}),
                event_log_id: 7,
            }),
        );
        assert_eq!(merged["env"], "prod");
        assert_eq!(merged["region"], "eu");
        assert_eq!(merged["forge_eda_rule_name"], "deploy");
        assert_eq!(merged["forge_eda_payload"]["ref"], "main");
        assert_eq!(merged["forge_eda_event_log_id"], 7);
        assert_eq!(
            merge_extra_vars(&json!({"a": 1}), &json!(null), None),
            json!({"a": 1})
        );
    }

    #[test]
    fn v1_launches_upcast_with_their_variables_in_the_clear() {
        let v1 = JobLaunchedV1 {
            id: 4,
            organization: 2,
            template: 9,
            template_name: "deploy".into(),
            kind: JobKind::Command(crate::domain::job_template::CommandSpec {
                argv: vec!["/bin/true".into()],
                env: Default::default(),
                working_dir: None,
            }),
            timeout_seconds: 60,
            alert_after_seconds: None,
            concurrency: 1,
            extra_vars: RawJson::from_value(&json!({"forge_eda_payload": {"a": 1}})),
            launched_by: LaunchedBy::EventLog(5),
        };
        let e = JobLaunched::upcast(1, &postcard::to_stdvec(&v1).unwrap()).unwrap();
        assert_eq!(e.extra_vars, Protected::Clear(v1.extra_vars));
        assert_eq!((e.id, e.launched_by), (4, LaunchedBy::EventLog(5)));
    }
}
