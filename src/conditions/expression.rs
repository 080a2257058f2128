//! One compiled expression, and the variables it is evaluated against.

use std::fmt;
use std::sync::Arc;

use cel::{Context, ParseErrors, Program, Value};

use super::analyze::{Needs, analyze};
use super::error::ConditionError;
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
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expression").field(&self.0.source).finish()
    }
}

impl Expression {
    /// Parses `source` and checks that it only uses the variables `scope` declares.
    ///
    /// # Errors
    ///
    /// [`ConditionError::Syntax`], [`ConditionError::UndeclaredVariable`], or
    /// [`ConditionError::UpperCaseHeader`] for `headers["X-Name"]`, which could never match.
    pub fn compile(source: &str, scope: Scope) -> Result<Self, ConditionError> {
        let program = env().compile(source).map_err(syntax_error)?;
        let needs = analyze(program.expression(), scope)?;
        Ok(Expression(Arc::new(Compiled {
            source: source.to_owned(),
            scope,
            program,
            needs,
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

    /// What the expression reads of each variable.
    pub(crate) fn needs(&self) -> &Needs {
        &self.0.needs
    }
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

/// The variables bound for one evaluation: only the parts of the payload some expression reads.
pub(crate) struct Bindings<'a> {
    context: Context<'a, 'a>,
    /// Why `event` could not be bound (the payload is not JSON): every expression reading it fails
    /// with this error, the others still evaluate.
    event_error: Option<ConditionError>,
}

impl<'a> Bindings<'a> {
    /// Converts what `needs` asks for of `event` and `headers` (the latter only in rule scope).
    pub(crate) fn new<H>(needs: &Needs, event: Json<'a>, headers: H) -> Self
    where
        H: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut context = Context::with_env(Arc::clone(env()));
        let mut event_error = None;
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
        if let Some(need) = &needs.headers {
            context.add_variable_as_val("headers", headers::convert(headers, need));
        }
        Bindings {
            context,
            event_error,
        }
    }

    /// Evaluates `expression`, which must be one of those whose needs these bindings cover.
    pub(crate) fn evaluate(&self, expression: &Expression) -> Result<Value, ConditionError> {
        if let Some(error) = &self.event_error
            && expression.needs().event.is_some()
        {
            return Err(error.clone());
        }
        expression
            .0
            .program
            .execute(&self.context)
            .map_err(|e| ConditionError::Evaluation(e.to_string()))
    }
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
) -> Result<bool, ConditionError> {
    match bindings.evaluate(expression)? {
        Value::Bool(b) => Ok(b),
        other => Err(ConditionError::UnexpectedType {
            what,
            found: type_name(&other),
            expected: "bool",
        }),
    }
}
