//! Event rules: which webhooks a rule accepts (source type, path, key), which it acts on (CEL
//! conditions), how often (throttle, dedup window) and what it then does (actions).

use serde::{Deserialize, Serialize};

use super::event::{AuditInfo, Audited};
use super::{DomainError, FieldErrors, check_name};
use crate::codec::{CodecError, EventBody, RawJson, Sealed, decode_as};
use crate::conditions::RuleProgram;
use crate::verify::SourceType;

/// Longest rule name.
pub const MAX_NAME: usize = 512;
/// Default dedup window: a day.
pub const DEFAULT_DEDUP_WINDOW: u64 = 86_400;
/// Longest throttle or dedup window a rule may ask for: 30 days.
pub const MAX_WINDOW: u64 = 30 * 86_400;
/// Shortest webhook key a user may paste in.
pub const MIN_KEY_LEN: usize = 8;
/// Longest webhook key.
pub const MAX_KEY_LEN: usize = 1024;

/// Stream of one rule: its configuration and every webhook it received, with the decisions.
pub fn stream(id: u64) -> String {
    format!("rule-{id}")
}

/// The rule id of a `rule-<id>` stream.
pub fn id_of_stream(stream: &str) -> Option<u64> {
    stream.strip_prefix("rule-")?.parse().ok()
}

/// What a rule can do when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    /// Launch a job template.
    LaunchJobTemplate,
    /// Launch a workflow job template.
    LaunchWorkflow,
    /// Send a notification template.
    SendNotification,
}

impl ActionType {
    /// Every action type, as the API names them.
    pub const NAMES: &'static str = "launch_job_template, launch_workflow, send_notification";

    /// Parses the API name.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LaunchJobTemplate => "launch_job_template",
            Self::LaunchWorkflow => "launch_workflow",
            Self::SendNotification => "send_notification",
        }
    }
}

/// One condition: a CEL expression that must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// CEL over `event` and `headers`.
    pub expression: String,
    /// Free text.
    pub description: String,
}

/// One action a rule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// What to do.
    pub action_type: ActionType,
    /// The job template, workflow or notification template id.
    pub target_id: u64,
    /// Extra variables merged over the target's defaults (a JSON object).
    pub extra_vars: RawJson,
    /// Free text.
    pub description: String,
}

/// Everything about a rule that its owner sets (the key is kept apart, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleConfig {
    /// Unique within the organization.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Disabled rules answer 404 at their webhook path.
    pub enabled: bool,
    /// Which provider's verification and identity rules apply.
    pub source_type: SourceType,
    /// The slug in `/api/v2/eda_webhooks/<path>/`, unique across all rules.
    pub webhook_path: String,
    /// All must hold (none: always).
    pub conditions: Vec<Condition>,
    /// What firing does.
    pub actions: Vec<Action>,
    /// Minimum seconds between firings per throttle key (0: no throttle).
    pub throttle_seconds: u64,
    /// CEL expression whose value keys the throttle (e.g. per alert name).
    pub throttle_key: Option<String>,
    /// A delivery id seen within this many seconds is a duplicate (0: no dedup).
    pub dedup_window_seconds: u64,
    /// Within the same window, a repeat of what the signature covers (the body, or the signed
    /// timestamp and body) is a duplicate too, whatever delivery id it carries: a captured
    /// webhook cannot be replayed under a new id. Off for senders that legitimately repeat
    /// identical bodies.
    pub dedup_by_body: bool,
}

/// [`RuleConfig`] as written before `dedup_by_body` (schema version 1 of the rule events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleConfigV1 {
    name: String,
    description: String,
    enabled: bool,
    source_type: SourceType,
    webhook_path: String,
    conditions: Vec<Condition>,
    actions: Vec<Action>,
    throttle_seconds: u64,
    throttle_key: Option<String>,
    dedup_window_seconds: u64,
}

impl From<RuleConfigV1> for RuleConfig {
    fn from(v1: RuleConfigV1) -> Self {
        Self {
            name: v1.name,
            description: v1.description,
            enabled: v1.enabled,
            source_type: v1.source_type,
            webhook_path: v1.webhook_path,
            conditions: v1.conditions,
            actions: v1.actions,
            throttle_seconds: v1.throttle_seconds,
            throttle_key: v1.throttle_key,
            dedup_window_seconds: v1.dedup_window_seconds,
            dedup_by_body: true,
        }
    }
}

/// [`RuleCreated`] v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RuleCreatedV1 {
    id: u64,
    organization: u64,
    config: RuleConfigV1,
    webhook_key: Sealed,
}

/// [`RuleUpdated`] v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RuleUpdatedV1 {
    id: u64,
    organization: u64,
    config: RuleConfigV1,
}

fn unknown_version<T: EventBody>(version: u16) -> CodecError {
    CodecError::UnknownVersion {
        event_type: T::TYPE,
        version,
    }
}

impl RuleConfig {
    /// Compiles the conditions and throttle key.
    pub fn program(&self) -> Result<RuleProgram, crate::conditions::ConditionError> {
        let sources: Vec<&str> = self
            .conditions
            .iter()
            .map(|c| c.expression.as_str())
            .collect();
        RuleProgram::compile(&sources, self.throttle_key.as_deref())
    }
}

/// A rule was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCreated {
    /// Id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// Configuration.
    pub config: RuleConfig,
    /// The webhook key, sealed for `rule-<id>/webhook_key`.
    pub webhook_key: Sealed,
}

impl EventBody for RuleCreated {
    const TYPE: &'static str = "rule.created";
    const VERSION: u16 = 2;

    fn upcast(version: u16, data: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_as::<RuleCreatedV1>(Self::TYPE, 1, data).map(|v1| Self {
                id: v1.id,
                organization: v1.organization,
                config: v1.config.into(),
                webhook_key: v1.webhook_key,
            }),
            _ => Err(unknown_version::<Self>(version)),
        }
    }
}

/// A rule's configuration changed (the full new configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleUpdated {
    /// Id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// The new configuration.
    pub config: RuleConfig,
}

impl EventBody for RuleUpdated {
    const TYPE: &'static str = "rule.updated";
    const VERSION: u16 = 2;

    fn upcast(version: u16, data: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_as::<RuleUpdatedV1>(Self::TYPE, 1, data).map(|v1| Self {
                id: v1.id,
                organization: v1.organization,
                config: v1.config.into(),
            }),
            _ => Err(unknown_version::<Self>(version)),
        }
    }
}

/// A rule was switched on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleEnabledChanged {
    /// Id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// The new state.
    pub enabled: bool,
}

impl EventBody for RuleEnabledChanged {
    const TYPE: &'static str = "rule.enabled_changed";
}

/// A rule got a new webhook key; the previous one verifies until `previous_valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleKeyRotated {
    /// Id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// The new key, sealed for `rule-<id>/webhook_key`.
    pub webhook_key: Sealed,
    /// µs since the epoch until which the previous key is still accepted.
    pub previous_valid_until: i64,
    /// Whether the user supplied the key (rather than hookforge generating it).
    pub supplied: bool,
}

impl EventBody for RuleKeyRotated {
    const TYPE: &'static str = "rule.key_rotated";
}

/// A rule was deleted; its event logs remain, with its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleDeleted {
    /// Id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// Its name at deletion.
    pub name: String,
}

impl EventBody for RuleDeleted {
    const TYPE: &'static str = "rule.deleted";
}

fn audit(id: u64, organization: u64, details: serde_json::Value) -> Option<AuditInfo> {
    Some(AuditInfo {
        organization: Some(organization),
        resource_type: "event_rule",
        resource_id: id.to_string(),
        details,
    })
}

fn config_details(config: &RuleConfig) -> serde_json::Value {
    serde_json::json!({
        "name": config.name,
        "enabled": config.enabled,
        "source_type": config.source_type,
        "webhook_path": config.webhook_path,
        "conditions": config.conditions.iter().map(|c| &c.expression).collect::<Vec<_>>(),
        "actions": config.actions.iter().map(|a| serde_json::json!({"action_type": a.action_type, "target_id": a.target_id})).collect::<Vec<_>>(),
        "throttle_seconds": config.throttle_seconds,
        "throttle_key": config.throttle_key,
        "dedup_window_seconds": config.dedup_window_seconds,
        "dedup_by_body": config.dedup_by_body,
    })
}

impl Audited for RuleCreated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, config_details(&self.config))
    }
}

impl Audited for RuleUpdated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, config_details(&self.config))
    }
}

impl Audited for RuleEnabledChanged {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"enabled": self.enabled}),
        )
    }
}

impl Audited for RuleKeyRotated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"supplied": self.supplied}),
        )
    }
}

impl Audited for RuleDeleted {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"name": self.name}),
        )
    }
}

/// One condition as clients send it (`jinja2_expression` is accepted as an alias).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionInput {
    /// CEL expression.
    pub expression: Option<String>,
    /// Alias of `expression`, as existing rule files name it.
    pub jinja2_expression: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

/// One action as clients send it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    /// `launch_job_template`, `launch_workflow` or `send_notification`.
    pub action_type: Option<String>,
    /// The target's id.
    pub target_id: Option<u64>,
    /// A JSON object.
    pub extra_vars: Option<serde_json::Value>,
    /// Free text.
    pub description: Option<String>,
}

/// Client input for creating or patching a rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// Unique within the organization.
    pub name: Option<String>,
    /// Owning organization (on creation only).
    pub organization: Option<u64>,
    /// Free text.
    pub description: Option<String>,
    /// On or off.
    pub enabled: Option<bool>,
    /// One of the source types.
    pub source_type: Option<String>,
    /// URL slug (generated when absent).
    pub webhook_path: Option<String>,
    /// Conditions.
    pub conditions: Option<Vec<ConditionInput>>,
    /// Actions.
    pub actions: Option<Vec<ActionInput>>,
    /// Seconds between firings per key.
    pub throttle_seconds: Option<u64>,
    /// CEL throttle key (`null` or `""` removes it).
    #[serde(default, deserialize_with = "double_option")]
    pub throttle_key: Option<Option<String>>,
    /// Seconds a delivery id is remembered.
    pub dedup_window_seconds: Option<u64>,
    /// Whether a repeated body is a duplicate too.
    pub dedup_by_body: Option<bool>,
    /// A key to use instead of a generated one (on creation only).
    pub webhook_key: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// What the rest of the system says about an action's target: exists in the organization,
/// exists elsewhere or not at all (both look the same to the caller).
pub trait TargetCheck {
    /// Whether `target` of kind `action` exists in `organization`.
    fn exists(&self, action: ActionType, target: u64, organization: u64) -> bool;
}

/// Validates a webhook path: 1–128 characters of letters, digits, `-` and `_`.
pub fn check_webhook_path(errors: &mut FieldErrors, path: &str) {
    let valid = !path.is_empty()
        && path.len() <= 128
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        errors.add(
            "webhook_path",
            "Enter a slug of 1-128 letters, digits, '-' or '_'.",
        );
    }
}

/// Validates a user-supplied webhook key.
pub fn check_webhook_key(errors: &mut FieldErrors, key: &str) {
    let len = key.chars().count();
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&len) {
        errors.add(
            "webhook_key",
            format!("A webhook key must be {MIN_KEY_LEN}-{MAX_KEY_LEN} characters."),
        );
    } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.add(
            "webhook_key",
            "A webhook key may not contain whitespace or control characters.",
        );
    }
}

/// Builds and validates a rule configuration from `input` over `base` (the current configuration
/// for a PATCH, defaults for a creation). `path_taken` and `name_taken` see other rules only.
pub fn configure(
    base: RuleConfig,
    input: RuleInput,
    organization: u64,
    targets: &dyn TargetCheck,
    name_taken: impl Fn(&str) -> bool,
    path_taken: impl Fn(&str) -> bool,
) -> Result<RuleConfig, DomainError> {
    let mut errors = FieldErrors::default();
    let mut config = base;
    if let Some(name) = input.name {
        config.name = name;
    }
    check_name(&mut errors, "name", &config.name, MAX_NAME);
    if let Some(description) = input.description {
        config.description = description;
    }
    if let Some(enabled) = input.enabled {
        config.enabled = enabled;
    }
    if let Some(source) = input.source_type {
        match source.parse::<SourceType>() {
            Ok(source) => config.source_type = source,
            Err(_) => {
                let names: Vec<&str> = SourceType::ALL.iter().map(|s| s.as_str()).collect();
                errors.add(
                    "source_type",
                    format!(
                        "\"{source}\" is not a valid choice; expected one of {}.",
                        names.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(path) = input.webhook_path {
        config.webhook_path = path;
    }
    check_webhook_path(&mut errors, &config.webhook_path);
    if let Some(conditions) = input.conditions {
        config.conditions = Vec::with_capacity(conditions.len());
        for (i, condition) in conditions.into_iter().enumerate() {
            match (condition.expression, condition.jinja2_expression) {
                (Some(e), None) | (None, Some(e)) if !e.trim().is_empty() => {
                    config.conditions.push(Condition {
                        expression: e,
                        description: condition.description.unwrap_or_default(),
                    })
                }
                (Some(_), Some(_)) => errors.add(
                    "conditions",
                    format!("conditions[{i}]: give expression or jinja2_expression, not both."),
                ),
                _ => errors.add(
                    "conditions",
                    format!("conditions[{i}]: expression is required."),
                ),
            }
        }
    }
    if let Some(actions) = input.actions {
        config.actions = Vec::with_capacity(actions.len());
        for (i, action) in actions.into_iter().enumerate() {
            let Some(kind) = action
                .action_type
                .as_deref()
                .map(|t| (t, ActionType::parse(t)))
            else {
                errors.add("actions", format!("actions[{i}].action_type is required."));
                continue;
            };
            let action_type = match kind {
                (_, Some(t)) => t,
                (name, None) => {
                    errors.add(
                        "actions",
                        format!(
                            "actions[{i}].action_type: \"{name}\" is not one of {}.",
                            ActionType::NAMES
                        ),
                    );
                    continue;
                }
            };
            let Some(target_id) = action.target_id else {
                errors.add("actions", format!("actions[{i}].target_id is required."));
                continue;
            };
            if !targets.exists(action_type, target_id, organization) {
                errors.add("actions", format!("actions[{i}].target_id: {} {target_id} does not exist in this organization.", target_noun(action_type)));
            }
            let extra_vars = match action.extra_vars {
                None | Some(serde_json::Value::Null) => serde_json::json!({}),
                Some(v @ serde_json::Value::Object(_)) => v,
                Some(_) => {
                    errors.add(
                        "actions",
                        format!("actions[{i}].extra_vars must be a JSON object."),
                    );
                    continue;
                }
            };
            config.actions.push(Action {
                action_type,
                target_id,
                extra_vars: RawJson::from_value(&extra_vars),
                description: action.description.unwrap_or_default(),
            });
        }
    }
    if let Some(seconds) = input.throttle_seconds {
        config.throttle_seconds = seconds;
    }
    if config.throttle_seconds > MAX_WINDOW {
        errors.add(
            "throttle_seconds",
            format!("Ensure this value is at most {MAX_WINDOW}."),
        );
    }
    if let Some(key) = input.throttle_key {
        config.throttle_key = key.filter(|k| !k.trim().is_empty());
    }
    if let Some(seconds) = input.dedup_window_seconds {
        config.dedup_window_seconds = seconds;
    }
    if let Some(by_body) = input.dedup_by_body {
        config.dedup_by_body = by_body;
    }
    if config.dedup_window_seconds > MAX_WINDOW {
        errors.add(
            "dedup_window_seconds",
            format!("Ensure this value is at most {MAX_WINDOW}."),
        );
    }
    if !errors.0.contains_key("conditions")
        && !errors.0.contains_key("throttle_key")
        && let Err(e) = config.program()
    {
        let message = e.to_string();
        let field = if message.starts_with("throttle_key") {
            "throttle_key"
        } else {
            "conditions"
        };
        errors.add(field, message);
    }
    errors.into_result()?;
    let mut conflicts = FieldErrors::default();
    if name_taken(&config.name) {
        conflicts.add(
            "name",
            "An event rule with this name already exists in the organization.",
        );
    }
    if path_taken(&config.webhook_path) {
        conflicts.add(
            "webhook_path",
            "An event rule with this webhook_path already exists.",
        );
    }
    conflicts.into_result()?;
    Ok(config)
}

fn target_noun(action: ActionType) -> &'static str {
    match action {
        ActionType::LaunchJobTemplate => "job template",
        ActionType::LaunchWorkflow => "workflow job template",
        ActionType::SendNotification => "notification template",
    }
}

/// The configuration a new rule starts from before the input is applied.
pub fn defaults(webhook_path: String) -> RuleConfig {
    RuleConfig {
        name: String::new(),
        description: String::new(),
        enabled: true,
        source_type: SourceType::WebhookGeneric,
        webhook_path,
        conditions: Vec::new(),
        actions: Vec::new(),
        throttle_seconds: 0,
        throttle_key: None,
        dedup_window_seconds: DEFAULT_DEDUP_WINDOW,
        dedup_by_body: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Targets;
    impl TargetCheck for Targets {
        fn exists(&self, _: ActionType, target: u64, organization: u64) -> bool {
            organization == 1 && target < 100
        }
    }

    fn input(json: serde_json::Value) -> RuleInput {
        serde_json::from_value(json).unwrap()
    }

    fn configure_new(json: serde_json::Value) -> Result<RuleConfig, DomainError> {
        configure(
            defaults("generated".into()),
            input(json),
            1,
            &Targets,
            |n| n == "taken",
            |p| p == "used",
        )
    }

    fn fields(result: Result<RuleConfig, DomainError>) -> FieldErrors {
        match result {
            Err(DomainError::Invalid(fields)) => fields,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn a_full_rule_validates() {
        let config = configure_new(serde_json::json!({
            "name": "deploy on push",
            "source_type": "webhook_github",
            "webhook_path": "gh-deploy",
            "conditions": [{"expression": "event.ref == 'refs/heads/main'"}, {"jinja2_expression": "headers['x-github-event'] == 'push'", "description": "alias"}],
            "actions": [{"action_type": "launch_job_template", "target_id": 5, "extra_vars": {"env": "prod"}}],
            "throttle_seconds": 60,
            "throttle_key": "event.repository.full_name",
        }))
        .unwrap();
        assert_eq!(config.conditions.len(), 2);
        assert_eq!(config.conditions[1].description, "alias");
        assert_eq!(config.actions[0].extra_vars.to_value()["env"], "prod");
        assert_eq!(config.dedup_window_seconds, DEFAULT_DEDUP_WINDOW);
        assert!(config.enabled);
    }

    #[test]
    fn cel_errors_name_the_condition_index() {
        let errors = fields(configure_new(serde_json::json!({
            "name": "r", "conditions": [{"expression": "true"}, {"expression": "event.x =="}]
        })));
        let message = &errors.0["conditions"][0];
        assert!(message.starts_with("conditions[1]"), "{message}");
        let errors = fields(configure_new(
            serde_json::json!({"name": "r", "throttle_key": "nope.x"}),
        ));
        assert!(errors.0["throttle_key"][0].contains("nope"), "{errors}");
    }

    #[test]
    fn bad_fields_are_each_named() {
        let errors = fields(configure_new(serde_json::json!({
            "name": "", "source_type": "carrier_pigeon", "webhook_path": "has space",
            "actions": [{"action_type": "explode", "target_id": 1}, {"action_type": "launch_workflow", "target_id": 500},
                        {"action_type": "send_notification", "target_id": 1, "extra_vars": [1]}],
            "throttle_seconds": 99999999, "dedup_window_seconds": 99999999,
        })));
        for field in [
            "name",
            "source_type",
            "webhook_path",
            "actions",
            "throttle_seconds",
            "dedup_window_seconds",
        ] {
            assert!(errors.0.contains_key(field), "{field} missing in {errors}");
        }
        assert_eq!(errors.0["actions"].len(), 3, "{errors}");
        assert!(
            errors.0["actions"][1].contains("does not exist"),
            "{errors}"
        );
    }

    #[test]
    fn names_and_paths_must_be_free() {
        let errors = fields(configure_new(
            serde_json::json!({"name": "taken", "webhook_path": "used"}),
        ));
        assert!(errors.0.contains_key("name") && errors.0.contains_key("webhook_path"));
    }

    #[test]
    fn patches_keep_what_they_do_not_mention() {
        let base = configure_new(serde_json::json!({"name": "r", "throttle_key": "event.a", "conditions": [{"expression": "true"}]})).unwrap();
        let patched = configure(
            base.clone(),
            input(serde_json::json!({"enabled": false})),
            1,
            &Targets,
            |_| false,
            |_| false,
        )
        .unwrap();
        assert_eq!(
            (patched.enabled, &patched.conditions, &patched.throttle_key),
            (false, &base.conditions, &base.throttle_key)
        );
        let cleared = configure(
            base,
            input(serde_json::json!({"throttle_key": null})),
            1,
            &Targets,
            |_| false,
            |_| false,
        )
        .unwrap();
        assert_eq!(cleared.throttle_key, None);
    }
}
