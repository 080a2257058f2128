//! The one error type of the conditions module.

use thiserror::Error;

/// Why an expression could not be compiled or evaluated.
///
/// Compile errors (`Syntax`, `UndeclaredVariable`, `UndeclaredFunction`, `UpperCaseHeader`, wrapped in `At` by the
/// rule and filter constructors) are meant for HTTP 400 responses verbatim; evaluation errors
/// are recorded as values (a condition's `error(message)`), never raised as panics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConditionError {
    /// The source is not a CEL expression.
    #[error("Syntax error: {message}")]
    Syntax {
        /// The parser's message(s), with line and column.
        message: String,
    },
    /// The expression names a variable that is not declared for its scope.
    #[error("undeclared reference to '{name}' (declared variables: {declared})")]
    UndeclaredVariable {
        /// The undeclared identifier.
        name: String,
        /// The variables the scope declares, comma-separated.
        declared: String,
    },
    /// The expression calls a function the environment does not declare.
    #[error("undeclared function '{name}'")]
    UndeclaredFunction {
        /// The function's name.
        name: String,
    },
    /// The expression looks up a header by a name with upper-case letters, which can never match
    /// because header names are bound in lower case.
    #[error("header names are lower-case: write \"{lower}\" instead of \"{given}\"")]
    UpperCaseHeader {
        /// The name as written.
        given: String,
        /// The name that would match.
        lower: String,
    },
    /// An error located in a field of a rule or endpoint, e.g. `conditions[1]` or `filter`.
    #[error("{at}: {source}")]
    At {
        /// Where the failing expression sits, as the API names it.
        at: String,
        /// What went wrong there.
        source: Box<ConditionError>,
    },
    /// The source is longer than the limit.
    #[error("the expression is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The source nests (or its syntax tree is) deeper than the limit.
    #[error(
        "{what} {depth} levels deep; the limit is {max} (split the expression, e.g. into several conditions)"
    )]
    TooDeep {
        /// What is too deep, worded to precede the depth.
        what: &'static str,
        /// How deep it is.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// Evaluating the expression on this input would cost more than the evaluation budget.
    #[error(
        "evaluation budget exceeded: the expression would cost about {estimated} units on this input, over the budget of {budget} (conditions.max_eval_millis)"
    )]
    OverBudget {
        /// The estimated cost.
        estimated: u64,
        /// What was left of the budget.
        budget: u64,
    },
    /// Evaluating the expression on this input could build a value larger than allowed.
    #[error(
        "evaluation memory bound exceeded: the expression could build a value of about {estimated} bytes on this input, over the bound of {bound} (conditions.max_value_bytes)"
    )]
    TooLarge {
        /// The estimated size of its largest intermediate value.
        estimated: u64,
        /// The bound.
        bound: u64,
    },
    /// Evaluation panicked inside the interpreter: reported, never propagated.
    #[error("internal error while evaluating: {0}")]
    Internal(String),
    /// The JSON document the expression reads is not valid JSON.
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    /// Evaluation failed: a missing key, no matching overload, a division by zero...
    #[error("{0}")]
    Evaluation(String),
    /// The expression evaluated to a value of the wrong type.
    #[error("{what} evaluated to {found}, expected {expected}")]
    UnexpectedType {
        /// What was evaluated: `condition`, `filter`, `throttle key`.
        what: &'static str,
        /// The CEL type of the value it produced.
        found: String,
        /// The type(s) it should have produced.
        expected: &'static str,
    },
}

impl ConditionError {
    /// Locates this error at `at` (e.g. `conditions[1]`), for a message naming the field.
    pub fn at(self, at: impl Into<String>) -> Self {
        ConditionError::At {
            at: at.into(),
            source: Box::new(self),
        }
    }
}
