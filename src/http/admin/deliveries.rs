//! Delivery history: `/api/v2/outbound_webhooks/{id}/deliveries/`, `/api/v2/deliveries/{id}/`
//! and `/api/v2/deliveries/{id}/redeliver/`.

use std::sync::Arc;

use serde_json::{Value, json};
use warp::http::StatusCode;

use super::outbound::{find, redelivery};
use crate::app::App;
use crate::domain::access::Principal;
use crate::domain::delivery::DeliveryKind;
use crate::domain::endpoint;
use crate::domain::{FieldErrors, rfc3339};
use crate::http::auth::{authenticate, require_manage, require_read};
use crate::http::pagination::{Page, paginate_found};
use crate::http::response::{Response, json, ok};
use crate::http::{ApiError, Request, metadata};
use crate::journal::ExpectedRevision;
use crate::projections::{DeliveryFilter, DeliveryRecord, DeliveryStatus};

/// The API form of a delivery; `attempts` lists every attempt when `with_attempts`.
pub fn render(d: &DeliveryRecord, with_attempts: bool) -> Value {
    let (kind, redelivery_of) = match d.kind {
        DeliveryKind::Dispatched => ("dispatched", None),
        DeliveryKind::Redelivery { of } => ("redelivery", Some(of)),
        DeliveryKind::Test => ("test", None),
    };
    let event_id = d.source.position();
    let mut body = json!({
        "id": d.id,
        "type": "delivery",
        "url": format!("/api/v2/deliveries/{}/", d.id),
        "endpoint": d.endpoint,
        "organization": d.organization,
        "webhook_id": d.webhook_id.to_string(),
        "event_type": d.event_type,
        "event_id": event_id,
        "kind": kind,
        "redelivery_of": redelivery_of,
        "redelivered_by": d.redelivered_by,
        "status": d.status,
        "response_status": d.response_status(),
        "duration_ms": d.duration_ms(),
        "response_snippet": d.response_snippet,
        "error_message": d.error_message(),
        "attempt_count": d.attempts.len(),
        "next_retry_at": d.next_retry_at.map(rfc3339),
        "delivered_at": d.delivered_at().map(rfc3339),
        "created_at": rfc3339(d.created_at),
    });
    if with_attempts {
        body["attempts"] = d
            .attempts
            .iter()
            .map(|a| json!({"attempt": a.attempt, "time": rfc3339(a.at), "status": a.status, "duration_ms": a.duration_ms, "error": a.error}))
            .collect();
    }
    body
}

/// `GET /api/v2/outbound_webhooks/{id}/deliveries/`: newest first. Filters: `status`
/// (`pending|delivered|failed|dead`), `event_type`, `since` (RFC 3339, on `created_at`).
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    find(&app, &principal, id)?;
    let status = match req.query("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::from(FieldErrors::one(
                "status",
                format!("{text:?} is not one of pending, delivered, failed, dead, filter_error."),
            ))
        })?),
    };
    let filter = DeliveryFilter {
        status,
        event_type: req
            .query("event_type")
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        since: req.query_time("since")?,
    };
    let page = Page::from_request(&req)?;
    let found = app
        .views
        .deliveries
        .read()
        .list(id, &filter, page.offset(), page.size)?;
    paginate_found(&req, page, &found, |d| render(d, false))
}

/// The delivery of the request's `{id}` if the caller may see it (404 otherwise), with the
/// caller.
fn find_delivery(app: &App, req: &Request) -> Result<(Principal, DeliveryRecord), ApiError> {
    let principal = authenticate(app, req)?;
    let id = req.id("id")?;
    let d = app
        .views
        .deliveries
        .read()
        .get(id)?
        .ok_or_else(ApiError::not_found)?;
    require_read(&principal, d.organization)?;
    // A deleted endpoint's history leaves the API at once; retention removes its rows.
    if app.views.outbound.read().endpoint(d.endpoint).is_none() {
        return Err(ApiError::not_found());
    }
    Ok((principal, d))
}

/// `GET /api/v2/deliveries/{id}/`: one delivery with every attempt.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let (_, delivery) = find_delivery(&app, &req)?;
    Ok(ok(&render(&delivery, true)))
}

/// `POST /api/v2/deliveries/{id}/redeliver/`: sends a delivered, failed or dead delivery again
/// as a new delivery (new id and `webhook-id`, a fresh attempt chain). 409 while it is pending or
/// when the endpoint is disabled.
pub async fn redeliver(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let (principal, delivery) = find_delivery(&app, &req)?;
    let principal = &principal;
    require_manage(principal, delivery.organization)?;
    if delivery.status == DeliveryStatus::Pending {
        return Err(ApiError::conflict(
            "The delivery is still pending; it can be redelivered once it is delivered, failed or dead.",
        ));
    }
    let _serial = app.commands.lock().await;
    let enabled = app
        .views
        .outbound
        .read()
        .endpoint(delivery.endpoint)
        .map(|e| e.enabled)
        .ok_or_else(ApiError::not_found)?;
    if !enabled {
        return Err(ApiError::conflict(
            "The endpoint is disabled; enable it before redelivering.",
        ));
    }
    let event = redelivery(
        delivery.endpoint,
        delivery.organization,
        delivery.id,
        &delivery.event_type,
        &delivery.source,
    );
    let appended = app
        .commit(
            &metadata(principal, &req),
            endpoint::stream(delivery.endpoint),
            ExpectedRevision::StreamExists,
            vec![event.into()],
        )
        .await?;
    let new = app
        .views
        .deliveries
        .read()
        .get(appended.first_position)?
        .ok_or_else(|| ApiError::internal("redelivery missing after commit", delivery.id))?;
    Ok(json(StatusCode::ACCEPTED, &render(&new, true)))
}
