//! Which event a verified request carries (`event_type`, for conditions and routing) and its
//! delivery id (`event_guid`, for de-duplication of provider retries), per DESIGN.md §4.

use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::SourceType;
use super::headers::value as header;

/// The provider's name for an event and its delivery id, when the request carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// E.g. `push`, `Pipeline Hook`, `incident.triggered`, `alert:firing`, `alarm:ALARM`.
    pub event_type: Option<String>,
    /// A per-delivery id that stays the same when the provider retries the same delivery.
    pub event_guid: Option<String>,
}

/// Derives the event type and delivery id of a request from `source`'s headers and JSON payload
/// (for CloudWatch, the SNS envelope). Missing values are `None`, never an error: identity
/// refines routing and de-duplication, it does not gate acceptance.
pub fn identify(source: SourceType, headers: &HeaderMap, payload: &Value) -> Identity {
    let first_header = |names: &[&str]| names.iter().find_map(|name| header(headers, name));
    let (event_type, event_guid) = match source {
        SourceType::WebhookGithub => (
            header(headers, "X-GitHub-Event"),
            header(headers, "X-GitHub-Delivery"),
        ),
        SourceType::WebhookGitlab => (
            header(headers, "X-Gitlab-Event"),
            first_header(&["Idempotency-Key", "X-Gitlab-Event-UUID"]),
        ),
        SourceType::WebhookGitea => (
            first_header(&["X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event"]),
            first_header(&["X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery"]),
        ),
        SourceType::Pagerduty => (
            text(&payload["event"]["event_type"]),
            header(headers, "X-Webhook-Id"),
        ),
        SourceType::Alertmanager => (
            text(&payload["status"]).map(|status| format!("alert:{status}")),
            alertmanager_guid(payload),
        ),
        SourceType::Datadog => (text(&payload["event_type"]), text(&payload["id"])),
        // The signed `MessageId` (equal to the unsigned `x-amz-sns-message-id` header in real
        // deliveries): preferring the header let a captured message be replayed as new events.
        SourceType::Cloudwatch => (
            sns_event_type(payload),
            text(&payload["MessageId"]).or_else(|| header(headers, "x-amz-sns-message-id")),
        ),
        SourceType::WebhookGeneric => (
            header(headers, "X-Forge-Event").or_else(|| text(&payload["event_type"])),
            first_header(&["X-Forge-Delivery", "webhook-id", "Idempotency-Key"]),
        ),
    };
    Identity {
        event_type,
        event_guid,
    }
}

/// The key that identifies a delivery by what its signature covers, for de-duplication that a
/// replay under a new (unsigned) delivery id cannot dodge: `sha256:<hex>` of the signed
/// content (`{id}.{timestamp}.{body}` for Standard Webhooks, `{timestamp}.{body}` for a
/// timestamped `X-Forge-Signature`, the body otherwise). `None` for SNS, whose signed
/// `MessageId` already is the delivery id.
pub fn replay_key(scheme: &str, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    match scheme {
        s if s.starts_with("sns") => return None,
        s if s.ends_with("standard-webhooks") => {
            for name in ["webhook-id", "webhook-timestamp"] {
                digest.update(header(headers, name).unwrap_or_default());
                digest.update(b".");
            }
        }
        super::generic::TIMESTAMPED => {
            digest.update(header(headers, "X-Forge-Timestamp").unwrap_or_default());
            digest.update(b".");
        }
        _ => {}
    }
    digest.update(body);
    Some(format!("sha256:{}", hex::encode(digest.finalize())))
}

/// A JSON string (non-empty) or number as text; anything else is absent.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// SNS `Type`, or `alarm:<NewStateValue>` for a Notification whose `Message` is a CloudWatch
/// alarm state change (`{"AlarmName": …, "NewStateValue": "ALARM", …}`).
fn sns_event_type(envelope: &Value) -> Option<String> {
    let kind = text(&envelope["Type"])?;
    if kind == "Notification" {
        let alarm_state = envelope["Message"]
            .as_str()
            .and_then(|message| serde_json::from_str::<Value>(message).ok())
            .and_then(|message| text(&message["NewStateValue"]));
        if let Some(state) = alarm_state {
            return Some(format!("alarm:{state}"));
        }
    }
    Some(kind)
}

/// A stable id for one Alertmanager notification: SHA-256 (hex) of the JSON array
/// `[groupKey, status, [sorted alert fingerprints]]`. Alertmanager re-sends the same group with
/// the same alerts on every `repeat_interval` and on retries; they map to the same id, while a
/// status change or a different set of alerts yields a new one. Alerts without a `fingerprint`
/// (older senders) use their labels, sorted by name, which is what a fingerprint is computed from.
fn alertmanager_guid(payload: &Value) -> Option<String> {
    let group_key = payload["groupKey"].as_str()?;
    let status = payload["status"].as_str()?;
    let mut fingerprints: Vec<String> = payload["alerts"]
        .as_array()
        .map(|alerts| alerts.iter().map(alert_fingerprint).collect())
        .unwrap_or_default();
    fingerprints.sort_unstable();
    let canonical = serde_json::json!([group_key, status, fingerprints]).to_string();
    Some(hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// An alert's `fingerprint`, or its labels as a JSON array of `[name, value]` pairs sorted by name.
fn alert_fingerprint(alert: &Value) -> String {
    if let Some(fingerprint) = alert["fingerprint"].as_str() {
        return fingerprint.to_owned();
    }
    let mut labels: Vec<(&String, &Value)> = alert["labels"]
        .as_object()
        .map(|labels| labels.iter().collect())
        .unwrap_or_default();
    labels.sort_by(|a, b| a.0.cmp(b.0));
    serde_json::json!(labels).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::verify::test_support::headers;

    fn id(event_type: &str, event_guid: &str) -> Identity {
        Identity {
            event_type: Some(event_type.to_owned()),
            event_guid: Some(event_guid.to_owned()),
        }
    }

    #[test]
    fn github_push_uses_the_event_and_delivery_headers() {
        // Headers as in GitHub's "Webhook events and payloads" delivery example; payload excerpt
        // of octokit/webhooks payload-examples/api.github.com/push/payload.json.
        let h = headers(&[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-GitHub-Hook-ID", "292430182"),
        ]);
        let payload = json!({"ref": "refs/tags/simple-tag", "deleted": true, "commits": []});
        assert_eq!(
            identify(SourceType::WebhookGithub, &h, &payload),
            id("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(
            identify(SourceType::WebhookGithub, &headers(&[]), &payload),
            Identity::default()
        );
    }

    #[test]
    fn gitlab_pipeline_hook_prefers_the_idempotency_key() {
        // Payload excerpt of xanzy/go-gitlab testdata/webhooks/pipeline.json.
        let payload = json!({"object_kind": "pipeline", "object_attributes": {"id": 31, "status": "success"}});
        let uuid = (
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        );
        let h = headers(&[("X-Gitlab-Event", "Pipeline Hook"), uuid]);
        assert_eq!(
            identify(SourceType::WebhookGitlab, &h, &payload),
            id("Pipeline Hook", "13792a34-cac6-4fda-95a8-c58e00a3954e")
        );
        let h = headers(&[
            ("X-Gitlab-Event", "Pipeline Hook"),
            uuid,
            ("Idempotency-Key", "f5ae3bd6-4b1c-4ab8-9fd5-7a4cbcb8ec2b"),
        ]);
        assert_eq!(
            identify(SourceType::WebhookGitlab, &h, &payload)
                .event_guid
                .as_deref(),
            Some("f5ae3bd6-4b1c-4ab8-9fd5-7a4cbcb8ec2b")
        );
    }

    #[test]
    fn gitea_family_headers_are_read_in_order() {
        let h = headers(&[("X-Forgejo-Event", "push"), ("X-Forgejo-Delivery", "d-1")]);
        assert_eq!(
            identify(SourceType::WebhookGitea, &h, &Value::Null),
            id("push", "d-1")
        );
        let h = headers(&[
            ("X-Gitea-Event", "pull_request"),
            ("X-Gogs-Event", "pull_request"),
            ("X-Gitea-Delivery", "g-1"),
        ]);
        assert_eq!(
            identify(SourceType::WebhookGitea, &h, &Value::Null),
            id("pull_request", "g-1")
        );
    }

    #[test]
    fn pagerduty_uses_the_payload_event_type_and_the_webhook_id_header() {
        let payload: Value =
            serde_json::from_str(crate::verify::pagerduty::tests::SDK_BODY).unwrap();
        let h = headers(&[("X-Webhook-Id", "5ac64822-4adc-4fda-ade0-410becf0de4f")]);
        assert_eq!(
            identify(SourceType::Pagerduty, &h, &payload),
            id(
                "incident.priority_updated",
                "5ac64822-4adc-4fda-ade0-410becf0de4f"
            )
        );
    }

    // Excerpt of prometheus-msteams pkg/card/testdata/prom_post_request.json (older shape: no
    // per-alert fingerprint).
    fn alertmanager_payload() -> Value {
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"high_memory_load\"}",
            "status": "firing",
            "receiver": "teams_proxy",
            "alerts": [{
                "labels": {
                    "severity": "warning",
                    "alertname": "high_memory_load",
                    "instance": "instance-with-hyphen_and_underscore",
                    "job": "docker_nodes",
                    "monitor": "master"
                },
                "startsAt": "2018-03-07T06:33:21.873077559-05:00"
            }]
        })
    }

    #[test]
    fn alertmanager_identity_is_status_and_a_stable_group_hash() {
        let payload = alertmanager_payload();
        // sha256 of ["{}:{alertname=\"high_memory_load\"}","firing",["[[\"alertname\",…]]"]]:
        // pinned, because changing it would break de-duplication across an upgrade.
        assert_eq!(
            identify(SourceType::Alertmanager, &headers(&[]), &payload),
            id(
                "alert:firing",
                "d42dc498ccb68e82261d15dcca96eedf340c9f57c371a938c0c7b5ba13ec7cd5"
            )
        );
        let mut resolved = payload.clone();
        resolved["status"] = "resolved".into();
        let resolved = identify(SourceType::Alertmanager, &headers(&[]), &resolved);
        assert_eq!(resolved.event_type.as_deref(), Some("alert:resolved"));
        assert_ne!(
            resolved.event_guid,
            identify(SourceType::Alertmanager, &headers(&[]), &payload).event_guid
        );
    }

    #[test]
    fn alertmanager_fingerprints_are_sorted_so_alert_order_does_not_matter() {
        let alert = |fp: &str| json!({"fingerprint": fp, "status": "resolved", "labels": {}});
        let payload = |alerts: Vec<Value>| json!({"groupKey": "{}:{alertname=\"x\"}", "status": "resolved", "alerts": alerts});
        let a = identify(
            SourceType::Alertmanager,
            &headers(&[]),
            &payload(vec![alert("c3d4"), alert("a1b2")]),
        );
        let b = identify(
            SourceType::Alertmanager,
            &headers(&[]),
            &payload(vec![alert("a1b2"), alert("c3d4")]),
        );
        assert_eq!(
            a.event_guid.as_deref(),
            Some("692f6465a2a495ce170f88dd81ccd240ff8a9470488a9c1b8a509950d9d0b936")
        );
        assert_eq!(a, b);
        let fewer = identify(
            SourceType::Alertmanager,
            &headers(&[]),
            &payload(vec![alert("a1b2")]),
        );
        assert_ne!(fewer.event_guid, a.event_guid);
        assert_eq!(
            identify(
                SourceType::Alertmanager,
                &headers(&[]),
                &json!({"alerts": []})
            ),
            Identity::default()
        );
    }

    #[test]
    fn datadog_reads_the_templated_payload() {
        let payload = json!({"id": 6891458102_u64, "event_type": "query_alert_monitor", "title": "[Triggered] CPU"});
        assert_eq!(
            identify(SourceType::Datadog, &headers(&[]), &payload),
            id("query_alert_monitor", "6891458102")
        );
    }

    #[test]
    fn sns_messages_use_type_and_message_id() {
        let notification: Value =
            serde_json::from_str(crate::verify::sns::test_support::NOTIFICATION).unwrap();
        let h = headers(&[
            ("x-amz-sns-message-type", "Notification"),
            (
                "x-amz-sns-message-id",
                "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            ),
        ]);
        assert_eq!(
            identify(SourceType::Cloudwatch, &h, &notification),
            id("Notification", "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324")
        );
        let confirmation: Value =
            serde_json::from_str(crate::verify::sns::test_support::SUBSCRIPTION_CONFIRMATION)
                .unwrap();
        assert_eq!(
            identify(SourceType::Cloudwatch, &headers(&[]), &confirmation),
            id(
                "SubscriptionConfirmation",
                "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"
            )
        );
    }

    #[test]
    fn cloudwatch_alarm_notifications_are_typed_by_their_new_state() {
        // Message shape of the CloudWatch alarm example in the Amazon CloudWatch User Guide
        // ("Using Amazon CloudWatch alarms", SNS notification JSON), trimmed.
        let alarm = json!({
            "AlarmName": "awsec2-i-0123-High-CPU-Utilization",
            "NewStateValue": "ALARM",
            "OldStateValue": "OK",
            "NewStateReason": "Threshold Crossed: 1 datapoint [99.5] was greater than the threshold (80.0).",
            "StateChangeTime": "2024-01-01T00:00:00.000+0000",
            "Region": "US West (Oregon)"
        });
        let envelope = json!({
            "Type": "Notification",
            "MessageId": "b4d2b0a4-0000-5fb6-8d3b-1c0ab37e3f6e",
            "Message": alarm.to_string(),
        });
        assert_eq!(
            identify(SourceType::Cloudwatch, &headers(&[]), &envelope),
            id("alarm:ALARM", "b4d2b0a4-0000-5fb6-8d3b-1c0ab37e3f6e")
        );
    }

    #[test]
    fn generic_prefers_headers_then_falls_back_in_documented_order() {
        let payload = json!({"event_type": "build.finished"});
        let h = headers(&[("webhook-id", "msg_1"), ("Idempotency-Key", "idem-1")]);
        assert_eq!(
            identify(SourceType::WebhookGeneric, &h, &payload),
            id("build.finished", "msg_1")
        );
        let h = headers(&[
            ("X-Forge-Event", "deploy.done"),
            ("X-Forge-Delivery", "del-1"),
            ("webhook-id", "msg_1"),
        ]);
        assert_eq!(
            identify(SourceType::WebhookGeneric, &h, &payload),
            id("deploy.done", "del-1")
        );
        let h = headers(&[("Idempotency-Key", "idem-1"), ("X-Forge-Event", "  ")]);
        assert_eq!(
            identify(SourceType::WebhookGeneric, &h, &json!({})),
            Identity {
                event_type: None,
                event_guid: Some("idem-1".to_owned())
            }
        );
    }
}
