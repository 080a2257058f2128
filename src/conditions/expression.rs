//! One compiled expression, and the variables it is evaluated against.

use std::fmt;
use std::sync::Arc;

use cel::{Context, ParseErrors, Program, Value};

use super::analyze::{Needs, analyze};
use super::cost::{Budget, Estimate, Input, Inputs, estimate};
use super::error::ConditionError;
use super::limits::{check_depth, check_source};
use super::scope::{Scope, env};
use super::{from_bytes, from_value, headers};

/// A JSON document to evaluate against: raw bytes (as journaled) or an already parsed value.
#[derive(Debug, Clone, Copy)]
pub enum Json<'a> {
    /// The exact bytes received or about to be sent; parsed lazily, skipping what no expression
    /// reads.
    Bytes(&'a [u8]),
    /// A parsed document; only what the expressions read is converted.
    Value(&'a serde_json::Value),
}

impl<'a> From<&'a [u8]> for Json<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Json::Bytes(bytes)
    }
}

impl<'a> From<&'a serde_json::Value> for Json<'a> {
    fn from(value: &'a serde_json::Value) -> Self {
        Json::Value(value)
    }
}

/// A CEL expression compiled once (at rule or endpoint creation) and evaluated many times.
///
/// Cheap to clone: the program and its analysis are shared.
#[derive(Clone)]
pub struct Expression(Arc<Compiled>);

struct Compiled {
    source: String,
    scope: Scope,
    program: Program,
    needs: Needs,
    linear: bool,
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expression").field(&self.0.source).finish()
    }
}

impl Expression {
    /// Checks `source` against the structural limits, parses it and checks that it only uses the
    /// variables `scope` declares.
    ///
    /// # Errors
    ///
    /// [`ConditionError::TooLong`] or [`ConditionError::TooDeep`] (see [`super::limits`]),
    /// [`ConditionError::Syntax`], [`ConditionError::UndeclaredVariable`], or
    /// [`ConditionError::UpperCaseHeader`] for `headers["X-Name"]`, which could never match.
    pub fn compile(source: &str, scope: Scope) -> Result<Self, ConditionError> {
        check_source(source)?;
        let program = env().compile(source).map_err(syntax_error)?;
        check_depth(program.expression())?;
        let needs = analyze(program.expression(), scope)?;
        let linear = is_linear(program.expression());
        Ok(Expression(Arc::new(Compiled {
            source: source.to_owned(),
            scope,
            program,
            needs,
            linear,
        })))
    }

    /// The source text, as written.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The variables the expression may use.
    pub fn scope(&self) -> Scope {
        self.0.scope
    }

    /// Whether evaluating it costs at most about its size times its input's: it has no loop
    /// (macro) and calls no function whose output or work can outgrow its input (`replace`,
    /// `split`, `join`, `format`, `matches`...). Only such expressions run inline on an actor.
    pub fn is_linear(&self) -> bool {
        self.0.linear
    }

    /// The parsed expression.
    #[cfg(test)]
    pub(crate) fn program_expression(&self) -> &cel::common::ast::IdedExpr {
        self.0.program.expression()
    }

    /// What the expression reads of each variable.
    pub(crate) fn needs(&self) -> &Needs {
        &self.0.needs
    }
}

/// Functions whose work or result can grow faster than their input.
const SUPERLINEAR: &[&str] = &[
    "matches",
    "replace",
    "split",
    "join",
    "format",
    "quote",
    "strings.quote",
];

fn is_linear(expr: &cel::common::ast::IdedExpr) -> bool {
    use cel::common::ast::Expr;
    let mut stack = vec![expr];
    while let Some(expr) = stack.pop() {
        match &expr.expr {
            Expr::Comprehension(_) => return false,
            Expr::Call(call) if SUPERLINEAR.contains(&call.func_name.as_str()) => return false,
            _ => stack.extend(super::limits::children(expr)),
        }
    }
    true
}

/// The parser's messages, with their positions, on one line each.
fn syntax_error(errors: ParseErrors) -> ConditionError {
    let message = errors
        .errors
        .iter()
        .map(|e| {
            let msg = e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg);
            format!("{msg} (line {}, column {})", e.pos.0, e.pos.1)
        })
        .collect::<Vec<_>>()
        .join("; ");
    ConditionError::Syntax { message }
}

/// What is left of one evaluation's [`Budget`], shared by the expressions evaluated together
/// (a rule's conditions and throttle key draw on the same budget).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowance {
    remaining: u64,
    max_value_bytes: u64,
}

impl Allowance {
    pub(crate) fn new(budget: Budget) -> Self {
        Self {
            remaining: budget.max_cost,
            max_value_bytes: budget.max_value_bytes,
        }
    }

    /// Takes `estimate` from the allowance, or says why it does not fit.
    fn charge(&mut self, estimate: Estimate) -> Result<(), ConditionError> {
        if estimate.largest > self.max_value_bytes {
            return Err(ConditionError::TooLarge {
                estimated: estimate.largest,
                bound: self.max_value_bytes,
            });
        }
        if estimate.cost > self.remaining {
            return Err(ConditionError::OverBudget {
                estimated: estimate.cost,
                budget: self.remaining,
            });
        }
        self.remaining -= estimate.cost;
        Ok(())
    }
}

/// The variables bound for one evaluation: only the parts of the payload some expression reads.
pub(crate) struct Bindings<'a> {
    context: Context<'a, 'a>,
    /// Why `event` could not be bound (the payload is not JSON): every expression reading it fails
    /// with this error, the others still evaluate.
    event_error: Option<ConditionError>,
    /// Sizes of the documents behind `event` and `headers`, which bound any part of them.
    event_bytes: u64,
    header_bytes: u64,
}

impl<'a> Bindings<'a> {
    /// Converts what `needs` asks for of `event` and `headers` (the latter only in rule scope).
    pub(crate) fn new<H>(needs: &Needs, event: Json<'a>, headers: H) -> Self
    where
        H: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut context = Context::with_env(Arc::clone(env()));
        let mut event_error = None;
        let event_bytes = match event {
            Json::Bytes(bytes) => bytes.len() as u64,
            Json::Value(value) => json_size(value),
        };
        if let Some(need) = &needs.event {
            let converted = match event {
                Json::Bytes(bytes) => from_bytes::convert(bytes, need),
                Json::Value(value) => Ok(from_value::convert(value, need)),
            };
            match converted {
                Ok(value) => context.add_variable_as_val("event", value),
                Err(error) => event_error = Some(error),
            }
        }
        let mut header_bytes = 0u64;
        if let Some(need) = &needs.headers {
            let headers = headers.into_iter().inspect(|(name, value)| {
                header_bytes += (name.len() + value.len()) as u64;
            });
            context.add_variable_as_val("headers", headers::convert(headers, need));
        }
        Bindings {
            context,
            event_error,
            event_bytes,
            header_bytes,
        }
    }

    /// Evaluates `expression`, which must be one of those whose needs these bindings cover, if
    /// its estimated cost fits what is left of `allowance`.
    pub(crate) fn evaluate(
        &self,
        expression: &Expression,
        allowance: &mut Allowance,
    ) -> Result<Value, ConditionError> {
        if let Some(error) = &self.event_error
            && expression.needs().event.is_some()
        {
            return Err(error.clone());
        }
        allowance.charge(self.estimate(expression))?;
        let program = &expression.0.program;
        // The interpreter is third-party code: a panic in it fails this evaluation only.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            program.execute(&self.context)
        }))
        .map_err(|panic| ConditionError::Internal(panic_message(&panic)))?
        .map_err(|e| ConditionError::Evaluation(e.to_string()))
    }

    /// The cost of evaluating `expression` on these bindings.
    pub(crate) fn estimate(&self, expression: &Expression) -> Estimate {
        let input = |name: &str, bytes: u64| {
            self.context.get_variable(name).and_then(|v| match v {
                cel::common::value::CowVal::Borrowed(value) => Some(Input { value, bytes }),
                cel::common::value::CowVal::Owned(_) => None,
            })
        };
        let inputs = Inputs {
            event: input("event", self.event_bytes),
            headers: input("headers", self.header_bytes),
        };
        estimate(expression.0.program.expression(), inputs)
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the interpreter panicked".to_owned())
}

/// An upper bound on the size of `value` as JSON text, without serializing it.
fn json_size(value: &serde_json::Value) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        total += match value {
            serde_json::Value::String(s) => s.len() as u64 + 2,
            serde_json::Value::Array(items) => {
                stack.extend(items);
                2 + items.len() as u64
            }
            serde_json::Value::Object(members) => {
                for (key, member) in members {
                    total += key.len() as u64 + 4;
                    stack.push(member);
                }
                2
            }
            _ => 24,
        };
    }
    total
}

/// The CEL name of a value's type, for error messages.
pub(crate) fn type_name(value: &Value) -> String {
    match value {
        Value::List(_) => "list".into(),
        Value::Map(_) => "map".into(),
        Value::Function(..) => "function".into(),
        Value::Int(_) => "int".into(),
        Value::UInt(_) => "uint".into(),
        Value::Float(_) => "double".into(),
        Value::String(_) => "string".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Bool(_) => "bool".into(),
        Value::Duration(_) => "google.protobuf.Duration".into(),
        Value::Timestamp(_) => "google.protobuf.Timestamp".into(),
        Value::Opaque(o) => o.runtime_type_name().into(),
        Value::Struct(s) => s.name().into(),
        Value::Null => "null_type".into(),
    }
}

/// Evaluates a boolean expression (`what` names it in the error: `condition`, `filter`).
pub(crate) fn evaluate_bool(
    bindings: &Bindings<'_>,
    expression: &Expression,
    what: &'static str,
    allowance: &mut Allowance,
) -> Result<bool, ConditionError> {
    match bindings.evaluate(expression, allowance)? {
        Value::Bool(b) => Ok(b),
        other => Err(ConditionError::UnexpectedType {
            what,
            found: type_name(&other),
            expected: "bool",
        }),
    }
}
