//! CEL expressions for rule conditions, throttle keys and outbound filters: compiled once when
//! the rule or endpoint is created, evaluated for every event.
//!
//! * [`RuleProgram`]: an event rule's conditions (all must hold) and optional throttle key, over
//!   `event` (the webhook payload) and `headers` (lower-case name → value).
//! * [`OutboundFilter`]: an endpoint's filter over `event`, the outbound envelope.
//! * [`Expression`]: one compiled expression, for either [`Scope`].
//!
//! Evaluation is cheap because compiling analyses which parts of the payload each expression
//! can observe (`event.repository.full_name`, `headers["x-github-event"]`, the elements
//! iterated by `exists`...) and evaluation converts only those from the JSON bytes, skipping
//! the rest while parsing. Anything used as a whole (`event` compared or passed to a function,
//! a computed index) is converted in full, so results are exactly those of a full conversion.
//! JSON integers that fit `i64` are CEL `int`, so `event.count > 5` works; a missing field is
//! an evaluation error unless guarded by `has()`.

mod analyze;
mod cost;
mod error;
mod expression;
mod filter;
mod from_bytes;
mod from_value;
mod headers;
pub mod limits;
mod needs;
mod pool;
mod render;
mod rule;
mod scope;

#[cfg(test)]
mod tests;

pub use cost::{Budget, UNITS_PER_MILLI};
pub use error::ConditionError;
pub use expression::panic_message;
pub use expression::{Expression, Json};
pub use filter::OutboundFilter;
pub use pool::{EvalPool, PoolError};
pub use rule::{ConditionResult, Prepared, RuleEvaluation, RuleProgram, ThrottleKey};
pub use scope::Scope;
