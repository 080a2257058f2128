//! Job templates: what a job runs (a local command, or a job template on an AWX / Ansible
//! Automation Platform controller), with its limits and default extra variables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::event::{AuditInfo, Audited};
use super::{DomainError, FieldErrors, check_name, check_name_free};
use crate::codec::{EventBody, RawJson, Sealed};

/// Longest template name.
pub const MAX_NAME: usize = 512;
/// Default time a job may run.
pub const DEFAULT_TIMEOUT: u64 = 3600;
/// Longest timeout a template may set: a week.
pub const MAX_TIMEOUT: u64 = 7 * 86_400;

/// Stream of one job template.
pub fn stream(id: u64) -> String {
    format!("job_template-{id}")
}

/// A local command: run directly (never through a shell) in its own process group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment (the server's own environment is never passed on).
    pub env: BTreeMap<String, String>,
    /// Working directory (default: a fresh temporary directory).
    pub working_dir: Option<String>,
}

/// A job template on an AWX / AAP controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerSpec {
    /// Base URL, e.g. `https://awx.example.com`.
    pub controller_url: String,
    /// The controller's job template id.
    pub remote_id: u64,
    /// Bearer token, sealed for `job_template-<id>/controller_token`.
    pub token: Sealed,
    /// Verify the controller's TLS certificate.
    pub ssl_verify: bool,
}

/// What a template runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// A local command.
    Command(CommandSpec),
    /// A remote controller job template.
    Controller(ControllerSpec),
}

impl JobKind {
    /// `command` or `controller`.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Command(_) => "command",
            JobKind::Controller(_) => "controller",
        }
    }
}

/// A job template's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTemplateConfig {
    /// Unique within the organization.
    pub name: String,
    /// Free text.
    pub description: String,
    /// What it runs.
    pub kind: JobKind,
    /// Seconds before a running job is killed and marked failed.
    pub timeout_seconds: u64,
    /// Seconds after which a still-running job publishes `job.duration_exceeded`.
    pub alert_after_seconds: Option<u64>,
    /// Default extra variables (a JSON object).
    pub extra_vars: RawJson,
    /// Jobs of this template that may run at once; more launches wait (pending).
    pub concurrency: u32,
}

/// A job template was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTemplateCreated {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Settings.
    pub config: JobTemplateConfig,
}

impl EventBody for JobTemplateCreated {
    const TYPE: &'static str = "job_template.created";
}

/// A job template changed (the full new settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTemplateUpdated {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// New settings.
    pub config: JobTemplateConfig,
}

impl EventBody for JobTemplateUpdated {
    const TYPE: &'static str = "job_template.updated";
}

/// A job template was deleted (its jobs remain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTemplateDeleted {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Name at deletion.
    pub name: String,
}

impl EventBody for JobTemplateDeleted {
    const TYPE: &'static str = "job_template.deleted";
}

fn details(config: &JobTemplateConfig) -> serde_json::Value {
    let mut details = serde_json::json!({
        "name": config.name, "kind": config.kind.name(), "timeout_seconds": config.timeout_seconds,
        "alert_after_seconds": config.alert_after_seconds, "concurrency": config.concurrency,
    });
    match &config.kind {
        JobKind::Command(c) => details["argv"] = serde_json::json!(c.argv),
        JobKind::Controller(c) => {
            details["controller_url"] = serde_json::json!(c.controller_url);
            details["remote_id"] = serde_json::json!(c.remote_id);
        }
    }
    details
}

fn audit(id: u64, organization: u64, details: serde_json::Value) -> Option<AuditInfo> {
    Some(AuditInfo {
        organization: Some(organization),
        resource_type: "job_template",
        resource_id: id.to_string(),
        details,
    })
}

impl Audited for JobTemplateCreated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, details(&self.config))
    }
}

impl Audited for JobTemplateUpdated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, details(&self.config))
    }
}

impl Audited for JobTemplateDeleted {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"name": self.name}),
        )
    }
}

/// Client input for creating or patching a job template.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTemplateInput {
    /// Unique within the organization.
    pub name: Option<String>,
    /// Organization (on creation only).
    pub organization: Option<u64>,
    /// Free text.
    pub description: Option<String>,
    /// `command` or `controller`.
    pub kind: Option<String>,
    /// Seconds before the job is killed.
    pub timeout_seconds: Option<u64>,
    /// Seconds before `job.duration_exceeded` (null removes it).
    #[serde(default, deserialize_with = "double_option")]
    pub alert_after_seconds: Option<Option<u64>>,
    /// Default extra variables (object).
    pub extra_vars: Option<serde_json::Value>,
    /// Parallel jobs.
    pub concurrency: Option<u32>,
    /// `command`: program and arguments.
    pub argv: Option<Vec<String>>,
    /// `command`: environment.
    pub env: Option<BTreeMap<String, String>>,
    /// `command`: working directory.
    #[serde(default, deserialize_with = "double_option")]
    pub working_dir: Option<Option<String>>,
    /// `controller`: base URL.
    pub controller_url: Option<String>,
    /// `controller`: remote job template id.
    pub remote_id: Option<u64>,
    /// `controller`: bearer token.
    pub controller_token: Option<String>,
    /// `controller`: verify TLS.
    pub ssl_verify: Option<bool>,
}

fn double_option<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Environment names a template may not set: the job's own variables and the loader's.
pub fn reserved_env(name: &str) -> bool {
    name.starts_with("HOOKFORGE_") || name.starts_with("LD_") || name == "DYLD_INSERT_LIBRARIES"
}

/// Builds and validates a template from `input` over `base` (current settings for a PATCH).
/// `seal` encrypts a controller token; `url_check` applies the outbound network policy.
pub fn configure(
    base: Option<JobTemplateConfig>,
    input: JobTemplateInput,
    seal: impl Fn(&str) -> Sealed,
    url_check: impl Fn(&str) -> Result<(), String>,
    name_taken: impl Fn(&str) -> bool,
) -> Result<JobTemplateConfig, DomainError> {
    let mut errors = FieldErrors::default();
    let kind_name = input
        .kind
        .clone()
        .or_else(|| base.as_ref().map(|b| b.kind.name().to_owned()));
    let is_new_kind = base
        .as_ref()
        .is_none_or(|b| Some(b.kind.name()) != kind_name.as_deref());
    let name = input
        .name
        .or_else(|| base.as_ref().map(|b| b.name.clone()))
        .unwrap_or_default();
    check_name(&mut errors, "name", &name, MAX_NAME);
    let kind = match kind_name.as_deref() {
        Some("command") => {
            let current = match base.as_ref().map(|b| &b.kind) {
                Some(JobKind::Command(c)) if !is_new_kind => Some(c.clone()),
                _ => None,
            };
            let argv = input
                .argv
                .or_else(|| current.as_ref().map(|c| c.argv.clone()))
                .unwrap_or_default();
            if argv.is_empty() || argv[0].trim().is_empty() {
                errors.add(
                    "argv",
                    "A command template needs argv: a non-empty list, program first.",
                );
            }
            let env = input
                .env
                .or_else(|| current.as_ref().map(|c| c.env.clone()))
                .unwrap_or_default();
            for key in env.keys() {
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    errors.add(
                        "env",
                        format!("\"{key}\" is not a valid environment variable name."),
                    );
                } else if reserved_env(key) {
                    errors.add(
                        "env",
                        format!("{key} is reserved and cannot be set by a template."),
                    );
                }
            }
            let working_dir = match input.working_dir {
                Some(dir) => dir,
                None => current.and_then(|c| c.working_dir),
            };
            if let Some(dir) = &working_dir
                && !dir.starts_with('/')
            {
                errors.add("working_dir", "Use an absolute path.");
            }
            JobKind::Command(CommandSpec {
                argv,
                env,
                working_dir,
            })
        }
        Some("controller") => {
            let current = match base.as_ref().map(|b| &b.kind) {
                Some(JobKind::Controller(c)) if !is_new_kind => Some(c.clone()),
                _ => None,
            };
            let controller_url = input
                .controller_url
                .or_else(|| current.as_ref().map(|c| c.controller_url.clone()))
                .unwrap_or_default();
            match url::Url::parse(&controller_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    if let Err(e) = url_check(&controller_url) {
                        errors.add("controller_url", e);
                    }
                }
                _ => errors.add("controller_url", "Enter an absolute http(s) URL."),
            }
            let remote_id = input
                .remote_id
                .or_else(|| current.as_ref().map(|c| c.remote_id))
                .unwrap_or(0);
            if remote_id == 0 {
                errors.add("remote_id", "The controller's job template id is required.");
            }
            let token = match (input.controller_token, current.as_ref()) {
                (Some(token), _) if !token.trim().is_empty() => seal(&token),
                (Some(_), _) | (None, None) => {
                    errors.add(
                        "controller_token",
                        "A bearer token for the controller is required.",
                    );
                    Sealed::default()
                }
                (None, Some(current)) => current.token.clone(),
            };
            let ssl_verify = input
                .ssl_verify
                .or_else(|| current.as_ref().map(|c| c.ssl_verify))
                .unwrap_or(true);
            JobKind::Controller(ControllerSpec {
                controller_url,
                remote_id,
                token,
                ssl_verify,
            })
        }
        Some(other) => {
            errors.add(
                "kind",
                format!("\"{other}\" is not a valid choice; expected command or controller."),
            );
            JobKind::Command(CommandSpec {
                argv: vec![],
                env: BTreeMap::new(),
                working_dir: None,
            })
        }
        None => {
            errors.add("kind", "This field is required.");
            JobKind::Command(CommandSpec {
                argv: vec![],
                env: BTreeMap::new(),
                working_dir: None,
            })
        }
    };
    let timeout_seconds = input
        .timeout_seconds
        .or(base.as_ref().map(|b| b.timeout_seconds))
        .unwrap_or(DEFAULT_TIMEOUT);
    if timeout_seconds == 0 || timeout_seconds > MAX_TIMEOUT {
        errors.add(
            "timeout_seconds",
            format!("Ensure this value is between 1 and {MAX_TIMEOUT}."),
        );
    }
    let alert_after_seconds = match input.alert_after_seconds {
        Some(value) => value,
        None => base.as_ref().and_then(|b| b.alert_after_seconds),
    };
    if alert_after_seconds == Some(0) {
        errors.add(
            "alert_after_seconds",
            "Ensure this value is at least 1 (or null).",
        );
    }
    let extra_vars = match input.extra_vars {
        None => base
            .as_ref()
            .map(|b| b.extra_vars.clone())
            .unwrap_or_else(|| RawJson::from_value(&serde_json::json!({}))),
        Some(serde_json::Value::Null) => RawJson::from_value(&serde_json::json!({})),
        Some(v @ serde_json::Value::Object(_)) => RawJson::from_value(&v),
        Some(_) => {
            errors.add("extra_vars", "Extra variables must be a JSON object.");
            RawJson::default()
        }
    };
    let concurrency = input
        .concurrency
        .or(base.as_ref().map(|b| b.concurrency))
        .unwrap_or(1);
    if !(1..=1000).contains(&concurrency) {
        errors.add("concurrency", "Ensure this value is between 1 and 1000.");
    }
    let description = input
        .description
        .or_else(|| base.as_ref().map(|b| b.description.clone()))
        .unwrap_or_default();
    errors.into_result()?;
    check_name_free(
        "A job template",
        base.as_ref().map(|b| b.name.as_str()),
        &name,
        name_taken,
    )?;
    Ok(JobTemplateConfig {
        name,
        description,
        kind,
        timeout_seconds,
        alert_after_seconds,
        extra_vars,
        concurrency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> JobTemplateInput {
        serde_json::from_value(json).unwrap()
    }

    fn seal(secret: &str) -> Sealed {
        Sealed(secret.as_bytes().iter().rev().copied().collect())
    }

    fn fields(result: Result<JobTemplateConfig, DomainError>) -> FieldErrors {
        match result {
            Err(DomainError::Invalid(f)) => f,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn command_templates_validate_argv_env_and_dirs() {
        let ok = configure(
            None,
            input(serde_json::json!({"name": "deploy", "kind": "command", "argv": ["/bin/echo", "hi"], "env": {"A": "1"}, "extra_vars": {"x": 1}})),
            seal,
            |_| Ok(()),
            |_| false,
        )
        .unwrap();
        assert_eq!((ok.timeout_seconds, ok.concurrency), (DEFAULT_TIMEOUT, 1));
        let bad = fields(configure(
            None,
            input(
                serde_json::json!({"name": "x", "kind": "command", "argv": [], "env": {"HOOKFORGE_EXTRA_VARS": "x", "LD_PRELOAD": "y"},
                "working_dir": "relative", "timeout_seconds": 0, "concurrency": 0, "extra_vars": [1]}),
            ),
            seal,
            |_| Ok(()),
            |_| false,
        ));
        for field in [
            "argv",
            "env",
            "working_dir",
            "timeout_seconds",
            "concurrency",
            "extra_vars",
        ] {
            assert!(bad.0.contains_key(field), "{field}: {bad}");
        }
        assert_eq!(bad.0["env"].len(), 2);
    }

    #[test]
    fn controller_templates_need_url_id_and_token_and_keep_the_token_on_patch() {
        let created = configure(
            None,
            input(serde_json::json!({"name": "awx", "kind": "controller", "controller_url": "https://awx.example.com", "remote_id": 7, "controller_token": "t0k3n"})),
            seal,
            |_| Ok(()),
            |_| false,
        )
        .unwrap();
        let patched = configure(
            Some(created.clone()),
            input(serde_json::json!({"remote_id": 8})),
            seal,
            |_| Ok(()),
            |_| false,
        )
        .unwrap();
        match (&created.kind, &patched.kind) {
            (JobKind::Controller(a), JobKind::Controller(b)) => {
                assert_eq!(a.token, b.token);
                assert_eq!(b.remote_id, 8);
            }
            _ => panic!("controller kind expected"),
        }
        let bad = fields(configure(
            None,
            input(
                serde_json::json!({"name": "awx", "kind": "controller", "controller_url": "ftp://x"}),
            ),
            seal,
            |_| Ok(()),
            |_| false,
        ));
        assert!(
            bad.0.contains_key("controller_url")
                && bad.0.contains_key("remote_id")
                && bad.0.contains_key("controller_token")
        );
        let blocked = fields(configure(
            None,
            input(
                serde_json::json!({"name": "awx", "kind": "controller", "controller_url": "http://10.0.0.1", "remote_id": 1, "controller_token": "t"}),
            ),
            seal,
            |_| Err("private address".into()),
            |_| false,
        ));
        assert_eq!(
            blocked.0["controller_url"],
            vec!["private address".to_string()]
        );
    }
}
