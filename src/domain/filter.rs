//! An outbound endpoint's optional CEL `filter`: which matching events it actually receives.
//!
//! Stand-in until `crate::conditions` is merged: the lead switches [`EndpointFilter`] to
//! `conditions::OutboundFilter` (same shape: compile once, `matches(envelope)`), so nothing else
//! in the outbound code names the `cel` crate. One shared [`cel::Env`] serves every evaluation
//! (`Context::default()` would rebuild the standard library each time, ~19 µs).
//!
//! The expression sees one variable, `event`: the delivery envelope
//! `{"event", "delivery_id", "organization_id", "resource_type", "resource_id", "payload",
//! "occurred_at"}` (`delivery_id` is empty: filters run before a delivery exists). JSON integers
//! become CEL `int` (so `event.payload.elapsed > 600` compares as written); a filter that errors at
//! run time (a missing field not guarded by `has()`) or is not a bool does not match.

use std::sync::Arc;

use crate::conditions::{Budget, ConditionError, Json, OutboundFilter};

/// Longest filter expression accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// Why a filter does not compile; the message ends up in a 400 naming `filter`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Blank expression.
    #[error("A filter may not be blank; omit it or send null to receive every matching event.")]
    Blank,
    /// Over [`MAX_FILTER_LEN`].
    #[error("Ensure the filter has no more than {MAX_FILTER_LEN} characters.")]
    TooLong,
    /// The CEL parser refused it.
    #[error("Invalid CEL expression: {0}")]
    Syntax(String),
    /// It reads a variable other than `event`.
    #[error("Unknown variable {0:?}; a filter can only read `event` (the delivery envelope).")]
    UnknownVariable(String),
}

/// A compiled filter; cheap to clone.
#[derive(Clone)]
pub struct EndpointFilter {
    source: Arc<str>,
    filter: OutboundFilter,
}

impl std::fmt::Debug for EndpointFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EndpointFilter").field(&self.source).finish()
    }
}

impl EndpointFilter {
    /// Compiles `source` (at endpoint creation or update, and when a snapshot is loaded).
    pub fn compile(source: &str) -> Result<Self, FilterError> {
        if source.trim().is_empty() {
            return Err(FilterError::Blank);
        }
        if source.len() > MAX_FILTER_LEN {
            return Err(FilterError::TooLong);
        }
        let filter = OutboundFilter::compile(source).map_err(|e| match e {
            ConditionError::At { source, .. } => match *source {
                ConditionError::UndeclaredVariable { name, .. } => {
                    FilterError::UnknownVariable(name)
                }
                other => FilterError::Syntax(other.to_string()),
            },
            other => FilterError::Syntax(other.to_string()),
        })?;
        Ok(Self {
            source: source.into(),
            filter,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the envelope (its JSON bytes) passes the filter within `budget`.
    ///
    /// A filter that errors at run time (a missing field not guarded by `has()`) or is not a
    /// bool does not match: `Ok(false)`, as documented. Exceeding the budget, or a failure of
    /// the interpreter itself, is an `Err` with the reason: the delivery records it as
    /// `filter_error`.
    pub fn evaluate(&self, envelope: &[u8], budget: Budget) -> Result<bool, ConditionError> {
        match self.filter.matches(Json::Bytes(envelope), budget) {
            Ok(matched) => Ok(matched),
            Err(
                e @ (ConditionError::OverBudget { .. }
                | ConditionError::TooLarge { .. }
                | ConditionError::Internal(_)),
            ) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Whether evaluation is always cheap enough to run inline (see
    /// [`crate::conditions::Expression::is_linear`]).
    pub fn is_linear(&self) -> bool {
        self.filter.is_linear()
    }

    /// [`EndpointFilter::evaluate`] on a parsed envelope, with the default budget (tests).
    #[cfg(test)]
    pub fn matches(&self, envelope: &serde_json::Value) -> bool {
        let bytes = serde_json::to_vec(envelope).expect("a JSON value serializes");
        self.evaluate(&bytes, Budget::default()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> serde_json::Value {
        json!({
            "event": "job.failed",
            "delivery_id": "",
            "organization_id": "1",
            "resource_type": "workflow",
            "resource_id": "7",
            "payload": {"elapsed": 720, "name": "deploy", "tags": ["prod"], "ratio": 0.5},
            "occurred_at": "2025-01-01T00:00:00Z",
        })
    }

    fn check(source: &str) -> bool {
        EndpointFilter::compile(source)
            .unwrap()
            .matches(&envelope())
    }

    #[test]
    fn the_issue_examples_evaluate_against_the_envelope() {
        assert!(check("event.payload.elapsed > 600"));
        assert!(!check("event.payload.elapsed > 800"));
        assert!(check(r#"event.resource_id == "7""#));
        assert!(check(
            r#"event.event.startsWith("job.") && "prod" in event.payload.tags"#
        ));
        assert!(check("event.payload.ratio < 1.0"));
        // Comprehension variables are not mistaken for unknown top-level variables.
        assert!(check(r#"event.payload.tags.exists(t, t == "prod")"#));
    }

    #[test]
    fn runtime_errors_and_non_booleans_do_not_match() {
        // A missing field is an error in CEL; `has()` guards it.
        assert!(!check("event.payload.missing > 1"));
        assert!(!check(
            "has(event.payload.missing) && event.payload.missing > 1"
        ));
        assert!(check("!has(event.payload.missing)"));
        assert!(!check("event.payload.elapsed"));
        assert!(!check(r#"event.payload.name + 1 == 2"#));
    }

    #[test]
    fn compile_errors_are_reported() {
        assert_eq!(
            EndpointFilter::compile("  ").unwrap_err(),
            FilterError::Blank
        );
        assert!(matches!(
            EndpointFilter::compile("event.payload.x >"),
            Err(FilterError::Syntax(_))
        ));
        assert_eq!(
            EndpointFilter::compile("payload.x > 1").unwrap_err(),
            FilterError::UnknownVariable("payload".into())
        );
        let long = format!("event.x == \"{}\"", "a".repeat(MAX_FILTER_LEN));
        assert_eq!(
            EndpointFilter::compile(&long).unwrap_err(),
            FilterError::TooLong
        );
        let ok = EndpointFilter::compile("event.payload.elapsed > 1").unwrap();
        assert_eq!(ok.source(), "event.payload.elapsed > 1");
    }
}
