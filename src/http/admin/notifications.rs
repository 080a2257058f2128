//! `/api/v2/notification_templates/`: where `send_notification` actions report.

use std::sync::Arc;

use serde_json::{Value, json};

use super::common::{target_organization, url_policy};
use crate::app::App;
use crate::domain::access::Principal;
use crate::domain::notification::{
    self, NotificationInput, NotificationKind, NotificationTemplateCreated,
    NotificationTemplateDeleted, NotificationTemplateUpdated,
};
use crate::domain::{organization_unchanged, rfc3339};
use crate::http::auth::{authenticate, require_manage, require_read};
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, created, no_content, ok};
use crate::http::{ApiError, Request, metadata};
use crate::jobs::notify::{Summary, sent_json};
use crate::journal::ExpectedRevision;
use crate::projections::NotificationRecord;
use crate::secrets::mask;

fn field(id: u64, name: &str) -> String {
    format!("{}/{name}", notification::stream(id))
}

fn render(app: &App, t: &NotificationRecord) -> Value {
    let open = |name: &str, sealed| {
        app.master_key
            .open_string(&field(t.id, name), sealed)
            .map(|v| mask(&v))
            .unwrap_or_else(|_| "***".into())
    };
    let configuration = match &t.config.kind {
        NotificationKind::Webhook {
            url,
            headers,
            secret,
        } => {
            json!({"url": url, "headers": headers, "secret": secret.as_ref().map(|s| open("secret", s))})
        }
        NotificationKind::Slack { url } => json!({"url": open("url", url)}),
    };
    let recent: Vec<Value> = t
        .recent
        .iter()
        .rev()
        .map(|(at, sent)| {
            let mut entry = sent_json(sent);
            entry["time"] = json!(rfc3339(*at));
            entry["event_log_id"] = json!(sent.event_log_id);
            entry
        })
        .collect();
    json!({
        "id": t.id,
        "type": "notification_template",
        "url": format!("/api/v2/notification_templates/{}/", t.id),
        "name": t.config.name,
        "description": t.config.description,
        "organization": t.organization,
        "notification_type": t.config.kind.name(),
        "notification_configuration": configuration,
        "recent_notifications": recent,
        "created": rfc3339(t.created),
        "modified": rfc3339(t.modified),
    })
}

fn visible(app: &App, principal: &Principal, id: u64) -> Result<NotificationRecord, ApiError> {
    let template = app
        .views
        .notifications
        .read()
        .get(id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    require_read(principal, template.organization)?;
    Ok(template)
}

/// `GET`.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let organization = req.query_parsed::<u64>("organization", "an organization id")?;
    let scope = principal.scope();
    let items: Vec<NotificationRecord> = app
        .views
        .notifications
        .read()
        .all()
        .rev()
        .filter(|t| {
            scope.is_none_or(|o| t.organization == o)
                && organization.is_none_or(|o| t.organization == o)
        })
        .cloned()
        .collect();
    paginate_iter(&req, items.iter().map(|t| render(&app, t)))
}

/// `POST`.
pub async fn create(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let input: NotificationInput = req.json()?;
    let organization = target_organization(&app, &principal, input.organization)?;
    let _serial = app.commands.lock().await;
    let id = app.views.notifications.read().next_id();
    let config = {
        let view = app.views.notifications.read();
        notification::configure(
            None,
            NotificationInput {
                organization: None,
                ..input
            },
            |name, secret| app.master_key.seal(&field(id, name), secret.as_bytes()),
            url_policy(&app),
            |name| view.name_taken(organization, name),
        )?
    };
    let event = NotificationTemplateCreated {
        id,
        organization,
        config,
    };
    app.commit(
        &metadata(&principal, &req),
        notification::stream(id),
        ExpectedRevision::NoStream,
        vec![event.into()],
    )
    .await?;
    Ok(created(&render(&app, &visible(&app, &principal, id)?)))
}

/// `GET /{id}`.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    Ok(ok(&render(
        &app,
        &visible(&app, &principal, req.id("id")?)?,
    )))
}

/// `PATCH /{id}`.
pub async fn update(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let current = visible(&app, &principal, id)?;
    require_manage(&principal, current.organization)?;
    let input: NotificationInput = req.json()?;
    organization_unchanged(
        "A notification template",
        current.organization,
        input.organization,
    )
    .into_result()?;
    let _serial = app.commands.lock().await;
    let config = {
        let view = app.views.notifications.read();
        notification::configure(
            Some(current.config.clone()),
            input,
            |name, secret| app.master_key.seal(&field(id, name), secret.as_bytes()),
            url_policy(&app),
            |name| view.name_taken(current.organization, name),
        )?
    };
    if config != current.config {
        let event = NotificationTemplateUpdated {
            id,
            organization: current.organization,
            config,
        };
        app.commit(
            &metadata(&principal, &req),
            notification::stream(id),
            ExpectedRevision::StreamExists,
            vec![event.into()],
        )
        .await?;
    }
    Ok(ok(&render(&app, &visible(&app, &principal, id)?)))
}

/// `DELETE /{id}`.
pub async fn delete(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let current = visible(&app, &principal, id)?;
    require_manage(&principal, current.organization)?;
    let _serial = app.commands.lock().await;
    let event = NotificationTemplateDeleted {
        id,
        organization: current.organization,
        name: current.config.name.clone(),
    };
    app.commit(
        &metadata(&principal, &req),
        notification::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    Ok(no_content())
}

/// `POST /{id}/test/`: sends a test notification now and reports how it went.
pub async fn test(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let template = visible(&app, &principal, id)?;
    require_manage(&principal, template.organization)?;
    let summary = Summary {
        rule_name: "test".into(),
        event_type: Some("test".into()),
        event_guid: None,
        status: "test".into(),
        event_log_id: None,
    };
    let sent = app
        .launcher
        .notifier()
        .test_send(
            id,
            template.organization,
            &summary,
            metadata(&principal, &req),
        )
        .await
        .map_err(|e| ApiError::internal("notification test", e))?;
    Ok(ok(&sent_json(&sent)))
}
