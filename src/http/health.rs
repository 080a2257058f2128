//! Liveness, readiness and metrics.

use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;

use super::error::ApiError;
use super::request::Request;
use super::response::{Response, json, ok, text};
use crate::app::App;

/// `GET /healthz`: the process is up.
pub async fn healthz(_app: Arc<App>, _req: Request) -> Result<Response, ApiError> {
    Ok(ok(&json!({"status": "ok"})))
}

/// `GET /readyz`: the journal is open and every read model has caught up (503 otherwise).
pub async fn readyz(app: Arc<App>, _req: Request) -> Result<Response, ApiError> {
    let head = app.journal.next_position();
    let projections: serde_json::Map<String, serde_json::Value> = app
        .views
        .checkpoints()
        .into_iter()
        .map(|(name, checkpoint)| (name.to_owned(), json!(checkpoint)))
        .collect();
    let body = json!({
        "status": if app.is_ready() { "ready" } else { "not_ready" },
        "journal": app.journal.stopped().map_or_else(|| "open".to_owned(), |why| format!("stopped: {why}")),
        "journal_position": head,
        "projections": projections,
    });
    let status = if app.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json(status, &body))
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(app: Arc<App>, _req: Request) -> Result<Response, ApiError> {
    // From the read model, not from the endpoint actors: an asleep endpoint's retries count too.
    let pending = app.views.outbound.read().pending_total();
    app.metrics
        .outbound
        .pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    Ok(text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        app.metrics.render(),
    ))
}
