//! `/api/v2/notification_templates/`: where `send_notification` actions report.

use std::sync::Arc;

use serde_json::{Value, json};

use super::common::url_policy;
use super::templates::{TemplateResource, template_events, visible};
use crate::app::App;
use crate::domain::notification::{
    self, NotificationConfig, NotificationInput, NotificationKind, NotificationTemplateCreated,
    NotificationTemplateDeleted, NotificationTemplateUpdated,
};
use crate::domain::{DomainError, Event, rfc3339};
use crate::http::auth::{authenticate, require_manage};
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, ok};
use crate::http::{ApiError, Request, metadata};
use crate::jobs::notify::{Summary, sent_json};
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
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(name, value)| {
                    let clear = app.master_key.open_text(value).unwrap_or_default();
                    (name.clone(), json!(mask(&clear)))
                })
                .collect();
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

/// The shared template handlers' view of notification templates.
pub struct NotificationTemplates;

impl TemplateResource for NotificationTemplates {
    type Record = NotificationRecord;
    type Config = NotificationConfig;
    type Input = NotificationInput;
    const WHAT: &'static str = "A notification template";

    fn find(app: &App, id: u64) -> Option<NotificationRecord> {
        app.views.notifications.read().get(id).cloned()
    }
    fn config(record: &NotificationRecord) -> &NotificationConfig {
        &record.config
    }
    fn next_id(app: &App) -> u64 {
        app.views.notifications.read().next_id()
    }
    fn stream(id: u64) -> String {
        notification::stream(id)
    }
    fn organization(input: &NotificationInput) -> Option<u64> {
        input.organization
    }
    fn configure(
        app: &App,
        id: u64,
        organization: u64,
        current: Option<NotificationConfig>,
        input: NotificationInput,
    ) -> Result<NotificationConfig, DomainError> {
        let view = app.views.notifications.read();
        let before = match current.as_ref().map(|c| &c.kind) {
            Some(NotificationKind::Webhook { headers, .. }) => Some(headers.clone()),
            _ => None,
        };
        let mut config = notification::configure(
            current,
            input,
            |name, secret| app.master_key.seal(&field(id, name), secret.as_bytes()),
            url_policy(app),
            |name| view.name_taken(organization, name),
        )?;
        // Header values are credentials more often than not (Authorization, API keys).
        if let NotificationKind::Webhook { headers, .. } = &mut config.kind {
            app.master_key.seal_texts(headers, before.as_ref(), true);
        }
        Ok(config)
    }
    template_events!(
        NotificationTemplateCreated,
        NotificationTemplateUpdated,
        NotificationTemplateDeleted
    );
    fn render(app: &App, template: &NotificationRecord) -> Value {
        render(app, template)
    }
}

/// `POST /{id}/test/`: sends a test notification now and reports how it went.
pub async fn test(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let template = visible::<NotificationTemplates>(&app, &principal, id)?;
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
