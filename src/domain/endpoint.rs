//! Outbound endpoints: where hookforge POSTs signed events, their settings, and the decisions
//! that validate them. One stream per endpoint, `endpoint-<id>`, holds its configuration events
//! and (see [`super::delivery`]) every delivery made to it.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::event::{AuditInfo, Audited};
use super::filter::EndpointFilter;
use super::{DomainError, FieldErrors, check_name};
use crate::codec::{EventBody, Sealed};
use crate::delivery::signing::validate_custom_header;
use crate::delivery::{RetryPolicy, check_url};

/// The stream category of endpoints.
pub const CATEGORY: &str = "endpoint";
/// Longest endpoint name.
pub const MAX_NAME: usize = 512;
/// URL length bounds, in characters.
pub const URL_LEN: (usize, usize) = (8, 2048);
/// Secret length bounds, in characters.
pub const SECRET_LEN: (usize, usize) = (16, 256);
/// Most event patterns one endpoint may subscribe to.
pub const MAX_EVENTS: usize = 64;
/// Most custom headers per endpoint.
pub const MAX_CUSTOM_HEADERS: usize = 32;
/// Bounds of `timeout_seconds`.
pub const TIMEOUT_SECONDS: (u32, u32) = (1, 120);
/// Bounds of `max_in_flight`.
pub const MAX_IN_FLIGHT: (u32, u32) = (1, 256);
/// Bounds of `rate_limit_per_second`.
pub const RATE_LIMIT: (u32, u32) = (1, 100_000);

/// Stream of one endpoint's configuration and deliveries.
pub fn stream(id: u64) -> String {
    format!("endpoint-{id}")
}

/// The field a sealed secret of endpoint `id` is bound to (`endpoint-7/secret`).
pub fn secret_field(id: u64) -> String {
    format!("endpoint-{id}/secret")
}

/// The field the sealed custom headers of endpoint `id` are bound to.
pub fn headers_field(id: u64) -> String {
    format!("endpoint-{id}/custom_headers")
}

/// The endpoint id of a stream named `endpoint-<id>`.
pub fn id_of_stream(stream: &str) -> Option<u64> {
    stream.strip_prefix("endpoint-")?.parse().ok()
}

/// Retry schedule of an endpoint, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrySettings {
    /// Attempts in total before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// Backoff ceiling after the first failure, in seconds.
    pub initial_delay_seconds: f64,
    /// Largest delay, `Retry-After` included, in seconds.
    pub max_delay_seconds: f64,
    /// Growth of the backoff per failed attempt.
    pub multiplier: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_delay_seconds: 5.0,
            max_delay_seconds: 3600.0,
            multiplier: 2.0,
        }
    }
}

impl RetrySettings {
    /// The retry policy these settings give, with the operator's continuous-failure limit.
    pub fn policy(&self, disable_after_failing: Duration) -> RetryPolicy {
        let initial = Duration::from_secs_f64(self.initial_delay_seconds);
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_delay: initial,
            max_delay: Duration::from_secs_f64(self.max_delay_seconds),
            multiplier: self.multiplier,
            min_delay: initial.min(Duration::from_secs(1)),
            disable_after_failing,
        }
    }
}

/// Everything configurable about an endpoint except its secret and whether it is enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSettings {
    /// Human-facing name.
    pub name: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Subscribed event types: exact names, `prefix.*` wildcards, or `*`.
    pub events: Vec<String>,
    /// Optional CEL expression over the envelope.
    pub filter: Option<String>,
    /// Extra request headers (name, value), sealed because they often carry credentials.
    pub custom_headers: Option<Sealed>,
    /// Verify the receiver's TLS certificate.
    pub ssl_verify: bool,
    /// Whole-attempt timeout.
    pub timeout_seconds: u32,
    /// Retry schedule.
    pub retry: RetrySettings,
    /// Most attempts started per second, if limited.
    pub rate_limit_per_second: Option<u32>,
    /// Most attempts in progress at once.
    pub max_in_flight: u32,
    /// One delivery at a time, in journal order; a failing delivery holds back later ones.
    pub ordered: bool,
}

/// What an endpoint gets for what its creation leaves out (name, URL and events have no
/// meaningful default and are required by [`validate`]).
impl Default for EndpointSettings {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            events: Vec::new(),
            filter: None,
            custom_headers: None,
            ssl_verify: true,
            timeout_seconds: 10,
            retry: RetrySettings::default(),
            rate_limit_per_second: None,
            max_in_flight: 4,
            ordered: false,
        }
    }
}

impl EndpointSettings {
    /// The host deliveries go to (the API's `target_host`).
    pub fn target_host(&self) -> String {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// An endpoint was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointCreated {
    /// Its id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// Its settings.
    pub settings: EndpointSettings,
    /// Whether it starts enabled.
    pub enabled: bool,
    /// The signing secret, sealed for [`secret_field`].
    pub secret: Sealed,
}

impl EventBody for EndpointCreated {
    const TYPE: &'static str = "endpoint.created";
}

/// An endpoint's settings changed (the full new settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointUpdated {
    /// Its id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// The new settings.
    pub settings: EndpointSettings,
}

impl EventBody for EndpointUpdated {
    const TYPE: &'static str = "endpoint.updated";
}

/// An endpoint was deleted; its actor stops and its pending deliveries are dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDeleted {
    /// Its id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
}

impl EventBody for EndpointDeleted {
    const TYPE: &'static str = "endpoint.deleted";
}

/// A disabled endpoint was enabled again; its failure clock starts afresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointEnabled {
    /// Its id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
}

impl EventBody for EndpointEnabled {
    const TYPE: &'static str = "endpoint.enabled";
}

/// An endpoint was disabled: by its receiver (404/410), by failing continuously, by the SSRF
/// guard, or through the API. Pending deliveries end as `failed`; new events are not scheduled.
///
/// Also a deliverable event type (`endpoint.disabled`): other endpoints of the organization may
/// subscribe to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDisabled {
    /// Its id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// Its name when disabled.
    pub name: String,
    /// Why, in words.
    pub reason: String,
    /// Start of the failure streak that led here (µs since the epoch), if any.
    pub failing_since: Option<i64>,
}

impl EventBody for EndpointDisabled {
    const TYPE: &'static str = "endpoint.disabled";
}

/// An endpoint's signing secret was replaced; the previous one keeps signing until
/// `previous_expires_at` so receivers can switch over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSecretRotated {
    /// Its id.
    pub id: u64,
    /// Owning organization.
    pub organization: u64,
    /// The new secret, sealed for [`secret_field`].
    pub secret: Sealed,
    /// Until when (µs since the epoch) the previous secret also signs.
    pub previous_expires_at: i64,
}

impl EventBody for EndpointSecretRotated {
    const TYPE: &'static str = "endpoint.secret_rotated";
}

fn audit(id: u64, organization: u64, details: serde_json::Value) -> Option<AuditInfo> {
    Some(AuditInfo {
        organization: Some(organization),
        resource_type: "outbound_webhook",
        resource_id: id.to_string(),
        details,
    })
}

fn settings_summary(s: &EndpointSettings) -> serde_json::Value {
    serde_json::json!({
        "name": s.name, "target_host": s.target_host(), "events": s.events, "filter": s.filter,
        "ordered": s.ordered, "max_in_flight": s.max_in_flight, "rate_limit_per_second": s.rate_limit_per_second,
    })
}

impl Audited for EndpointCreated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, settings_summary(&self.settings))
    }
}

impl Audited for EndpointUpdated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, settings_summary(&self.settings))
    }
}

impl Audited for EndpointDeleted {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, serde_json::json!({}))
    }
}

impl Audited for EndpointEnabled {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, self.organization, serde_json::json!({}))
    }
}

impl Audited for EndpointDisabled {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"reason": self.reason}),
        )
    }
}

impl Audited for EndpointSecretRotated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            self.organization,
            serde_json::json!({"secret": "rotated"}),
        )
    }
}

/// Distinguishes "absent" from "null" in a PATCH body.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Custom headers as a client sends them: name to value.
pub type HeaderMapInput = std::collections::BTreeMap<String, String>;

/// Client input for the retry settings; unset fields keep their current (or default) value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryInput {
    /// See [`RetrySettings::max_attempts`].
    pub max_attempts: Option<u32>,
    /// See [`RetrySettings::initial_delay_seconds`].
    pub initial_delay_seconds: Option<f64>,
    /// See [`RetrySettings::max_delay_seconds`].
    pub max_delay_seconds: Option<f64>,
    /// See [`RetrySettings::multiplier`].
    pub multiplier: Option<f64>,
}

/// Client input for creating or patching an endpoint. Absent fields keep their current value
/// (or the default on create); `null` clears the optional ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    /// Display name.
    pub name: Option<String>,
    /// Owning organization (create only; defaults to the caller's).
    pub organization: Option<u64>,
    /// Target URL.
    pub url: Option<String>,
    /// Subscribed event patterns.
    pub events: Option<Vec<String>>,
    /// CEL filter (`null` removes it).
    #[serde(default, deserialize_with = "nullable")]
    pub filter: Option<Option<String>>,
    /// Extra headers, replacing the current set (`null` or `{}` removes them).
    #[serde(default, deserialize_with = "nullable")]
    pub custom_headers: Option<Option<HeaderMapInput>>,
    /// Enabled or not.
    pub enabled: Option<bool>,
    /// Verify TLS certificates.
    pub ssl_verify: Option<bool>,
    /// Attempt timeout.
    pub timeout_seconds: Option<u32>,
    /// Retry schedule.
    pub retry: Option<RetryInput>,
    /// Attempts per second (`null` removes the limit).
    #[serde(default, deserialize_with = "nullable")]
    pub rate_limit_per_second: Option<Option<u32>>,
    /// Concurrent attempts.
    pub max_in_flight: Option<u32>,
    /// Strict ordering.
    pub ordered: Option<bool>,
    /// Signing secret (create), or a new one (patch: rotates it).
    pub secret: Option<String>,
}

/// Seals an endpoint's custom headers (name, value) for storage.
pub type HeaderSealer<'a> = &'a dyn Fn(&[(String, String)]) -> Sealed;

/// What validation needs from outside the domain.
pub struct Checks<'a> {
    /// `outbound.allow_private_networks`.
    pub allow_private_networks: bool,
    /// Seals the custom headers of the endpoint being validated.
    pub seal_headers: HeaderSealer<'a>,
}

/// Validated input: the new settings, plus the secret and enabled flag if they were given.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// Settings after applying the input.
    pub settings: EndpointSettings,
    /// A new secret, if the input had one.
    pub secret: Option<String>,
    /// A new enabled state, if the input had one.
    pub enabled: Option<bool>,
}

/// Whether `name` is a valid event type a publisher may use: dot-separated segments of
/// letters, digits, `_` and `-`, at most 128 characters.
pub fn valid_event_type(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.split('.').all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Whether `pattern` is a valid subscription: `*`, an event type, or an event type then `.*`.
pub fn valid_event_pattern(pattern: &str) -> bool {
    pattern == "*" || valid_event_type(pattern.strip_suffix(".*").unwrap_or(pattern))
}

/// Whether subscription `pattern` covers event type `event_type`.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(prefix) => {
            event_type.len() > prefix.len() + 1
                && event_type.starts_with(prefix)
                && event_type.as_bytes()[prefix.len()] == b'.'
        }
        None => pattern == event_type,
    }
}

/// Checks a secret's length and characters.
pub fn check_secret(errors: &mut FieldErrors, field: &str, secret: &str) {
    let len = secret.chars().count();
    if len < SECRET_LEN.0 || len > SECRET_LEN.1 {
        errors.add(
            field,
            format!(
                "The secret must be {} to {} characters long.",
                SECRET_LEN.0, SECRET_LEN.1
            ),
        );
    } else if secret.chars().any(|c| c.is_control() || c.is_whitespace()) {
        errors.add(
            field,
            "The secret may not contain whitespace or control characters.",
        );
    }
}

fn check_url_field(errors: &mut FieldErrors, url: &str, allow_private: bool) {
    let len = url.chars().count();
    if len < URL_LEN.0 || len > URL_LEN.1 {
        return errors.add(
            "url",
            format!(
                "Ensure the URL has {} to {} characters.",
                URL_LEN.0, URL_LEN.1
            ),
        );
    }
    match url::Url::parse(url) {
        Err(e) => errors.add("url", format!("Enter a valid URL ({e}).")),
        Ok(parsed) => {
            if let Err(e) = check_url(&parsed, allow_private) {
                errors.add("url", format!("{}.", capitalised(&e.to_string())));
            }
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn check_events(errors: &mut FieldErrors, events: &[String]) -> Vec<String> {
    if events.is_empty() {
        errors.add("events", "Subscribe to at least one event type (a name such as job.failed, a wildcard such as job.*, or *).");
    } else if events.len() > MAX_EVENTS {
        errors.add(
            "events",
            format!("Ensure there are no more than {MAX_EVENTS} event types."),
        );
    }
    for (i, pattern) in events.iter().enumerate() {
        if !valid_event_pattern(pattern) {
            errors.add(
                format!("events[{i}]"),
                format!("{pattern:?} is not an event type: use dot-separated letters, digits, _ and -, optionally ending in .*, or *."),
            );
        }
    }
    let mut unique = events.to_vec();
    unique.sort();
    unique.dedup();
    unique
}

fn check_retry(
    errors: &mut FieldErrors,
    input: Option<&RetryInput>,
    current: &RetrySettings,
) -> RetrySettings {
    let Some(input) = input else {
        return current.clone();
    };
    let retry = RetrySettings {
        max_attempts: input.max_attempts.unwrap_or(current.max_attempts),
        initial_delay_seconds: input
            .initial_delay_seconds
            .unwrap_or(current.initial_delay_seconds),
        max_delay_seconds: input.max_delay_seconds.unwrap_or(current.max_delay_seconds),
        multiplier: input.multiplier.unwrap_or(current.multiplier),
    };
    if !(1..=50).contains(&retry.max_attempts) {
        errors.add(
            "retry.max_attempts",
            "Ensure this value is between 1 and 50.",
        );
    }
    if !(0.1..=86_400.0).contains(&retry.initial_delay_seconds) {
        errors.add(
            "retry.initial_delay_seconds",
            "Ensure this value is between 0.1 and 86400.",
        );
    }
    if !(0.1..=604_800.0).contains(&retry.max_delay_seconds) {
        errors.add(
            "retry.max_delay_seconds",
            "Ensure this value is between 0.1 and 604800 (7 days).",
        );
    } else if retry.max_delay_seconds < retry.initial_delay_seconds {
        errors.add(
            "retry.max_delay_seconds",
            "Ensure this value is at least initial_delay_seconds.",
        );
    }
    if !(1.0..=10.0).contains(&retry.multiplier) {
        errors.add("retry.multiplier", "Ensure this value is between 1 and 10.");
    }
    retry
}

fn check_range(errors: &mut FieldErrors, field: &str, value: u32, (low, high): (u32, u32)) {
    if !(low..=high).contains(&value) {
        errors.add(
            field,
            format!("Ensure this value is between {low} and {high}."),
        );
    }
}

/// Validates `input` against the `current` settings (`None` on create) and builds new settings.
/// Every problem is reported against its field (`url`, `events`, `filter`, `secret`, `retry.*`...).
pub fn validate(
    input: EndpointInput,
    current: Option<&EndpointSettings>,
    checks: &Checks<'_>,
) -> Result<Validated, DomainError> {
    let mut errors = FieldErrors::default();
    let defaults = EndpointSettings::default();
    let creating = current.is_none();
    let base = current.unwrap_or(&defaults);
    let name = input.name.unwrap_or_else(|| base.name.clone());
    check_name(&mut errors, "name", &name, MAX_NAME);
    let url = match input.url {
        Some(url) => {
            check_url_field(&mut errors, &url, checks.allow_private_networks);
            url
        }
        None if creating => {
            errors.add("url", "This field is required.");
            String::new()
        }
        None => base.url.clone(),
    };
    let events = match input.events {
        Some(events) => check_events(&mut errors, &events),
        None if creating => {
            errors.add("events", "This field is required.");
            Vec::new()
        }
        None => base.events.clone(),
    };
    let filter = match input.filter {
        None => base.filter.clone(),
        Some(None) => None,
        Some(Some(source)) => {
            if let Err(e) = EndpointFilter::compile(&source) {
                errors.add("filter", e.to_string());
            }
            Some(source)
        }
    };
    let custom_headers = match input.custom_headers {
        None => base.custom_headers.clone(),
        Some(None) => None,
        Some(Some(map)) if map.is_empty() => None,
        Some(Some(map)) => {
            if map.len() > MAX_CUSTOM_HEADERS {
                errors.add(
                    "custom_headers",
                    format!("Ensure there are no more than {MAX_CUSTOM_HEADERS} headers."),
                );
            }
            let mut seen = std::collections::HashSet::new();
            for (name, value) in &map {
                match validate_custom_header(name, value) {
                    Err(e) => errors.add(
                        format!("custom_headers.{name}"),
                        format!("{}.", capitalised(&e.to_string())),
                    ),
                    Ok((header, _)) => {
                        if !seen.insert(header.as_str().to_owned()) {
                            errors.add(
                                format!("custom_headers.{name}"),
                                "Header names are case-insensitive; this one is given twice.",
                            );
                        }
                    }
                }
            }
            let pairs: Vec<(String, String)> = map.into_iter().collect();
            Some((checks.seal_headers)(&pairs))
        }
    };
    let timeout_seconds = input.timeout_seconds.unwrap_or(base.timeout_seconds);
    check_range(
        &mut errors,
        "timeout_seconds",
        timeout_seconds,
        TIMEOUT_SECONDS,
    );
    let retry = check_retry(&mut errors, input.retry.as_ref(), &base.retry);
    let rate_limit_per_second = match input.rate_limit_per_second {
        None => base.rate_limit_per_second,
        Some(limit) => limit,
    };
    if let Some(limit) = rate_limit_per_second {
        check_range(&mut errors, "rate_limit_per_second", limit, RATE_LIMIT);
    }
    let max_in_flight = input.max_in_flight.unwrap_or(base.max_in_flight);
    check_range(&mut errors, "max_in_flight", max_in_flight, MAX_IN_FLIGHT);
    if let Some(secret) = &input.secret {
        check_secret(&mut errors, "secret", secret);
    }
    errors.into_result()?;
    Ok(Validated {
        settings: EndpointSettings {
            name,
            url,
            events,
            filter,
            custom_headers,
            ssl_verify: input.ssl_verify.unwrap_or(base.ssl_verify),
            timeout_seconds,
            retry,
            rate_limit_per_second,
            max_in_flight,
            ordered: input.ordered.unwrap_or(base.ordered),
        },
        secret: input.secret,
        enabled: input.enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seal(pairs: &[(String, String)]) -> Sealed {
        Sealed(serde_json::to_vec(pairs).unwrap())
    }

    fn checks(allow_private: bool) -> Checks<'static> {
        Checks {
            allow_private_networks: allow_private,
            seal_headers: &seal,
        }
    }

    fn input(value: serde_json::Value) -> EndpointInput {
        serde_json::from_value(value).unwrap()
    }

    fn fields(result: Result<Validated, DomainError>) -> Vec<String> {
        match result {
            Err(DomainError::Invalid(f)) => f.0.keys().cloned().collect(),
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_endpoint_gets_the_documented_defaults() {
        let ok = validate(
            input(json!({"name": "ci", "url": "https://hooks.example.com/in", "events": ["job.*", "job.failed", "job.*"]})),
            None,
            &checks(false),
        )
        .unwrap();
        let s = ok.settings;
        assert_eq!(
            s.events,
            vec!["job.*", "job.failed"],
            "sorted and deduplicated"
        );
        assert_eq!(
            (s.timeout_seconds, s.max_in_flight, s.ordered, s.ssl_verify),
            (10, 4, false, true)
        );
        assert_eq!(
            s.retry,
            RetrySettings {
                max_attempts: 8,
                initial_delay_seconds: 5.0,
                max_delay_seconds: 3600.0,
                multiplier: 2.0
            }
        );
        assert_eq!(s.target_host(), "hooks.example.com");
        assert_eq!(
            (s.rate_limit_per_second, s.filter, s.custom_headers),
            (None, None, None)
        );
        assert_eq!((ok.secret, ok.enabled), (None, None));
    }

    #[test]
    fn every_invalid_field_is_named() {
        let bad = input(json!({
            "name": "", "url": "ftp://example.com/x", "events": [], "filter": "event.x >",
            "secret": "short", "timeout_seconds": 0, "max_in_flight": 1000, "rate_limit_per_second": 0,
            "retry": {"max_attempts": 0, "initial_delay_seconds": 0.0, "multiplier": 50.0},
            "custom_headers": {"X-Forge-Signature": "forged", "bad name": "x"},
        }));
        assert_eq!(
            fields(validate(bad, None, &checks(false))),
            vec![
                "custom_headers.X-Forge-Signature",
                "custom_headers.bad name",
                "events",
                "filter",
                "max_in_flight",
                "name",
                "rate_limit_per_second",
                "retry.initial_delay_seconds",
                "retry.max_attempts",
                "retry.multiplier",
                "secret",
                "timeout_seconds",
                "url",
            ]
        );
        let missing = validate(input(json!({"name": "x"})), None, &checks(false));
        assert_eq!(fields(missing), vec!["events", "url"]);
        let bad_pattern = validate(
            input(json!({"name": "x", "url": "https://a.example", "events": ["job.*.x", "*"]})),
            None,
            &checks(false),
        );
        assert_eq!(fields(bad_pattern), vec!["events[0]"]);
    }

    #[test]
    fn url_rules_length_scheme_and_literal_private_addresses() {
        let url_error = |url: &str, allow: bool| {
            let result = validate(
                input(json!({"name": "x", "url": url, "events": ["*"]})),
                None,
                &checks(allow),
            );
            match result {
                Err(DomainError::Invalid(f)) => f.0.get("url").map(|m| m.join(" ")),
                Ok(_) => None,
                Err(e) => panic!("{e}"),
            }
        };
        assert!(url_error("http://", false).unwrap().contains("8 to 2048"));
        assert_eq!(url_error("http://a", false), None);
        assert!(url_error(&format!("https://example.com/{}", "a".repeat(2048)), false).is_some());
        assert!(
            url_error("not a url at all", false)
                .unwrap()
                .starts_with("Enter a valid URL")
        );
        assert!(
            url_error("gopher://example.com/", false)
                .unwrap()
                .contains("http or https")
        );
        for private in [
            "http://127.0.0.1:9000/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let message = url_error(private, false).unwrap_or_else(|| panic!("{private} accepted"));
            assert!(
                message.contains("outbound.allow_private_networks"),
                "{private}: {message}"
            );
            assert_eq!(
                url_error(private, true),
                None,
                "{private} with the guard off"
            );
        }
        assert_eq!(url_error("https://example.com/hook", false), None);
        // Host names are checked when connecting, not here.
        assert_eq!(url_error("http://localhost:1234/hook", false), None);
    }

    #[test]
    fn patches_keep_unset_fields_and_null_clears() {
        let created = validate(
            input(json!({"name": "a", "url": "https://a.example/x", "events": ["*"], "filter": "event.payload.x > 1",
                         "rate_limit_per_second": 5, "retry": {"max_attempts": 3}})),
            None,
            &checks(false),
        )
        .unwrap()
        .settings;
        assert_eq!(created.retry.max_attempts, 3);
        assert_eq!(created.retry.initial_delay_seconds, 5.0);
        let patched = validate(input(json!({"filter": null, "rate_limit_per_second": null, "retry": {"multiplier": 3.0}})), Some(&created), &checks(false))
            .unwrap()
            .settings;
        assert_eq!(
            (patched.filter, patched.rate_limit_per_second),
            (None, None)
        );
        assert_eq!(
            (patched.retry.max_attempts, patched.retry.multiplier),
            (3, 3.0)
        );
        assert_eq!(
            (patched.name.as_str(), patched.url.as_str()),
            ("a", "https://a.example/x")
        );
        let max_below_initial = validate(
            input(json!({"retry": {"max_delay_seconds": 1.0}})),
            Some(&created),
            &checks(false),
        );
        assert_eq!(fields(max_below_initial), vec!["retry.max_delay_seconds"]);
    }

    #[test]
    fn patterns_match_exactly_by_prefix_or_everything() {
        assert!(pattern_matches("*", "anything.at.all"));
        assert!(pattern_matches("job.failed", "job.failed"));
        assert!(!pattern_matches("job.failed", "job.failed.extra"));
        assert!(pattern_matches("job.*", "job.failed"));
        assert!(pattern_matches("job.*", "job.a.b"));
        assert!(!pattern_matches("job.*", "job"));
        assert!(!pattern_matches("job.*", "jobs.failed"));
        assert!(valid_event_type("validation.completed") && valid_event_type("a-b_c.D9"));
        assert!(
            !valid_event_type("a..b")
                && !valid_event_type("a.*")
                && !valid_event_type("")
                && !valid_event_type("a b")
        );
        assert!(
            valid_event_pattern("*")
                && valid_event_pattern("job.*")
                && !valid_event_pattern("*.failed")
        );
    }

    #[test]
    fn secrets_are_16_to_256_printable_characters() {
        let check = |s: &str| {
            let mut errors = FieldErrors::default();
            check_secret(&mut errors, "secret", s);
            errors.is_empty()
        };
        assert!(check(&"a".repeat(16)) && check(&"a".repeat(256)));
        assert!(!check(&"a".repeat(15)) && !check(&"a".repeat(257)) && !check("sixteen chars ok"));
    }

    #[test]
    fn retry_settings_become_a_policy() {
        let policy = RetrySettings {
            max_attempts: 3,
            initial_delay_seconds: 0.25,
            max_delay_seconds: 2.0,
            multiplier: 3.0,
        }
        .policy(Duration::from_secs(3600));
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.initial_delay, Duration::from_millis(250));
        assert_eq!(policy.min_delay, Duration::from_millis(250));
        assert_eq!(policy.max_delay, Duration::from_secs(2));
        assert_eq!(
            RetrySettings::default().policy(Duration::ZERO).min_delay,
            Duration::from_secs(1)
        );
    }
}
