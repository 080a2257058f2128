//! `/api/v2/event_logs/`: every inbound webhook and what became of it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::common::choice;
use crate::actors::rule::condition_json;
use crate::app::App;
use crate::codec::EventBody as _;
use crate::domain::Event;
use crate::domain::access::Principal;
use crate::domain::rfc3339;
use crate::domain::rule;
use crate::domain::webhook::{WebhookReceived, WebhookRejected};
use crate::http::auth::{authenticate, require_read};
use crate::http::pagination::{Page, paginate_found};
use crate::http::response::{Response, ok};
use crate::http::{ApiError, Request};
use crate::projections::{EventLogEntry, EventLogFilter, Status};
use crate::secrets::Unreadable;
use crate::store::TimeRange;
use crate::verify::SourceType;

/// Payload and headers of an entry, read back from the journal and opened; `"expired"` once
/// retention cut them (before compaction removes the bytes, too), `"erased"` once the
/// organization's data key was destroyed.
fn body_and_headers(app: &App, entry: &EventLogEntry) -> (Value, Value) {
    let expired = app
        .views
        .organizations
        .read()
        .payloads()
        .is_expired(entry.organization, entry.created);
    if expired {
        return (json!("expired"), json!("expired"));
    }
    let record = app
        .journal
        .read_stream(&rule::stream(entry.rule), entry.revision, 1)
        .ok()
        .and_then(|r| r.into_iter().next());
    let decoded = record
        .as_ref()
        .and_then(|r| Event::decode(r).ok().flatten());
    let (kind, content, form_encoded) = match decoded {
        Some(Event::WebhookReceived(e)) => (WebhookReceived::TYPE, e.content, e.form_encoded),
        Some(Event::WebhookRejected(e)) => (WebhookRejected::TYPE, e.content, false),
        _ => return (Value::Null, json!({})),
    };
    match app.data_keys.open(entry.organization, kind, content) {
        Ok(content) => {
            let payload = content.payload(form_encoded);
            let payload = serde_json::from_slice(&payload)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&payload)));
            let headers = content.headers.iter().map(|(k, v)| (k.clone(), json!(v)));
            (payload, Value::Object(headers.collect()))
        }
        Err(Unreadable::Erased) => (json!("erased"), json!("erased")),
        Err(e) => {
            tracing::error!(event_log = entry.id, error = %e, "an event log's payload does not open");
            (Value::Null, json!({}))
        }
    }
}

/// An event log as the API shows it.
pub fn render(app: &App, entry: &EventLogEntry) -> Value {
    let (payload, headers) = body_and_headers(app, entry);
    json!({
        "id": entry.id,
        "type": "event_log",
        "url": format!("/api/v2/event_logs/{}/", entry.id),
        "event_rule": entry.rule,
        "event_rule_name": entry.rule_name,
        "organization": entry.organization,
        "source_type": entry.source_type,
        "source_ip": entry.source_ip,
        "event_type": entry.event_type,
        "event_guid": entry.event_guid,
        "payload": payload,
        "headers": headers,
        "conditions_matched": entry.conditions_matched,
        "condition_results": entry.condition_results.iter().map(|(e, r)| condition_json(e, r)).collect::<Vec<_>>(),
        "actions_triggered": entry.actions_triggered,
        "status": entry.status,
        "job_id": entry.job_id,
        "throttle_key": entry.throttle_key,
        "error": entry.error,
        "created": rfc3339(entry.created),
        "modified": rfc3339(entry.modified),
    })
}

/// The filtered, paginated list, optionally for one rule.
pub fn list_for(
    app: &App,
    req: &Request,
    principal: &Principal,
    rule: Option<u64>,
) -> Result<Response, ApiError> {
    let rule = match rule {
        Some(rule) => Some(rule),
        None => req.query_parsed::<u64>("event_rule", "a rule id")?,
    };
    let status = choice(req, "status", Status::parse, Status::NAMES)?;
    let source = choice(
        req,
        "source_type",
        |s| s.parse::<SourceType>().ok(),
        SourceType::NAMES,
    )?;
    let (since, until) = (req.query_time("since")?, req.query_time("until")?);
    let text = |name| req.query(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let filter = EventLogFilter {
        organization: principal.scope(),
        rule,
        status,
        source_type: source,
        event_type: text("event_type"),
        event_guid: text("event_guid"),
        range: TimeRange { since, until },
    };
    // Only the requested page is read and rendered: payloads come back from the journal.
    let page = Page::from_request(req)?;
    let found = app
        .views
        .event_logs
        .read()
        .list(&filter, page.offset(), page.size)?;
    paginate_found(req, page, &found, |e| render(app, e))
}

/// `GET`: filters `event_rule`, `status`, `source_type`, `event_type`, `event_guid`, `since`, `until`.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    list_for(&app, &req, &principal, None)
}

/// `GET /{id}`.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    // An event log id is a journal position: a client that just got it in a 202 may ask before
    // the read model has caught up, so wait (briefly) for the view to reach it.
    if id < app.journal.next_position() {
        let wait = app.views.event_logs.wait_for(id);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), wait).await;
    }
    let entry = app
        .views
        .event_logs
        .read()
        .get(id)?
        .ok_or_else(ApiError::not_found)?;
    require_read(&principal, entry.organization)?;
    Ok(ok(&render(&app, &entry)))
}
