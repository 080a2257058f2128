//! An outbound endpoint's filter: which published events it receives.

use std::iter;

use super::cost::Budget;
use super::error::ConditionError;
use super::expression::{Allowance, Bindings, Expression, Json, evaluate_bool};
use super::scope::Scope;

/// A compiled boolean expression over `event`, the outbound envelope
/// `{"event", "delivery_id", "organization_id", "resource_type", "resource_id", "payload",
/// "occurred_at"}`, e.g. `event.payload.elapsed > 600` or `event.resource_id == 7`.
///
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct OutboundFilter(Expression);

impl OutboundFilter {
    /// Compiles an endpoint's filter.
    ///
    /// # Errors
    ///
    /// A syntax error or undeclared variable, located: `filter: Syntax error: ...`.
    pub fn compile(source: &str) -> Result<Self, ConditionError> {
        Expression::compile(source, Scope::Outbound)
            .map(OutboundFilter)
            .map_err(|e| e.at("filter"))
    }

    /// The compiled expression.
    pub fn expression(&self) -> &Expression {
        &self.0
    }

    /// Whether the envelope passes the filter, evaluated within `budget`.
    ///
    /// # Errors
    ///
    /// The envelope is not JSON, evaluation failed (e.g. a missing field not guarded by
    /// `has()`), the filter did not evaluate to a bool, or it would exceed the budget
    /// ([`ConditionError::OverBudget`], [`ConditionError::TooLarge`]).
    pub fn matches(&self, envelope: Json<'_>, budget: Budget) -> Result<bool, ConditionError> {
        let bindings = Bindings::new(self.0.needs(), envelope, iter::empty());
        evaluate_bool(&bindings, &self.0, "filter", &mut Allowance::new(budget))
    }

    /// Whether evaluation is always cheap (see [`Expression::is_linear`]).
    pub fn is_linear(&self) -> bool {
        self.0.is_linear()
    }
}
