//! `/api/v2/audit_events/`: the audit trail, a projection of every command's events.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::app::App;
use crate::domain::access::Role;
use crate::domain::rfc3339;
use crate::http::auth::authenticate;
use crate::http::pagination::{Page, paginate, paginate_found};
use crate::http::response::Response;
use crate::http::{ApiError, Request};
use crate::projections::{AuditEntry, AuditFilter};
use crate::store::TimeRange;

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
    if let (Some(scope), Some(asked)) = (scope, organization)
        && scope != asked
    {
        // Another tenant's trail: as empty as one's own filtered to nothing.
        return paginate(&req, Page::from_request(&req)?, 0, Vec::<Value>::new());
    }
    let text = |name| req.query(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let filter = AuditFilter {
        organization: scope.or(organization),
        actor: text("actor"),
        resource_type: text("resource_type"),
        resource_id: text("resource_id"),
        action: text("action"),
        range: TimeRange {
            since: req.query_time("since")?,
            until: req.query_time("until")?,
        },
    };
    let page = Page::from_request(&req)?;
    let found = app
        .views
        .audit
        .read()
        .list(&filter, page.offset(), page.size)?;
    paginate_found(&req, page, &found, render)
}
