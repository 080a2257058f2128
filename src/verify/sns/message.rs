//! The JSON envelope SNS POSTs to HTTP(S) subscribers, and the canonical string it signs.
//!
//! <https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html>,
//! <https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html>

use serde::Deserialize;

use super::SnsError;

/// The three kinds of message SNS delivers to an HTTP(S) endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SnsMessageType {
    /// A message published to the topic (a CloudWatch alarm, for instance).
    Notification,
    /// Sent once when the endpoint is subscribed; confirm by fetching `SubscribeURL`.
    SubscriptionConfirmation,
    /// Sent when the endpoint is unsubscribed; `SubscribeURL` re-subscribes.
    UnsubscribeConfirmation,
}

/// Which RSA signature SNS used (the topic's `SignatureVersion` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SignatureVersion {
    /// SHA1withRSA (PKCS #1 v1.5), the default for topics.
    #[serde(rename = "1")]
    V1,
    /// SHA256withRSA (PKCS #1 v1.5).
    #[serde(rename = "2")]
    V2,
}

/// A parsed SNS message, with what verification and subscription confirmation need.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    /// `Type`.
    #[serde(rename = "Type")]
    pub type_: SnsMessageType,
    /// `MessageId`, unique per published message (SNS keeps it across delivery retries).
    pub message_id: String,
    /// `TopicArn`, the topic that sent the message.
    pub topic_arn: String,
    /// `Subject`, present only on notifications published with one.
    #[serde(default)]
    pub subject: Option<String>,
    /// `Message`: for CloudWatch alarms, a JSON document as a string.
    pub message: String,
    /// `Timestamp` exactly as sent (it is signed as text).
    pub timestamp: String,
    /// `SignatureVersion`.
    pub signature_version: SignatureVersion,
    /// `Signature`, base64.
    pub signature: String,
    /// `SigningCertURL`: where the signing certificate lives (check it with `check_cert_url`).
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    /// `SubscribeURL`: GET it to confirm a subscription (confirmations only).
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    /// `UnsubscribeURL` (notifications only).
    #[serde(rename = "UnsubscribeURL", default)]
    pub unsubscribe_url: Option<String>,
    /// `Token` (confirmations only), usable with the ConfirmSubscription API action.
    #[serde(default)]
    pub token: Option<String>,
}

impl SnsMessage {
    /// Parses a request body as an SNS message, requiring the fields its signature covers.
    pub fn parse(body: &[u8]) -> Result<Self, SnsError> {
        let message: SnsMessage = serde_json::from_slice(body)
            .map_err(|err| SnsError::MalformedMessage(err.to_string()))?;
        if message.type_ != SnsMessageType::Notification {
            if message.token.is_none() {
                return Err(SnsError::MalformedMessage(format!(
                    "{} without Token",
                    message.type_.as_str()
                )));
            }
            if message.subscribe_url.is_none() {
                return Err(SnsError::MalformedMessage(format!(
                    "{} without SubscribeURL",
                    message.type_.as_str()
                )));
            }
        }
        Ok(message)
    }

    /// The string SNS signs: selected fields as `Name\nvalue\n`, in byte order of the names.
    ///
    /// Notifications sign `Message`, `MessageId`, `Subject` (only when present), `Timestamp`,
    /// `TopicArn`, `Type`; confirmations sign `Message`, `MessageId`, `SubscribeURL`,
    /// `Timestamp`, `Token`, `TopicArn`, `Type`.
    pub fn canonical_string(&self) -> String {
        let notification = self.type_ == SnsMessageType::Notification;
        let mut out = String::with_capacity(self.message.len() + 512);
        let mut field = |name: &str, value: &str| {
            for part in [name, "\n", value, "\n"] {
                out.push_str(part);
            }
        };
        field("Message", &self.message);
        field("MessageId", &self.message_id);
        if notification {
            if let Some(subject) = &self.subject {
                field("Subject", subject);
            }
        } else {
            field(
                "SubscribeURL",
                self.subscribe_url.as_deref().unwrap_or_default(),
            );
        }
        field("Timestamp", &self.timestamp);
        if !notification {
            field("Token", self.token.as_deref().unwrap_or_default());
        }
        field("TopicArn", &self.topic_arn);
        field("Type", self.type_.as_str());
        out
    }
}

impl SnsMessageType {
    /// The `Type` value as SNS spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            SnsMessageType::Notification => "Notification",
            SnsMessageType::SubscriptionConfirmation => "SubscriptionConfirmation",
            SnsMessageType::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{NOTIFICATION, SUBSCRIPTION_CONFIRMATION};
    use super::*;

    #[test]
    fn parses_the_documented_notification() {
        let message = SnsMessage::parse(NOTIFICATION.as_bytes()).unwrap();
        assert_eq!(message.type_, SnsMessageType::Notification);
        assert_eq!(message.message_id, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324");
        assert_eq!(message.subject.as_deref(), Some("My First Message"));
        assert_eq!(message.signature_version, SignatureVersion::V1);
        assert_eq!(message.token, None);
        assert!(
            message
                .unsubscribe_url
                .unwrap()
                .contains("Action=Unsubscribe")
        );
    }

    #[test]
    fn notification_canonical_string_follows_the_documented_field_order() {
        let message = SnsMessage::parse(NOTIFICATION.as_bytes()).unwrap();
        assert_eq!(
            message.canonical_string(),
            "Message\nHello world!\n\
             MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
             Subject\nMy First Message\n\
             Timestamp\n2012-05-02T00:54:06.655Z\n\
             TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n\
             Type\nNotification\n"
        );
        let without_subject = SnsMessage {
            subject: None,
            ..message
        };
        assert!(!without_subject.canonical_string().contains("Subject"));
    }

    #[test]
    fn confirmation_canonical_string_signs_subscribe_url_and_token() {
        let message = SnsMessage::parse(SUBSCRIPTION_CONFIRMATION.as_bytes()).unwrap();
        assert_eq!(message.token.as_deref(), Some("2336412f37..."));
        assert_eq!(
            message.canonical_string(),
            "Message\nYou have chosen to subscribe to the topic \
             arn:aws:sns:us-west-2:123456789012:MyTopic.\n\
             To confirm the subscription, visit the SubscribeURL included in this message.\n\
             MessageId\n165545c9-2a5c-472c-8df2-7ff2be2b3b1b\n\
             SubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription\
             &TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...\n\
             Timestamp\n2012-04-26T20:45:04.751Z\n\
             Token\n2336412f37...\n\
             TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n\
             Type\nSubscriptionConfirmation\n"
        );
    }

    #[test]
    fn unknown_types_versions_and_incomplete_confirmations_are_refused() {
        let unknown_type = NOTIFICATION.replace("\"Notification\"", "\"Reminder\"");
        let err = SnsMessage::parse(unknown_type.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `Reminder`"),
            "{err}"
        );

        let v3 = NOTIFICATION.replace(
            "\"SignatureVersion\" : \"1\"",
            "\"SignatureVersion\" : \"3\"",
        );
        assert!(matches!(
            SnsMessage::parse(v3.as_bytes()),
            Err(SnsError::MalformedMessage(_))
        ));

        let no_token = SUBSCRIPTION_CONFIRMATION.replace("\"Token\"", "\"Tokn\"");
        assert_eq!(
            SnsMessage::parse(no_token.as_bytes())
                .unwrap_err()
                .to_string(),
            "body is not a valid SNS message: SubscriptionConfirmation without Token"
        );
        assert!(SnsMessage::parse(b"{\"alerts\": []}").is_err());
    }
}
