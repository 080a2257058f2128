//! `/api/v2/outbound_webhooks/`: outbound endpoints, their secret, test pings, recovery and
//! re-enabling. Organization-scoped: another tenant's endpoint is a 404, members read only.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::target_organization;
use crate::app::App;
use crate::codec::{RawJson, Sealed};
use crate::delivery::envelope::raw_payload;
use crate::delivery::signing::signed_headers;
use crate::delivery::{Envelope, OutboundRequest};
use crate::domain::access::Principal;
use crate::domain::delivery::{
    AttemptContext, DeliveryKind, DeliveryScheduled, DeliverySource, InlineEvent, new_webhook_id,
    record_test_attempt,
};
use crate::domain::endpoint::{
    self, Checks, EndpointCreated, EndpointDeleted, EndpointDisabled, EndpointEnabled,
    EndpointInput, EndpointSecretRotated, EndpointUpdated, HeaderSealer, check_secret,
    valid_event_type,
};
use crate::domain::published::PING;
use crate::domain::{Event, FieldErrors, organization_unchanged, rfc3339};
use crate::http::auth::{authenticate, require_manage, require_read};
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, created, json, no_content, ok};
use crate::http::{ApiError, Request, metadata};
use crate::journal::ExpectedRevision;
use crate::projections::outbound::EndpointRecord;
use crate::secrets::{mask, random_bytes};

/// Most deliveries one `recover/` call schedules again.
pub const MAX_RECOVER: usize = 1000;

/// A new signing secret: `whsec_` and base64 of 32 random bytes (a Standard Webhooks key).
pub fn generate_secret() -> String {
    format!("whsec_{}", BASE64.encode(random_bytes::<32>()))
}

fn open_secret(app: &App, id: u64, sealed: &Sealed) -> Result<String, ApiError> {
    app.master_key
        .open_string(&endpoint::secret_field(id), sealed)
        .map_err(|e| ApiError::internal("endpoint secret does not open", e))
}

fn open_headers(app: &App, id: u64, sealed: Option<&Sealed>) -> Vec<(String, String)> {
    sealed
        .and_then(|s| app.master_key.open(&endpoint::headers_field(id), s).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The API form of an endpoint (secret and header values masked).
pub fn render(app: &App, e: &EndpointRecord) -> Value {
    let s = &e.settings;
    let headers: serde_json::Map<String, Value> =
        open_headers(app, e.id, s.custom_headers.as_ref())
            .into_iter()
            .map(|(name, value)| (name, json!(mask(&value))))
            .collect();
    let secret_masked = app
        .master_key
        .open_string(&endpoint::secret_field(e.id), &e.secret)
        .map(|s| mask(&s))
        .unwrap_or_default();
    json!({
        "id": e.id,
        "type": "outbound_webhook",
        "related": {
            "deliveries": format!("/api/v2/outbound_webhooks/{}/deliveries/", e.id),
            "secret": format!("/api/v2/outbound_webhooks/{}/secret/", e.id),
        },
        "name": s.name,
        "organization": e.organization,
        "url": s.url,
        "events": s.events,
        "filter": s.filter,
        "custom_headers": headers,
        "enabled": e.enabled,
        "ssl_verify": s.ssl_verify,
        "timeout_seconds": s.timeout_seconds,
        "retry": {
            "max_attempts": s.retry.max_attempts,
            "initial_delay_seconds": s.retry.initial_delay_seconds,
            "max_delay_seconds": s.retry.max_delay_seconds,
            "multiplier": s.retry.multiplier,
        },
        "rate_limit_per_second": s.rate_limit_per_second,
        "max_in_flight": s.max_in_flight,
        "ordered": s.ordered,
        "target_host": s.target_host(),
        "delivery_count": e.delivery_count,
        "failure_count": e.failure_count,
        "last_delivery_at": e.last_delivery_at.map(rfc3339),
        "secret_masked": secret_masked,
        "disabled_reason": e.disabled_reason,
        "created": rfc3339(e.created),
        "modified": rfc3339(e.modified),
    })
}

/// The endpoint `id` if the caller may see it (404 otherwise).
pub fn find(app: &App, principal: &Principal, id: u64) -> Result<EndpointRecord, ApiError> {
    let view = app.views.outbound.read();
    let endpoint = view.endpoint(id).ok_or_else(ApiError::not_found)?;
    require_read(principal, endpoint.organization)?;
    Ok(endpoint.clone())
}

/// The endpoint `id` if the caller may change it (404 if invisible, 403 for members).
pub fn find_managed(app: &App, principal: &Principal, id: u64) -> Result<EndpointRecord, ApiError> {
    let endpoint = find(app, principal, id)?;
    require_manage(principal, endpoint.organization)?;
    Ok(endpoint)
}

fn rendered(app: &App, id: u64) -> Result<Value, ApiError> {
    let view = app.views.outbound.read();
    view.endpoint(id)
        .map(|e| render(app, e))
        .ok_or_else(|| ApiError::internal("endpoint missing after commit", id))
}

fn checks<'a>(app: &'a App, seal: HeaderSealer<'a>) -> Checks<'a> {
    Checks {
        allow_private_networks: app.config.outbound.allow_private_networks,
        seal_headers: seal,
    }
}

fn sealer(app: &App, id: u64) -> impl Fn(&[(String, String)]) -> Sealed + '_ {
    move |pairs| {
        app.master_key.seal(
            &endpoint::headers_field(id),
            &serde_json::to_vec(pairs).expect("string pairs serialise"),
        )
    }
}

fn rotation(app: &App, id: u64, organization: u64, secret: &str) -> EndpointSecretRotated {
    let grace = i64::try_from(app.config.outbound.secret_rotation_grace_seconds)
        .unwrap_or(i64::MAX / 2_000_000);
    EndpointSecretRotated {
        id,
        organization,
        secret: app
            .master_key
            .seal(&endpoint::secret_field(id), secret.as_bytes()),
        previous_expires_at: app
            .outbound
            .clock
            .now()
            .saturating_add(grace.saturating_mul(1_000_000)),
    }
}

/// `GET`: the caller's organization's endpoints (all for system admins), newest first.
/// Filters: `organization`, `enabled`, `name`.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let organization = req.query_parsed::<u64>("organization", "an organization id")?;
    let enabled = req.query_parsed::<bool>("enabled", "true or false")?;
    let name = req.query("name").filter(|n| !n.is_empty());
    let view = app.views.outbound.read();
    let items = view
        .endpoints()
        .rev()
        .filter(|e| principal.can_read(e.organization))
        .filter(|e| organization.is_none_or(|o| e.organization == o))
        .filter(|e| enabled.is_none_or(|on| e.enabled == on))
        .filter(|e| name.is_none_or(|n| e.settings.name == n))
        .map(|e| render(&app, e));
    paginate_iter(&req, items)
}

/// `POST`: create; the response is the only one that shows the secret outside `secret/`.
pub async fn create(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let input: EndpointInput = req.json()?;
    // Under the command lock, so the organization cannot be deleted before the endpoint is
    // created. An endpoint defaults to the caller's organization.
    let _serial = app.commands.lock().await;
    let organization = target_organization(
        &app,
        &principal,
        input.organization.or(principal.organization),
    )?;
    let id = app.views.outbound.read().max_endpoint_id + 1;
    let seal = sealer(&app, id);
    let validated = endpoint::validate(input, None, &checks(&app, &seal))?;
    let secret = validated.secret.unwrap_or_else(generate_secret);
    let event = EndpointCreated {
        id,
        organization,
        settings: validated.settings,
        enabled: validated.enabled.unwrap_or(true),
        secret: app
            .master_key
            .seal(&endpoint::secret_field(id), secret.as_bytes()),
    };
    app.commit(
        &metadata(&principal, &req),
        endpoint::stream(id),
        ExpectedRevision::NoStream,
        vec![event.into()],
    )
    .await?;
    let mut body = rendered(&app, id)?;
    body["secret"] = json!(secret);
    Ok(created(&body))
}

/// `GET /{id}`.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let endpoint = find(&app, &principal, req.id("id")?)?;
    Ok(ok(&render(&app, &endpoint)))
}

/// `PATCH /{id}`: change settings; `secret` rotates it (with the grace period), `enabled`
/// enables or disables. Fields not sent keep their values.
pub async fn update(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let input: EndpointInput = req.json()?;
    let _serial = app.commands.lock().await;
    let current = find_managed(&app, &principal, id)?;
    organization_unchanged("An endpoint", current.organization, input.organization)
        .into_result()?;
    let seal = sealer(&app, id);
    let validated = endpoint::validate(input, Some(&current.settings), &checks(&app, &seal))?;
    let mut events: Vec<Event> = Vec::new();
    if validated.settings != current.settings {
        events.push(
            EndpointUpdated {
                id,
                organization: current.organization,
                settings: validated.settings.clone(),
            }
            .into(),
        );
    }
    if let Some(secret) = &validated.secret {
        events.push(rotation(&app, id, current.organization, secret).into());
    }
    match validated.enabled {
        Some(true) if !current.enabled => events.push(
            EndpointEnabled {
                id,
                organization: current.organization,
            }
            .into(),
        ),
        Some(false) if current.enabled => events.push(
            EndpointDisabled {
                id,
                organization: current.organization,
                name: validated.settings.name.clone(),
                reason: format!("disabled through the API by {}", principal.actor()),
                failing_since: None,
            }
            .into(),
        ),
        _ => {}
    }
    if !events.is_empty() {
        app.commit(
            &metadata(&principal, &req),
            endpoint::stream(id),
            ExpectedRevision::StreamExists,
            events,
        )
        .await?;
    }
    Ok(ok(&rendered(&app, id)?))
}

/// `DELETE /{id}`: stops its actor; pending deliveries are dropped.
pub async fn delete(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let _serial = app.commands.lock().await;
    let current = find_managed(&app, &principal, id)?;
    let event = EndpointDeleted {
        id,
        organization: current.organization,
    };
    app.commit(
        &metadata(&principal, &req),
        endpoint::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    Ok(no_content())
}

fn secret_body(id: u64, secret: &str, previous_expires_at: Option<i64>) -> Value {
    json!({
        "id": id,
        "secret": secret,
        "previous_secret_expires_at": previous_expires_at.map(rfc3339),
    })
}

/// `GET /{id}/secret/`: reveals the signing secret (organization admins and system admins).
pub async fn secret(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let endpoint = find_managed(&app, &principal, id)?;
    let secret = open_secret(&app, id, &endpoint.secret)?;
    let previous = endpoint
        .previous_secret
        .map(|(_, until)| until)
        .filter(|until| *until > app.outbound.clock.now());
    Ok(ok(&secret_body(id, &secret, previous)))
}

/// Body of `POST /{id}/secret/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateInput {
    secret: Option<String>,
}

/// `POST /{id}/secret/`: rotates the secret (to the one given, or a generated one). The
/// previous secret keeps signing for `outbound.secret_rotation_grace_seconds`.
pub async fn rotate_secret(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let input: RotateInput = req.json_or_default()?;
    if let Some(secret) = &input.secret {
        let mut errors = FieldErrors::default();
        check_secret(&mut errors, "secret", secret);
        errors.into_result()?;
    }
    let _serial = app.commands.lock().await;
    let endpoint = find_managed(&app, &principal, id)?;
    let secret = input.secret.unwrap_or_else(generate_secret);
    let event = rotation(&app, id, endpoint.organization, &secret);
    let previous_expires_at = event.previous_expires_at;
    app.commit(
        &metadata(&principal, &req),
        endpoint::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    Ok(ok(&secret_body(id, &secret, Some(previous_expires_at))))
}

/// Body of `POST /{id}/test/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestInput {
    event_type: Option<String>,
}

/// `POST /{id}/test/`: one synchronous, signed delivery of a synthetic `ping` payload, recorded
/// as a test delivery (never retried, no effect on the endpoint's health). The attempt runs on
/// its own task, so a client that hangs up still gets it recorded.
pub async fn test(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let input: TestInput = req.json_or_default()?;
    let event_type = input.event_type.unwrap_or_else(|| PING.to_owned());
    if !valid_event_type(&event_type) {
        return Err(FieldErrors::one(
            "event_type",
            "Use dot-separated letters, digits, _ and -, at most 128 characters.",
        )
        .into());
    }
    let endpoint = find_managed(&app, &principal, id)?;
    let metadata = metadata(&principal, &req);
    let task = tokio::spawn(run_test(app.clone(), endpoint, event_type, metadata));
    let body = task
        .await
        .map_err(|e| ApiError::internal("test delivery task failed", e))??;
    Ok(ok(&body))
}

async fn run_test(
    app: Arc<App>,
    endpoint: EndpointRecord,
    event_type: String,
    metadata: crate::journal::Metadata,
) -> Result<Value, ApiError> {
    let id = endpoint.id;
    let now = app.outbound.clock.now();
    let webhook_id = new_webhook_id();
    let inline = InlineEvent {
        resource_type: "outbound_webhook".into(),
        resource_id: id.to_string(),
        payload: RawJson::from_value(
            &json!({"message": "This is a test delivery from hookforge.", "endpoint_id": id}),
        ),
        occurred_at: now,
    };
    let scheduled = DeliveryScheduled {
        endpoint: id,
        organization: endpoint.organization,
        webhook_id: webhook_id.clone(),
        event_type: event_type.clone(),
        kind: DeliveryKind::Test,
        source: DeliverySource::Inline(inline.clone()),
    };
    let appended = app
        .commit(
            &metadata,
            endpoint::stream(id),
            ExpectedRevision::StreamExists,
            vec![scheduled.into()],
        )
        .await?;
    let delivery = appended.first_position;

    let mut secrets = vec![open_secret(&app, id, &endpoint.secret)?];
    if let Some((previous, _)) = endpoint
        .previous_secret
        .as_ref()
        .filter(|(_, until)| *until > now)
    {
        secrets.push(open_secret(&app, id, previous)?);
    }
    let custom = open_headers(&app, id, endpoint.settings.custom_headers.as_ref());
    let envelope = Envelope {
        event: event_type.clone(),
        delivery_id: webhook_id.clone(),
        organization_id: endpoint.organization.to_string(),
        resource_type: inline.resource_type.clone(),
        resource_id: inline.resource_id.clone(),
        payload: raw_payload(&inline.payload.0)
            .map_err(|e| ApiError::internal("ping payload", e))?,
        occurred_at: chrono::DateTime::from_timestamp_micros(now).unwrap_or_default(),
    };
    let body = envelope
        .to_body()
        .map_err(|e| ApiError::internal("ping body", e))?;
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let headers = signed_headers(
        &event_type,
        &webhook_id,
        now.div_euclid(1_000_000),
        &body,
        &secret_refs,
        &custom,
    )
    .map_err(|e| ApiError::internal("ping headers", e))?;
    let url =
        url::Url::parse(&endpoint.settings.url).map_err(|e| ApiError::internal("stored URL", e))?;
    let request = OutboundRequest {
        url,
        headers,
        body: body.into(),
        timeout: Duration::from_secs(u64::from(endpoint.settings.timeout_seconds)),
        ssl_verify: endpoint.settings.ssl_verify,
    };
    let started_at = app.outbound.clock.now();
    let outcome = app.outbound.transport.send(&request).await;
    let policy = endpoint.settings.retry.policy(Duration::MAX);
    let ctx = AttemptContext {
        endpoint: id,
        organization: endpoint.organization,
        endpoint_name: &endpoint.settings.name,
        delivery,
        webhook_id: &webhook_id,
        event_type: &event_type,
        attempt: 1,
        started_at,
        failing_since: None,
        policy: &policy,
        jitter: 0.0,
    };
    let event = record_test_attempt(&ctx, &outcome);
    app.commit(
        &metadata,
        endpoint::stream(id),
        ExpectedRevision::StreamExists,
        vec![event],
    )
    .await?;
    Ok(json!({
        "delivered": outcome.is_success(),
        "response_status": outcome.status,
        "duration_ms": outcome.duration_ms,
        "error": outcome.error.map(|e| e.message),
        "delivery_id": delivery,
        "webhook_id": webhook_id,
    }))
}

/// Body of `POST /{id}/recover/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverInput {
    since: String,
}

/// `POST /{id}/recover/ {"since": RFC3339}`: sends again every failed or dead delivery created
/// since then that was not redelivered yet, oldest first, at most [`MAX_RECOVER`] per call
/// (`truncated` says whether to call again).
pub async fn recover(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let input: RecoverInput = req.json()?;
    let since = chrono::DateTime::parse_from_rfc3339(&input.since)
        .map_err(|_| {
            ApiError::from(FieldErrors::one(
                "since",
                "Expected an RFC 3339 time such as 2026-01-31T12:00:00Z.",
            ))
        })?
        .timestamp_micros();
    let _serial = app.commands.lock().await;
    let endpoint = find_managed(&app, &principal, id)?;
    if !endpoint.enabled {
        return Err(ApiError::conflict(
            "The endpoint is disabled; enable it before recovering deliveries.",
        ));
    }
    let (found, truncated) = app
        .views
        .deliveries
        .read()
        .recoverable(id, since, MAX_RECOVER)?;
    let events: Vec<Event> = found
        .iter()
        .map(|d| redelivery(d.endpoint, d.organization, d.id, &d.event_type, &d.source).into())
        .collect();
    let count = events.len();
    if count > 0 {
        app.commit(
            &metadata(&principal, &req),
            endpoint::stream(id),
            ExpectedRevision::StreamExists,
            events,
        )
        .await?;
    }
    Ok(json(
        warp::http::StatusCode::ACCEPTED,
        &json!({"redelivered": count, "truncated": truncated}),
    ))
}

/// A new delivery that sends delivery `of` again, with a new `webhook-id`.
pub fn redelivery(
    endpoint: u64,
    organization: u64,
    of: u64,
    event_type: &str,
    source: &DeliverySource,
) -> DeliveryScheduled {
    DeliveryScheduled {
        endpoint,
        organization,
        webhook_id: new_webhook_id(),
        event_type: event_type.to_owned(),
        kind: DeliveryKind::Redelivery { of },
        source: source.clone(),
    }
}

/// `POST /{id}/enable/`: re-enables a disabled endpoint (its failure clock starts afresh).
pub async fn enable(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let _serial = app.commands.lock().await;
    let endpoint = find_managed(&app, &principal, id)?;
    if !endpoint.enabled {
        let event = EndpointEnabled {
            id,
            organization: endpoint.organization,
        };
        app.commit(
            &metadata(&principal, &req),
            endpoint::stream(id),
            ExpectedRevision::StreamExists,
            vec![event.into()],
        )
        .await?;
    }
    Ok(ok(&rendered(&app, id)?))
}
