//! `/api/v2/audit_events/`: the audit trail, a projection of every command's events.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::app::App;
use crate::domain::access::Role;
use crate::domain::rfc3339;
use crate::http::auth::authenticate;
use crate::http::pagination::paginate_iter;
use crate::http::response::Response;
use crate::http::{ApiError, Request};
use crate::projections::AuditEntry;

fn render(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.id,
        "timestamp": rfc3339(entry.timestamp),
        "actor": entry.actor,
        "action": entry.action,
        "organization": entry.organization,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "correlation_id": entry.correlation_id,
        "details": serde_json::from_str::<Value>(&entry.details).unwrap_or(Value::Null),
    })
}

/// `GET`: newest first. Filters: `organization`, `actor`, `resource_type`, `resource_id`,
/// `action`, `since`, `until` (RFC 3339). System admins see everything; organization admins see
/// their organization's entries; members may not read the audit trail.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    if principal.role == Role::Member {
        return Err(ApiError::forbidden("Only admins may read the audit trail."));
    }
    let scope = principal.scope();
    let organization = req.query_parsed::<u64>("organization", "an organization id")?;
    let (since, until) = (req.query_time("since")?, req.query_time("until")?);
    let text = |name| req.query(name).filter(|v| !v.is_empty());
    let (actor, resource_type, resource_id, action) = (
        text("actor"),
        text("resource_type"),
        text("resource_id"),
        text("action"),
    );
    let view = app.views.audit.read();
    let items = view
        .entries()
        .iter()
        .rev()
        .filter(|e| scope.is_none_or(|org| e.organization == Some(org)))
        .filter(|e| organization.is_none_or(|org| e.organization == Some(org)))
        .filter(|e| actor.is_none_or(|a| e.actor == a))
        .filter(|e| resource_type.is_none_or(|t| e.resource_type == t))
        .filter(|e| resource_id.is_none_or(|i| e.resource_id == i))
        .filter(|e| action.is_none_or(|a| e.action == a))
        .filter(|e| since.is_none_or(|t| e.timestamp >= t))
        .filter(|e| until.is_none_or(|t| e.timestamp <= t))
        .map(render);
    paginate_iter(&req, items)
}
