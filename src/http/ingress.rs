//! `POST /api/v2/eda_webhooks/{path}/`: providers deliver webhooks here. The signature is the
//! authentication. A verified request is journaled as `webhook.received` and answered 202 only
//! once durable; its rule's actor decides what to do with it afterwards, off the request path.
//!
//! Once the append is submitted it completes even if the client hangs up and this handler is
//! dropped: whatever reached the journal is decided and acted on.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Value, json};
use warp::http::{StatusCode, header};

use super::error::ApiError;
use super::request::{Request, media_type};
use super::response::{Response, json};
use crate::app::App;
use crate::codec::{EventBody as _, Protected, RawJson};
use crate::domain::Event;
use crate::domain::rate_limit::TokenBucket;
use crate::domain::rule;
use crate::domain::webhook::{
    CREDENTIAL_HEADERS, WebhookContent, WebhookReceived, WebhookRejected, form_payload,
};
use crate::intake::Claim;
use crate::journal::{ExpectedRevision, Metadata};
use crate::projections::RuleRecord;
use crate::verify::{Inbound, SourceType, identify, replay_key, verify_request};

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "No enabled event rule listens on this webhook path.",
    )
}

/// The keys that verify right now: the current one, and the previous one during its grace period.
fn keys(app: &App, rule: &RuleRecord, now: i64) -> Result<Vec<String>, ApiError> {
    let field = format!("{}/webhook_key", rule::stream(rule.id));
    let open = |sealed| {
        app.master_key
            .open_string(&field, sealed)
            .map_err(|e| ApiError::internal("webhook key", e))
    };
    let mut keys = vec![open(&rule.key)?];
    if let Some((previous, until)) = &rule.previous_key
        && now < *until
    {
        keys.push(open(previous)?);
    }
    Ok(keys)
}

/// Request headers worth keeping: lower-case names, credentials removed, signatures kept.
fn kept_headers(req: &Request) -> Vec<(String, String)> {
    req.headers
        .iter()
        .filter(|(name, _)| !CREDENTIAL_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Marks where headers were dropped to fit the cap.
pub const TRUNCATED_HEADER: &str = "x-hookforge-truncated";

/// Keeps headers in order while names and values fit `cap` bytes in all; a value that does not
/// fit is cut, and a final [`TRUNCATED_HEADER`] says how much was dropped.
fn cap_headers(headers: Vec<(String, String)>, cap: usize) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    let (mut used, mut dropped_headers, mut dropped_bytes) = (0usize, 0usize, 0usize);
    for (name, value) in headers {
        let size = name.len() + value.len();
        if used + size <= cap {
            used += size;
            kept.push((name, value));
            continue;
        }
        let room = cap.saturating_sub(used + name.len());
        if dropped_headers == 0 && room >= 16 {
            let mut end = room;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            dropped_bytes += value.len() - end;
            used += name.len() + end;
            kept.push((name, value[..end].to_owned()));
        } else {
            dropped_headers += 1;
            dropped_bytes += size;
        }
    }
    if dropped_bytes > 0 {
        kept.push((
            TRUNCATED_HEADER.to_owned(),
            format!(
                "{dropped_headers} headers and {dropped_bytes} bytes dropped (limit {cap} bytes)"
            ),
        ));
    }
    kept
}

/// Sources whose event type or delivery id come from the payload rather than headers.
fn identity_needs_payload(source: SourceType) -> bool {
    !matches!(
        source,
        SourceType::WebhookGithub | SourceType::WebhookGitlab | SourceType::WebhookGitea
    )
}

/// `POST /api/v2/eda_webhooks/{path}/`.
pub async fn receive(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let rule = {
        let path = req.param("path").unwrap_or_default();
        app.views
            .rules
            .read()
            .by_path(path)
            .filter(|r| r.config.enabled)
            .cloned()
            .ok_or_else(not_found)?
    };
    let source = rule.config.source_type;
    let form = match req.header(header::CONTENT_TYPE).map(media_type).as_deref() {
        Some("application/json") => false,
        Some("application/x-www-form-urlencoded") => true,
        // SNS posts its JSON envelope as text/plain.
        Some("text/plain") if source == SourceType::Cloudwatch => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the webhook as application/json (or GitHub's application/x-www-form-urlencoded payload= form).",
            ));
        }
    };
    let now = chrono::Utc::now();
    let now_micros = now.timestamp_micros();
    let keys = keys(&app, &rule, now_micros)?;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let inbound = Inbound {
        headers: &req.headers,
        body: &req.body,
        now,
    };
    let verified = verify_request(source, &inbound, &key_refs, &app.sns_certs).await;
    if let Err(e) = verified.as_ref() {
        let logged = may_log_rejection(&app, rule.id, now_micros);
        if logged {
            record_rejection(&app, &rule, &req, e.to_string())?;
        }
        let inbound = &app.metrics.inbound;
        inbound
            .webhooks
            .with_label_values(&[source.as_str(), "rejected"])
            .inc();
        inbound
            .rejected
            .with_label_values(&[source.as_str(), if logged { "true" } else { "false" }])
            .inc();
        return Err(ApiError::unauthorized(
            e.code(),
            format!("Webhook verification failed: {e}."),
        ));
    }
    let payload: Cow<[u8]> = if form {
        Cow::Owned(form_payload(&req.body))
    } else {
        Cow::Borrowed(&req.body)
    };
    if form && payload.is_empty() {
        return Err(ApiError::bad_request(
            "malformed_body",
            "The form body has no payload field.",
        ));
    }
    let value = if identity_needs_payload(source) {
        serde_json::from_slice::<Value>(&payload).map_err(malformed)?
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(&payload).map_err(malformed)?;
        Value::Null
    };
    let identity = identify(source, &req.headers, &value);
    let replay = match verified {
        Ok(verified) if rule.config.dedup_by_body && rule.config.dedup_window_seconds > 0 => {
            replay_key(verified.scheme, &req.headers, &req.body)
        }
        _ => None,
    };
    // A replay of a captured request under a new delivery id is still the same signed content.
    if let Some(key) = &replay
        && let Some(original) = app.intake.original(&app.rule_store, &rule, key, now_micros)
    {
        return Ok(duplicate(&app, source, original));
    }

    let guard = match identity.event_guid.as_deref() {
        None => None,
        Some(guid) => match app.intake.claim(&app.rule_store, &rule, guid, now_micros) {
            Claim::Duplicate(original) => return Ok(duplicate(&app, source, original)),
            Claim::Wait(mut rx) => {
                let original = rx.wait_for(Option::is_some).await.ok().and_then(|v| *v);
                return match original {
                    Some(original) => Ok(duplicate(&app, source, original)),
                    None => Err(ApiError::unavailable(
                        "A concurrent delivery of this webhook failed; retry.",
                        1,
                    )),
                };
            }
            Claim::Mine(guard) => Some(guard),
        },
    };

    let received = WebhookReceived {
        rule: rule.id,
        organization: rule.organization,
        source_type: source,
        event_type: identity.event_type,
        event_guid: identity.event_guid.clone(),
        replay_key: replay.clone(),
        source_ip: req.remote.map(|a| a.ip().to_string()),
        content: seal(
            &app,
            &rule,
            WebhookReceived::TYPE,
            kept_headers(&req),
            &req.body,
        )?,
        form_encoded: form,
    };
    let is_confirmation =
        source == SourceType::Cloudwatch && value["Type"] == "SubscriptionConfirmation";
    let metadata = Metadata {
        actor: "webhook".into(),
        correlation_id: req.correlation_id.clone(),
    };
    let ticket = app.journal.append(
        rule::stream(rule.id),
        ExpectedRevision::Any,
        vec![Event::from(received).encode(metadata)],
    );
    let appended = ticket.await?;
    let event_log_id = appended.first_position;
    {
        app.intake.accepted(
            rule.id,
            identity.event_guid.iter().chain(&replay),
            event_log_id,
            now_micros,
        );
    }
    if let Some(guard) = guard {
        guard.received(event_log_id);
    }
    app.metrics
        .inbound
        .webhooks
        .with_label_values(&[source.as_str(), "accepted"])
        .inc();
    if is_confirmation {
        confirm_subscription(&value);
    }
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({"event_log_id": event_log_id, "status": "received"}),
    ))
}

fn malformed(e: serde_json::Error) -> ApiError {
    ApiError::bad_request("malformed_json", format!("Malformed JSON payload: {e}."))
}

fn duplicate(app: &App, source: SourceType, original: u64) -> Response {
    app.metrics
        .inbound
        .webhooks
        .with_label_values(&[source.as_str(), "duplicate"])
        .inc();
    json(
        StatusCode::OK,
        &json!({"event_log_id": original, "status": "duplicate"}),
    )
}

/// Whether rule `rule` may journal one more rejected webhook now: unauthenticated senders must
/// not be able to grow the journal at the speed of the network.
fn may_log_rejection(app: &App, rule: u64, now: i64) -> bool {
    let settings = &app.config.ingress;
    app.intake.may_log_rejection(rule, now, || {
        TokenBucket::per_minute(
            settings.rejected_logs_per_minute,
            settings.rejected_logs_burst,
            now,
        )
    })
}

/// Journals a failed verification for forensics (body and headers capped); the sender gets its
/// 401 at once.
fn record_rejection(
    app: &App,
    rule: &RuleRecord,
    req: &Request,
    reason: String,
) -> Result<(), ApiError> {
    let cap = app.config.ingress.failed_payload_bytes;
    let rejected = WebhookRejected {
        rule: rule.id,
        organization: rule.organization,
        source_type: rule.config.source_type,
        reason,
        source_ip: req.remote.map(|a| a.ip().to_string()),
        content: seal(
            app,
            rule,
            WebhookRejected::TYPE,
            cap_headers(kept_headers(req), app.config.ingress.failed_header_bytes),
            &req.body[..req.body.len().min(cap)],
        )?,
        truncated: req.body.len() > cap,
    };
    let metadata = Metadata {
        actor: "webhook".into(),
        correlation_id: req.correlation_id.clone(),
    };
    drop(app.journal.append(
        rule::stream(rule.id),
        ExpectedRevision::Any,
        vec![Event::from(rejected).encode(metadata)],
    ));
    Ok(())
}

/// Headers and body sealed under the rule's organization's data key, bound to `kind`.
fn seal(
    app: &App,
    rule: &RuleRecord,
    kind: &str,
    headers: Vec<(String, String)>,
    body: &[u8],
) -> Result<Protected<WebhookContent>, ApiError> {
    let content = WebhookContent {
        headers,
        body: RawJson(body.to_vec()),
    };
    app.data_keys
        .seal(rule.organization, kind, &content)
        .map_err(|e| ApiError::internal("data key", e))
}

/// Confirms an SNS subscription by fetching its SubscribeURL (validated against AWS's hosts).
fn confirm_subscription(envelope: &Value) {
    let Some(url) = envelope["SubscribeURL"].as_str() else {
        return;
    };
    let url = match crate::verify::sns::check_subscribe_url(url) {
        Ok(url) => url,
        Err(e) => return tracing::warn!(error = %e, "not confirming an SNS subscription"),
    };
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build();
        let result = match client {
            Ok(client) => client.get(url.clone()).send().await.map(|r| r.status()),
            Err(e) => Err(e),
        };
        match result {
            Ok(status) if status.is_success() => tracing::info!(%url, "confirmed SNS subscription"),
            Ok(status) => tracing::warn!(%url, %status, "SNS subscription confirmation refused"),
            Err(e) => tracing::warn!(%url, error = %e, "SNS subscription confirmation failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(sizes: &[usize]) -> Vec<(String, String)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("h{i}"), "v".repeat(*n)))
            .collect()
    }

    #[test]
    fn small_headers_are_kept_whole() {
        let kept = cap_headers(headers(&[10, 20]), 100);
        assert_eq!(kept, headers(&[10, 20]));
    }

    #[test]
    fn large_headers_are_cut_to_the_cap_with_a_marker() {
        let kept = cap_headers(headers(&[60_000, 60_000, 60_000]), 8192);
        let total: usize = kept.iter().map(|(k, v)| k.len() + v.len()).sum();
        let (marker, note) = kept.last().unwrap();
        assert_eq!(marker, TRUNCATED_HEADER);
        assert!(note.starts_with("2 headers and"), "{note}");
        assert!(total - marker.len() - note.len() <= 8192, "{total}");
        assert_eq!(kept[0].0, "h0", "the first header is kept, cut");
        assert!(kept[0].1.len() > 8000);
    }

    #[test]
    fn cutting_respects_character_boundaries() {
        let kept = cap_headers(vec![("h".into(), "é".repeat(100))], 51);
        assert!(kept[0].1.chars().all(|c| c == 'é'));
    }
}
