//! Pure domain logic: events (past tense), the decisions that produce them, and access rules.
//! Nothing here does I/O; the HTTP layer and the actors call in with state and get events back.

pub mod access;
pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod filter;
pub mod job;
pub mod job_template;
pub mod lifecycle;
pub mod notification;
pub mod organization;
pub mod payloads;
pub mod published;
pub mod rate_limit;
pub mod retention;
pub mod rule;
pub mod rule_state;
pub mod token;
pub mod webhook;
pub mod workflow;

use std::collections::BTreeMap;

use serde::Serialize;

pub use self::event::{AuditInfo, Audited, Event};

/// A command the domain refuses, with the reason a client gets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// Some fields are invalid; each names what is wrong with it.
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    /// The request contradicts current state (a taken name, a wrong state).
    #[error("{0}")]
    Conflict(String),
    /// The resource does not exist (or belongs to another organization).
    #[error("not found")]
    NotFound,
    /// The caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
}

/// Validation messages by field name (`conditions[1].expression` style for nested ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FieldErrors(pub BTreeMap<String, Vec<String>>);

impl FieldErrors {
    /// Records a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    /// A single-field error.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> DomainError {
        let mut errors = Self::default();
        errors.add(field, message);
        DomainError::Invalid(errors)
    }

    /// `Ok` when nothing was recorded.
    pub fn into_result(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(self))
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.join(" ")))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// The errors of an update asking to move `what` (say "A rule") out of organization `current`:
/// none when it stays. Resources never change organization; tenants are isolated by it.
pub fn organization_unchanged(what: &str, current: u64, requested: Option<u64>) -> FieldErrors {
    let mut errors = FieldErrors::default();
    if requested.is_some_and(|o| o != current) {
        errors.add(
            "organization",
            format!("{what} cannot move to another organization."),
        );
    }
    errors
}

/// Checks a human-facing name: trimmed, 1 to `max` characters, no control characters.
pub fn check_name(errors: &mut FieldErrors, field: &str, name: &str, max: usize) {
    if name.trim().is_empty() {
        errors.add(field, "This field may not be blank.");
    } else if name.chars().count() > max {
        errors.add(
            field,
            format!("Ensure this field has no more than {max} characters."),
        );
    } else if name.chars().any(char::is_control) {
        errors.add(field, "Control characters are not allowed.");
    } else if name.trim() != name {
        errors.add(field, "Leading or trailing whitespace is not allowed.");
    }
}

/// Refuses `name` for a template whose name was `current` (none on create) when another `what`
/// of the organization already has it.
pub fn check_name_free(
    what: &str,
    current: Option<&str>,
    name: &str,
    name_taken: impl Fn(&str) -> bool,
) -> Result<(), DomainError> {
    if current != Some(name) && name_taken(name) {
        return Err(FieldErrors::one(
            "name",
            format!("{what} with this name already exists in the organization."),
        ));
    }
    Ok(())
}

/// Microseconds since the Unix epoch rendered as RFC 3339 (what the API shows for times).
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_free_unless_another_template_has_it() {
        let taken = |name: &str| name == "deploy";
        assert!(check_name_free("A job template", None, "build", taken).is_ok());
        assert!(check_name_free("A job template", Some("deploy"), "deploy", taken).is_ok());
        let Err(DomainError::Invalid(fields)) =
            check_name_free("A job template", None, "deploy", taken)
        else {
            panic!("a taken name is refused");
        };
        assert_eq!(
            fields.0["name"],
            ["A job template with this name already exists in the organization."]
        );
    }

    #[test]
    fn an_update_may_name_its_own_organization_but_not_another() {
        assert!(organization_unchanged("A rule", 3, None).is_empty());
        assert!(organization_unchanged("A rule", 3, Some(3)).is_empty());
        let moved = organization_unchanged("A rule", 3, Some(4));
        assert_eq!(
            moved.0["organization"],
            ["A rule cannot move to another organization."]
        );
    }
}
