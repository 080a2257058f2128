//! `/api/v2/event_rules/`: rules, their webhook keys, enable/disable, dry runs.

use std::sync::Arc;

use serde_json::{Value, json};

use super::common::target_organization;
use super::event_logs;
use crate::actors::manager::Lookup;
use crate::actors::rule::{DryRun, RuleMsg};

/// How long a dry run waits for the rule's actor to run.
const DRY_RUN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::app::App;
use crate::codec::RawJson;
use crate::domain::rule::{
    self, ActionType, RuleConfig, RuleCreated, RuleDeleted, RuleEnabledChanged, RuleInput,
    RuleKeyRotated, RuleUpdated, TargetCheck,
};
use crate::domain::{FieldErrors, organization_unchanged, rfc3339};
use crate::http::auth::{authenticate, require_manage, require_read};
use crate::http::pagination::paginate_iter;
use crate::http::request::from_json_value;
use crate::http::response::{Response, created, no_content, ok};
use crate::http::{ApiError, Request, metadata};
use crate::journal::ExpectedRevision;
use crate::projections::RuleRecord;
use crate::secrets::{self, mask};

/// Checks action targets against the job, workflow and notification templates that exist.
struct Targets<'a>(&'a App);

impl TargetCheck for Targets<'_> {
    fn exists(&self, action: ActionType, target: u64, organization: u64) -> bool {
        let views = &self.0.views;
        match action {
            ActionType::LaunchJobTemplate => views
                .jobs
                .read()
                .template(target)
                .is_some_and(|t| t.organization == organization),
            ActionType::LaunchWorkflow => views
                .workflows
                .read()
                .template(target)
                .is_some_and(|t| t.organization == organization),
            ActionType::SendNotification => views
                .notifications
                .read()
                .get(target)
                .is_some_and(|t| t.organization == organization),
        }
    }
}

fn key_field(id: u64) -> String {
    format!("{}/webhook_key", rule::stream(id))
}

fn open_key(app: &App, rule: &RuleRecord) -> Result<String, ApiError> {
    app.master_key
        .open_string(&key_field(rule.id), &rule.key)
        .map_err(|e| ApiError::internal("webhook key", e))
}

/// The rule as the API shows it (key masked).
pub fn render(app: &App, rule: &RuleRecord) -> Value {
    let config = &rule.config;
    let masked = open_key(app, rule)
        .map(|k| mask(&k))
        .unwrap_or_else(|_| "***".into());
    json!({
        "id": rule.id,
        "type": "event_rule",
        "url": format!("/api/v2/event_rules/{}/", rule.id),
        "name": config.name,
        "description": config.description,
        "organization": rule.organization,
        "enabled": config.enabled,
        "source_type": config.source_type,
        "webhook_path": config.webhook_path,
        "webhook_url": format!("{}/api/v2/eda_webhooks/{}/", app.config.public_base_url(), config.webhook_path),
        "webhook_key": masked,
        "conditions": config.conditions.iter().map(|c| json!({"expression": c.expression, "description": c.description})).collect::<Vec<_>>(),
        "actions": config.actions.iter().map(|a| json!({
            "action_type": a.action_type, "target_id": a.target_id, "extra_vars": secrets::mask_secret_members(&a.extra_vars.to_value()), "description": a.description,
        })).collect::<Vec<_>>(),
        "throttle_seconds": config.throttle_seconds,
        "throttle_key": config.throttle_key,
        "dedup_window_seconds": config.dedup_window_seconds,
        "dedup_by_body": config.dedup_by_body,
        "fire_count": rule.fire_count,
        "last_fired_at": rule.last_fired_at.map(rfc3339),
        "created": rfc3339(rule.created),
        "modified": rfc3339(rule.modified),
    })
}

/// The rule `id` if the caller may see it (404 otherwise).
fn visible(
    app: &App,
    principal: &crate::domain::access::Principal,
    id: u64,
) -> Result<RuleRecord, ApiError> {
    let rule = app
        .views
        .rules
        .read()
        .get(id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    require_read(principal, rule.organization)?;
    Ok(rule)
}

fn render_id(app: &App, id: u64) -> Result<Value, ApiError> {
    let rule = app
        .views
        .rules
        .read()
        .get(id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    Ok(render(app, &rule))
}

/// `GET`: filters `organization`, `name`, `enabled`, `source_type`; newest first.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let organization = req.query_parsed::<u64>("organization", "an organization id")?;
    let enabled = req.query_parsed::<bool>("enabled", "true or false")?;
    let (name, source) = (
        req.query("name").filter(|v| !v.is_empty()),
        req.query("source_type").filter(|v| !v.is_empty()),
    );
    let scope = principal.scope();
    let rules: Vec<RuleRecord> = app
        .views
        .rules
        .read()
        .all()
        .rev()
        .filter(|r| scope.is_none_or(|o| r.organization == o))
        .filter(|r| organization.is_none_or(|o| r.organization == o))
        .filter(|r| enabled.is_none_or(|e| r.config.enabled == e))
        .filter(|r| name.is_none_or(|n| r.config.name == n))
        .filter(|r| source.is_none_or(|s| r.config.source_type.as_str() == s))
        .cloned()
        .collect();
    paginate_iter(&req, rules.iter().map(|r| render(&app, r)))
}

/// `POST`: create; the response carries the webhook key in clear this once.
pub async fn create(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let input: RuleInput = req.json()?;
    // Under the command lock, so the organization cannot be deleted before the rule is created.
    let _serial = app.commands.lock().await;
    let organization = target_organization(&app, &principal, input.organization)?;
    let supplied_key = input.webhook_key.clone();
    let key = match &supplied_key {
        Some(key) => {
            let mut errors = FieldErrors::default();
            rule::check_webhook_key(&mut errors, key);
            errors.into_result()?;
            key.clone()
        }
        None => secrets::generate_secret(),
    };
    let (id, config) = {
        let rules = app.views.rules.read();
        let id = rules.max_id + 1;
        let path = format!(
            "hook-{}",
            &secrets::generate_secret()[..20]
                .to_ascii_lowercase()
                .replace(['_', '-'], "x")
        );
        let config = rule::configure(
            rule::defaults(path),
            RuleInput {
                webhook_key: None,
                organization: None,
                ..input
            },
            organization,
            &Targets(&app),
            |name| rules.name_taken(organization, name, None),
            |path| rules.path_taken(path, None),
        )?;
        (id, seal_action_vars(&app, config, None))
    };
    let event = RuleCreated {
        id,
        organization,
        config,
        webhook_key: app.master_key.seal(&key_field(id), key.as_bytes()),
    };
    app.commit(
        &metadata(&principal, &req),
        rule::stream(id),
        ExpectedRevision::NoStream,
        vec![event.into()],
    )
    .await?;
    let mut body = render_id(&app, id)?;
    body["webhook_key"] = json!(key);
    Ok(created(&body))
}

/// Seals the secret members of each action's `extra_vars` (a member sent back as `$encrypted$`
/// keeps the value of the same action before).
fn seal_action_vars(app: &App, mut config: RuleConfig, before: Option<&RuleConfig>) -> RuleConfig {
    for (i, action) in config.actions.iter_mut().enumerate() {
        let previous = before
            .and_then(|b| b.actions.get(i))
            .map(|a| a.extra_vars.to_value());
        action.extra_vars = RawJson::from_value(
            &app.master_key
                .seal_secret_members_over(&action.extra_vars.to_value(), previous.as_ref()),
        );
    }
    config
}

/// `GET /{id}`.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let rule = visible(&app, &principal, req.id("id")?)?;
    Ok(ok(&render(&app, &rule)))
}

/// `PATCH /{id}`.
pub async fn update(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let rule = visible(&app, &principal, id)?;
    require_manage(&principal, rule.organization)?;
    let input: RuleInput = req.json()?;
    let mut errors = organization_unchanged("A rule", rule.organization, input.organization);
    if input.webhook_key.is_some() {
        errors.add(
            "webhook_key",
            "Rotate the key with POST /api/v2/event_rules/{id}/webhook_key/.",
        );
    }
    errors.into_result()?;
    let _serial = app.commands.lock().await;
    let (config, unchanged) = {
        let rules = app.views.rules.read();
        let current = rules.get(id).ok_or_else(ApiError::not_found)?;
        let config = rule::configure(
            current.config.clone(),
            input,
            current.organization,
            &Targets(&app),
            |name| rules.name_taken(current.organization, name, Some(id)),
            |path| rules.path_taken(path, Some(id)),
        )?;
        let config = seal_action_vars(&app, config, Some(&current.config));
        let unchanged = config == current.config;
        (config, unchanged)
    };
    if !unchanged {
        let event = RuleUpdated {
            id,
            organization: rule.organization,
            config,
        };
        app.commit(
            &metadata(&principal, &req),
            rule::stream(id),
            ExpectedRevision::StreamExists,
            vec![event.into()],
        )
        .await?;
    }
    Ok(ok(&render_id(&app, id)?))
}

/// `DELETE /{id}`: the rule stops; its event logs remain.
pub async fn delete(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let rule = visible(&app, &principal, id)?;
    require_manage(&principal, rule.organization)?;
    let _serial = app.commands.lock().await;
    let event = RuleDeleted {
        id,
        organization: rule.organization,
        name: rule.config.name.clone(),
    };
    app.commit(
        &metadata(&principal, &req),
        rule::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    Ok(no_content())
}

async fn set_enabled(app: Arc<App>, req: Request, enabled: bool) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    require_manage(&principal, visible(&app, &principal, id)?.organization)?;
    // Under the command lock, like updates: an update writes the whole configuration it read
    // under the lock, `enabled` included, so a toggle between its read and its append would be
    // undone by it.
    let _serial = app.commands.lock().await;
    let rule = visible(&app, &principal, id)?;
    if rule.config.enabled != enabled {
        let event = RuleEnabledChanged {
            id,
            organization: rule.organization,
            enabled,
        };
        app.commit(
            &metadata(&principal, &req),
            rule::stream(id),
            ExpectedRevision::StreamExists,
            vec![event.into()],
        )
        .await?;
    }
    Ok(ok(&render_id(&app, id)?))
}

/// `POST /{id}/enable/`.
pub async fn enable(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    set_enabled(app, req, true).await
}

/// `POST /{id}/disable/`.
pub async fn disable(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    set_enabled(app, req, false).await
}

/// `GET /{id}/webhook_key/`: the key in clear (organization admins only).
pub async fn reveal_key(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let rule = visible(&app, &principal, req.id("id")?)?;
    require_manage(&principal, rule.organization)?;
    Ok(ok(&json!({"webhook_key": open_key(&app, &rule)?})))
}

/// `POST /{id}/webhook_key/`: rotate, to a generated key or `{"webhook_key": "..."}`; the
/// previous key keeps verifying for `ingress.key_rotation_grace_seconds`.
pub async fn rotate_key(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Rotate {
        webhook_key: Option<String>,
    }
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let rule = visible(&app, &principal, id)?;
    require_manage(&principal, rule.organization)?;
    let input: Rotate = if req.body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        from_json_value(req.json_value()?)?
    };
    let supplied = input.webhook_key.is_some();
    let key = match input.webhook_key {
        Some(key) => {
            let mut errors = FieldErrors::default();
            rule::check_webhook_key(&mut errors, &key);
            errors.into_result()?;
            key
        }
        None => secrets::generate_secret(),
    };
    let grace = app.config.ingress.key_rotation_grace_seconds as i64 * 1_000_000;
    let previous_valid_until = chrono::Utc::now().timestamp_micros() + grace;
    let event = RuleKeyRotated {
        id,
        organization: rule.organization,
        webhook_key: app.master_key.seal(&key_field(id), key.as_bytes()),
        previous_valid_until,
        supplied,
    };
    app.commit(
        &metadata(&principal, &req),
        rule::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    Ok(ok(
        &json!({"webhook_key": key, "previous_key_valid_until": rfc3339(previous_valid_until)}),
    ))
}

/// `GET /{id}/event_logs/`.
pub async fn event_logs(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let rule = visible(&app, &principal, req.id("id")?)?;
    event_logs::list_for(&app, &req, &principal, Some(rule.id))
}

/// `POST /{id}/test/ {"payload": {...}, "headers": {...}}`: a dry run; records and fires nothing.
pub async fn test(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Test {
        payload: Value,
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
    }
    let principal = authenticate(&app, &req)?;
    let rule = visible(&app, &principal, req.id("id")?)?;
    let input: Test = req.json()?;
    let run = DryRun {
        payload: input.payload,
        headers: input.headers.into_iter().collect(),
        now: chrono::Utc::now().timestamp_micros(),
    };
    let restarting = || ApiError::unavailable("The rule is restarting; retry.", 1);
    // The actor may be starting, restarting or waking from passivation: give it a moment.
    let deadline = std::time::Instant::now() + DRY_RUN_WAIT;
    let report = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let actor = match app.rules.wait_running(rule.id, left).await {
            Lookup::Running(actor) => actor,
            Lookup::Gone => return Err(ApiError::not_found()),
            Lookup::Unavailable => return Err(restarting()),
        };
        match ractor::call!(actor, RuleMsg::DryRun, run.clone()) {
            Ok(report) => break report.map_err(ApiError::conflict)?,
            Err(_) if left > std::time::Duration::ZERO => {
                tokio::time::sleep(crate::actors::manager::RETRY_LOOKUP).await
            }
            Err(_) => return Err(restarting()),
        }
    };
    Ok(ok(&report))
}
