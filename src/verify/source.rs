//! The kinds of inbound webhook sender a rule can accept, as named in rule JSON (`source_type`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which provider (and therefore which verification scheme and identity headers) a rule expects.
///
/// The serde names are the API contract: `webhook_generic`, `webhook_github`, `webhook_gitlab`,
/// `webhook_gitea`, `alertmanager`, `pagerduty`, `datadog`, `cloudwatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    /// Any sender that signs with `X-Forge-Signature` or Standard Webhooks.
    WebhookGeneric,
    /// GitHub (`X-Hub-Signature-256`).
    WebhookGithub,
    /// GitLab (`X-Gitlab-Token`, optionally Standard Webhooks signing).
    WebhookGitlab,
    /// Gitea, Forgejo and Gogs (`X-Gitea-Signature` and equivalents).
    WebhookGitea,
    /// Prometheus Alertmanager (`X-Forge-Signature` or a bearer token; it cannot compute HMACs).
    Alertmanager,
    /// PagerDuty v3 webhooks (`X-PagerDuty-Signature`).
    Pagerduty,
    /// Datadog webhooks integration (a shared-secret header or bearer token; Datadog does not sign).
    Datadog,
    /// AWS CloudWatch alarms delivered through SNS (SNS message signatures).
    Cloudwatch,
}

impl SourceType {
    /// Every source type, as the API names them.
    pub const NAMES: &'static str = "webhook_generic, webhook_github, webhook_gitlab, webhook_gitea, alertmanager, pagerduty, datadog, cloudwatch";

    /// Every source type, in declaration order (for listings and exhaustive tests).
    pub const ALL: [SourceType; 8] = [
        SourceType::WebhookGeneric,
        SourceType::WebhookGithub,
        SourceType::WebhookGitlab,
        SourceType::WebhookGitea,
        SourceType::Alertmanager,
        SourceType::Pagerduty,
        SourceType::Datadog,
        SourceType::Cloudwatch,
    ];

    /// The wire name, identical to the serde representation.
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceType::WebhookGeneric => "webhook_generic",
            SourceType::WebhookGithub => "webhook_github",
            SourceType::WebhookGitlab => "webhook_gitlab",
            SourceType::WebhookGitea => "webhook_gitea",
            SourceType::Alertmanager => "alertmanager",
            SourceType::Pagerduty => "pagerduty",
            SourceType::Datadog => "datadog",
            SourceType::Cloudwatch => "cloudwatch",
        }
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `source_type` string that names none of the supported senders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown source_type \"{0}\" (expected one of webhook_generic, webhook_github, webhook_gitlab, \
     webhook_gitea, alertmanager, pagerduty, datadog, cloudwatch)"
)]
pub struct UnknownSourceType(pub String);

impl FromStr for SourceType {
    type Err = UnknownSourceType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceType::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownSourceType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_display_and_from_str() {
        let expected = [
            "webhook_generic",
            "webhook_github",
            "webhook_gitlab",
            "webhook_gitea",
            "alertmanager",
            "pagerduty",
            "datadog",
            "cloudwatch",
        ];
        for (source, name) in SourceType::ALL.into_iter().zip(expected) {
            assert_eq!(source.as_str(), name);
            assert_eq!(source.to_string(), name);
            assert_eq!(name.parse::<SourceType>(), Ok(source));
            assert_eq!(
                serde_json::to_string(&source).unwrap(),
                format!("\"{name}\"")
            );
            let parsed: SourceType = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(parsed, source);
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_name_in_the_message() {
        let err = "webhook_bitbucket".parse::<SourceType>().unwrap_err();
        assert!(err.to_string().contains("\"webhook_bitbucket\""));
        assert!("WebhookGithub".parse::<SourceType>().is_err());
        assert!(serde_json::from_str::<SourceType>("\"github\"").is_err());
    }
}
