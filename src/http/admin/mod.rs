//! The admin API: one file per resource.

pub mod audit;
pub mod common;
pub mod deliveries;
pub mod event_logs;
pub mod events;
pub mod job_templates;
pub mod jobs;
pub mod notifications;
pub mod organizations;
pub mod outbound;
pub mod rules;
pub mod runs;
pub mod templates;
pub mod tokens;
pub mod workflows;

use std::sync::Arc;

use serde_json::json;

use super::auth::authenticate;
use super::error::ApiError;
use super::request::Request;
use super::response::{Response, ok};
use crate::app::App;

/// `GET /api/v2/`: the resources this server offers.
pub async fn root(_app: Arc<App>, _req: Request) -> Result<Response, ApiError> {
    Ok(ok(&json!({
        "description": "hookforge API v2",
        "version": env!("CARGO_PKG_VERSION"),
        "organizations": "/api/v2/organizations/",
        "tokens": "/api/v2/tokens/",
        "audit_events": "/api/v2/audit_events/",
        "event_rules": "/api/v2/event_rules/",
        "event_logs": "/api/v2/event_logs/",
        "job_templates": "/api/v2/job_templates/",
        "jobs": "/api/v2/jobs/",
        "workflow_job_templates": "/api/v2/workflow_job_templates/",
        "workflow_jobs": "/api/v2/workflow_jobs/",
        "notification_templates": "/api/v2/notification_templates/",
        "outbound_webhooks": "/api/v2/outbound_webhooks/",
        "events": "/api/v2/events/",
        "event_types": "/api/v2/event_types/",
        "me": "/api/v2/me/",
    })))
}

/// `GET /api/v2/me/`: who the caller's token is.
pub async fn me(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    Ok(ok(&json!({
        "token_id": principal.token_id,
        "role": principal.role,
        "organization": principal.organization,
        "actor": principal.actor(),
    })))
}
