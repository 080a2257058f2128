//! Sending notifications: the event summary as signed JSON to a webhook, or as a Slack message.
//! A rule's send is journaled as `notification.requested`; the runner then makes attempts
//! through the outbound delivery client (SSRF guard, no redirects, bounded response) under the
//! outbound retry policy, each recorded as `notification.sent` on the template's stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use warp::http::{HeaderName, HeaderValue};

use crate::delivery::client::{AttemptOutcome, DeliveryClient, OutboundRequest};
use crate::delivery::signing::{signed_headers, validate_custom_header};
use crate::domain::Event;
use crate::domain::notification::{
    self, NotificationKind, NotificationRequested, NotificationSent,
};
use crate::journal::{ExpectedRevision, Journal, Metadata};
use crate::projections::{NotificationsView, Projection};
use crate::secrets::MasterKey;

/// How long a notification send may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a notification says about an event.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The rule that fired (or `test`).
    pub rule_name: String,
    /// Provider event type.
    pub event_type: Option<String>,
    /// Provider delivery id.
    pub event_guid: Option<String>,
    /// What happened (`fired`, `test`).
    pub status: String,
    /// The event log, if any.
    pub event_log_id: Option<u64>,
}

/// Sends notification templates.
pub struct Notifier {
    journal: Journal,
    templates: Projection<NotificationsView>,
    master_key: Arc<MasterKey>,
    client: DeliveryClient,
    public_url: String,
}

impl Notifier {
    /// A notifier sending through `client`, linking event logs under `public_url`.
    pub fn new(
        journal: Journal,
        templates: Projection<NotificationsView>,
        master_key: Arc<MasterKey>,
        client: DeliveryClient,
        public_url: String,
    ) -> Self {
        Self {
            journal,
            templates,
            master_key,
            client,
            public_url,
        }
    }

    /// Journals a request to send template `id` (of `organization`); the runner then sends it,
    /// with retries. Fails at once if the template does not exist.
    pub async fn request(
        &self,
        id: u64,
        organization: u64,
        summary: &Summary,
        metadata: Metadata,
    ) -> Result<u64, String> {
        if self
            .templates
            .read()
            .get(id)
            .is_none_or(|t| t.organization != organization)
        {
            return Err(format!("notification template {id} does not exist"));
        }
        let requested = NotificationRequested {
            template: id,
            organization,
            rule_name: summary.rule_name.clone(),
            event_type: summary.event_type.clone(),
            event_guid: summary.event_guid.clone(),
            status: summary.status.clone(),
            event_log_id: summary.event_log_id,
        };
        let appended = self
            .journal
            .append(
                notification::stream(id),
                ExpectedRevision::Any,
                vec![Event::from(requested).encode(metadata)],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(appended.first_position)
    }

    /// One attempt to send template `id` (which must belong to `organization`); nothing is
    /// recorded.
    pub async fn attempt(
        &self,
        id: u64,
        organization: u64,
        summary: &Summary,
    ) -> Result<AttemptOutcome, String> {
        let template = self
            .templates
            .read()
            .get(id)
            .filter(|t| t.organization == organization)
            .cloned()
            .ok_or_else(|| format!("notification template {id} does not exist"))?;
        let link = summary
            .event_log_id
            .map(|n| format!("{}/api/v2/event_logs/{n}/", self.public_url));
        let field = |name: &str| format!("{}/{name}", notification::stream(id));
        let (url, body, headers) = match &template.config.kind {
            NotificationKind::Webhook {
                url,
                headers,
                secret,
            } => {
                let body = json!({
                    "event": "notification",
                    "notification_template": id,
                    "organization": organization,
                    "rule_name": summary.rule_name,
                    "event_type": summary.event_type,
                    "event_guid": summary.event_guid,
                    "status": summary.status,
                    "event_log_id": summary.event_log_id,
                    "event_log_url": link,
                    "occurred_at": chrono::Utc::now().to_rfc3339(),
                });
                let bytes = serde_json::to_vec(&body).expect("JSON of plain values");
                let custom: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.master_key.open_text(v)?)))
                    .collect::<Result<_, crate::secrets::SecretError>>()
                    .map_err(|e| format!("the notification's headers do not open: {e}"))?;
                let headers = match secret {
                    Some(sealed) => {
                        let secret = self
                            .master_key
                            .open_string(&field("secret"), sealed)
                            .map_err(|e| e.to_string())?;
                        let delivery_id = format!("ntf_{}", uuid::Uuid::new_v4().simple());
                        signed_headers(
                            "notification",
                            &delivery_id,
                            chrono::Utc::now().timestamp(),
                            &bytes,
                            &[&secret],
                            &custom,
                        )
                        .map_err(|e| e.to_string())?
                    }
                    None => plain_headers(&custom)?,
                };
                (url.clone(), bytes, headers)
            }
            NotificationKind::Slack { url } => {
                let url = self
                    .master_key
                    .open_string(&field("url"), url)
                    .map_err(|e| e.to_string())?;
                let mut text = format!(
                    "hookforge: rule *{}* {} on `{}`",
                    summary.rule_name,
                    summary.status,
                    summary.event_type.as_deref().unwrap_or("event")
                );
                if let Some(guid) = &summary.event_guid {
                    text.push_str(&format!(" (delivery {guid})"));
                }
                if let (Some(link), Some(n)) = (&link, summary.event_log_id) {
                    text.push_str(&format!(" - <{link}|event log {n}>"));
                }
                let bytes =
                    serde_json::to_vec(&json!({"text": text})).expect("JSON of plain values");
                (url, bytes, plain_headers(&[])?)
            }
        };
        let url = reqwest::Url::parse(&url).map_err(|e| format!("bad notification URL: {e}"))?;
        Ok(self
            .client
            .send(&OutboundRequest {
                url,
                headers,
                body: Bytes::from(body),
                timeout: TIMEOUT,
                ssl_verify: true,
            })
            .await)
    }

    /// Records an attempt's outcome on the template's stream.
    pub async fn record(&self, sent: NotificationSent, metadata: Metadata) -> Result<(), String> {
        let stream = notification::stream(sent.template);
        self.journal
            .append(
                stream,
                ExpectedRevision::Any,
                vec![Event::from(sent).encode(metadata)],
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// A test send: one attempt, recorded, answered at once.
    pub async fn test_send(
        &self,
        id: u64,
        organization: u64,
        summary: &Summary,
        metadata: Metadata,
    ) -> Result<NotificationSent, String> {
        let outcome = self.attempt(id, organization, summary).await?;
        let sent = sent_from(
            id,
            organization,
            None,
            1,
            summary.event_log_id,
            &outcome,
            None,
        );
        self.record(sent.clone(), metadata).await?;
        Ok(sent)
    }
}

/// The record of an attempt.
pub fn sent_from(
    template: u64,
    organization: u64,
    request: Option<u64>,
    attempt: u32,
    event_log_id: Option<u64>,
    outcome: &AttemptOutcome,
    next_attempt_at: Option<i64>,
) -> NotificationSent {
    NotificationSent {
        template,
        organization,
        request,
        attempt,
        next_attempt_at,
        event_log_id,
        delivered: outcome.is_success(),
        response_status: outcome.status,
        error: outcome.error.as_ref().map(|e| e.message.clone()),
        duration_ms: outcome.duration_ms,
    }
}

fn plain_headers(custom: &[(String, String)]) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut headers = vec![
        (
            warp::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (
            warp::http::header::USER_AGENT,
            HeaderValue::from_static(concat!("hookforge/", env!("CARGO_PKG_VERSION"))),
        ),
    ];
    for (name, value) in custom {
        headers.push(validate_custom_header(name, value).map_err(|e| e.to_string())?);
    }
    Ok(headers)
}

/// An attempt as the API shows it.
pub fn sent_json(sent: &NotificationSent) -> Value {
    json!({
        "delivered": sent.delivered, "response_status": sent.response_status, "duration_ms": sent.duration_ms,
        "error": sent.error, "attempt": sent.attempt,
        "next_attempt_at": sent.next_attempt_at.map(crate::domain::rfc3339),
    })
}
