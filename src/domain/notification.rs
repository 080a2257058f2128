//! Notification templates: where a rule's `send_notification` action reports (a JSON webhook,
//! optionally HMAC-signed, or a Slack incoming webhook), and the record of each send.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::event::{AuditInfo, Audited};
use super::{DomainError, FieldErrors, check_name, check_name_free};
use crate::codec::{EventBody, Sealed};

/// Longest template name.
pub const MAX_NAME: usize = 512;

/// Stream of one notification template (its settings and every send).
pub fn stream(id: u64) -> String {
    format!("notification-{id}")
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationKind {
    /// A JSON POST of the event summary.
    Webhook {
        /// Target URL.
        url: String,
        /// Extra headers.
        headers: BTreeMap<String, String>,
        /// HMAC secret for `X-Forge-Signature` (sealed), if any.
        secret: Option<Sealed>,
    },
    /// A Slack incoming webhook (its URL is itself a credential, so it is sealed).
    Slack {
        /// The incoming-webhook URL (sealed).
        url: Sealed,
    },
}

impl NotificationKind {
    /// `webhook` or `slack`.
    pub fn name(&self) -> &'static str {
        match self {
            NotificationKind::Webhook { .. } => "webhook",
            NotificationKind::Slack { .. } => "slack",
        }
    }
}

/// A notification template's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationConfig {
    /// Unique within the organization.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Where it sends.
    pub kind: NotificationKind,
}

/// A notification template was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationTemplateCreated {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Settings.
    pub config: NotificationConfig,
}

impl EventBody for NotificationTemplateCreated {
    const TYPE: &'static str = "notification_template.created";
}

/// A notification template changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationTemplateUpdated {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// New settings.
    pub config: NotificationConfig,
}

impl EventBody for NotificationTemplateUpdated {
    const TYPE: &'static str = "notification_template.updated";
}

/// A notification template was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationTemplateDeleted {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Name at deletion.
    pub name: String,
}

impl EventBody for NotificationTemplateDeleted {
    const TYPE: &'static str = "notification_template.deleted";
}

/// A rule asked for a notification; the runner sends it, retrying until it is delivered or the
/// retry policy gives up. Its journal position identifies the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRequested {
    /// The template.
    pub template: u64,
    /// Organization.
    pub organization: u64,
    /// The rule that fired.
    pub rule_name: String,
    /// Provider event type.
    pub event_type: Option<String>,
    /// Provider delivery id.
    pub event_guid: Option<String>,
    /// What happened (`fired`).
    pub status: String,
    /// The event log that caused it.
    pub event_log_id: Option<u64>,
}

impl EventBody for NotificationRequested {
    const TYPE: &'static str = "notification.requested";
}

impl Audited for NotificationRequested {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

/// One attempt to send a notification, with its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationSent {
    /// The template.
    pub template: u64,
    /// Organization.
    pub organization: u64,
    /// The request (position of its `notification.requested`); none for a test send.
    pub request: Option<u64>,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When the next attempt is due (µs), if this one failed and another follows.
    pub next_attempt_at: Option<i64>,
    /// The event log that caused it (none for a test send).
    pub event_log_id: Option<u64>,
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    /// The receiver's HTTP status.
    pub response_status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// Round trip in milliseconds.
    pub duration_ms: u64,
}

impl EventBody for NotificationSent {
    const TYPE: &'static str = "notification.sent";
}

fn audit(id: u64, organization: u64, details: serde_json::Value) -> Option<AuditInfo> {
    Some(AuditInfo {
        organization: Some(organization),
        resource_type: "notification_template",
        resource_id: id.to_string(),
        details,
    })
}

impl Audited for NotificationTemplateCreated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"name": self.config.name, "notification_type": self.config.kind.name()}),
        )
    }
}

impl Audited for NotificationTemplateUpdated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"name": self.config.name, "notification_type": self.config.kind.name()}),
        )
    }
}

impl Audited for NotificationTemplateDeleted {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"name": self.name}),
        )
    }
}

impl Audited for NotificationSent {
    fn audit(&self) -> Option<AuditInfo> {
        None
    }
}

/// Client input for creating or patching a notification template.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationInput {
    /// Unique within the organization.
    pub name: Option<String>,
    /// Organization (on creation only).
    pub organization: Option<u64>,
    /// Free text.
    pub description: Option<String>,
    /// `webhook` or `slack`.
    pub notification_type: Option<String>,
    /// Where and how to send (AWX's name for it).
    #[serde(default)]
    pub notification_configuration: ConfigurationInput,
}

/// The `notification_configuration` object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationInput {
    /// Target (or Slack incoming-webhook) URL.
    pub url: Option<String>,
    /// `webhook`: extra headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// `webhook`: HMAC secret (null removes it).
    #[serde(default, deserialize_with = "double_option")]
    pub secret: Option<Option<String>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Builds and validates a notification template. `seal(field, value)` encrypts a secret field
/// (`secret`, or a Slack `url`);
/// `url_check` applies the outbound network policy.
pub fn configure(
    base: Option<NotificationConfig>,
    input: NotificationInput,
    seal: impl Fn(&str, &str) -> Sealed,
    url_check: impl Fn(&str) -> Result<(), String>,
    name_taken: impl Fn(&str) -> bool,
) -> Result<NotificationConfig, DomainError> {
    let mut errors = FieldErrors::default();
    let name = input
        .name
        .or_else(|| base.as_ref().map(|b| b.name.clone()))
        .unwrap_or_default();
    check_name(&mut errors, "name", &name, MAX_NAME);
    let current = base.as_ref().map(|b| b.kind.clone());
    let kind_name = input
        .notification_type
        .or_else(|| current.as_ref().map(|k| k.name().to_owned()));
    let check_url = |url: &str, errors: &mut FieldErrors| match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && url.len() <= 2048 => {
            if let Err(e) = url_check(url) {
                errors.add("url", e);
            }
        }
        _ => errors.add(
            "url",
            "Enter an absolute http(s) URL of at most 2048 characters.",
        ),
    };
    let input_config = input.notification_configuration;
    let kind = match kind_name.as_deref() {
        Some("webhook") => {
            let (cur_url, cur_headers, cur_secret) = match current {
                Some(NotificationKind::Webhook {
                    url,
                    headers,
                    secret,
                }) => (Some(url), headers, secret),
                _ => (None, BTreeMap::new(), None),
            };
            let url = input_config.url.or(cur_url).unwrap_or_default();
            check_url(&url, &mut errors);
            let headers = input_config.headers.unwrap_or(cur_headers);
            for (name, value) in &headers {
                if let Err(e) = crate::delivery::signing::validate_custom_header(name, value) {
                    errors.add("headers", e.to_string());
                }
            }
            let secret = match input_config.secret {
                Some(Some(secret)) if !secret.is_empty() => Some(seal("secret", &secret)),
                Some(_) => None,
                None => cur_secret,
            };
            NotificationKind::Webhook {
                url,
                headers,
                secret,
            }
        }
        Some("slack") => {
            if input_config.headers.is_some() || input_config.secret.is_some() {
                errors.add(
                    "notification_configuration",
                    "Slack notifications take only a url.",
                );
            }
            let url = match (input_config.url, current) {
                (Some(url), _) => {
                    check_url(&url, &mut errors);
                    seal("url", &url)
                }
                (None, Some(NotificationKind::Slack { url })) => url,
                (None, _) => {
                    errors.add("url", "The Slack incoming-webhook URL is required.");
                    Sealed::default()
                }
            };
            NotificationKind::Slack { url }
        }
        Some(other) => {
            errors.add(
                "notification_type",
                format!("\"{other}\" is not a valid choice; expected webhook or slack."),
            );
            NotificationKind::Slack {
                url: Sealed::default(),
            }
        }
        None => {
            errors.add("notification_type", "This field is required.");
            NotificationKind::Slack {
                url: Sealed::default(),
            }
        }
    };
    let description = input
        .description
        .or_else(|| base.as_ref().map(|b| b.description.clone()))
        .unwrap_or_default();
    errors.into_result()?;
    check_name_free(
        "A notification template",
        base.as_ref().map(|b| b.name.as_str()),
        &name,
        name_taken,
    )?;
    Ok(NotificationConfig {
        name,
        description,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(_field: &str, s: &str) -> Sealed {
        Sealed(s.as_bytes().to_vec())
    }

    #[test]
    fn webhook_and_slack_templates_validate() {
        let input: NotificationInput = serde_json::from_value(serde_json::json!({
            "name": "ops", "notification_type": "webhook",
            "notification_configuration": {"url": "https://hooks.example.com/x", "headers": {"X-Team": "ops"}, "secret": "s3cret-value"}
        }))
        .unwrap();
        let config = configure(None, input, seal, |_| Ok(()), |_| false).unwrap();
        assert!(matches!(
            config.kind,
            NotificationKind::Webhook {
                secret: Some(_),
                ..
            }
        ));
        let slack: NotificationInput =
            serde_json::from_value(serde_json::json!({"name": "s", "notification_type": "slack", "notification_configuration": {"url": "https://hooks.slack.com/services/T/B/X"}})).unwrap();
        assert!(matches!(
            configure(None, slack, seal, |_| Ok(()), |_| false)
                .unwrap()
                .kind,
            NotificationKind::Slack { .. }
        ));
        let bad: NotificationInput =
            serde_json::from_value(serde_json::json!({"name": "", "notification_type": "pigeon"}))
                .unwrap();
        match configure(None, bad, seal, |_| Ok(()), |_| false) {
            Err(DomainError::Invalid(f)) => {
                assert!(f.0.contains_key("name") && f.0.contains_key("notification_type"))
            }
            other => panic!("{other:?}"),
        }
        let reserved: NotificationInput = serde_json::from_value(serde_json::json!({
            "name": "r", "notification_type": "webhook",
            "notification_configuration": {"url": "https://x.example.com", "headers": {"X-Forge-Signature": "forged"}}
        }))
        .unwrap();
        assert!(
            matches!(configure(None, reserved, seal, |_| Ok(()), |_| false), Err(DomainError::Invalid(f)) if f.0.contains_key("headers"))
        );
    }
}
