//! An event rule's conditions and throttle key, compiled together and evaluated in one pass.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::analyze::Needs;
use super::cost::Budget;
use super::error::ConditionError;
use super::expression::{Allowance, Bindings, Expression, Json, evaluate_bool};
use super::render;
use super::scope::Scope;

/// The compiled conditions (all must hold; none means always) and optional throttle key of an
/// event rule. Variables: `event` (the webhook payload) and `headers` (lower-case name → value).
///
/// Cheap to clone. Evaluation parses the payload once for all the expressions and converts only
/// the members they read.
#[derive(Debug, Clone)]
pub struct RuleProgram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    conditions: Vec<Expression>,
    throttle_key: Option<Expression>,
    /// The union of what the expressions read.
    needs: Needs,
}

/// The outcome of one condition, as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionResult {
    /// The condition held.
    True,
    /// The condition did not hold.
    False,
    /// The condition could not be evaluated (missing field, wrong type...): counts as not holding.
    Error(String),
}

/// The throttle key of a matching event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleKey {
    /// The rendered key.
    Key(String),
    /// The key expression failed on this event.
    Error(String),
}

/// The results of a rule's expressions on one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleEvaluation {
    /// One result per condition, in the rule's order.
    pub conditions: Vec<ConditionResult>,
    /// The throttle key, when the rule has one and the event matched; `None` otherwise.
    pub throttle_key: Option<ThrottleKey>,
    /// Set when evaluation failed inside the interpreter (a panic), not because of the
    /// expression or the input: the webhook is then parked rather than decided.
    pub internal_error: Option<String>,
}

impl RuleEvaluation {
    /// The evaluation of `conditions` conditions that could not run at all, for `reason`.
    pub fn failed(conditions: usize, reason: &str) -> Self {
        Self {
            conditions: vec![ConditionResult::Error(reason.to_owned()); conditions.max(1)],
            throttle_key: None,
            internal_error: Some(reason.to_owned()),
        }
    }

    /// The evaluation of a webhook whose payload was erased before it could be evaluated: every
    /// condition is an error, so the event log says why nothing fired.
    pub fn erased(conditions: usize) -> Self {
        Self {
            conditions: vec![
                ConditionResult::Error(
                    "the payload was erased before evaluation".into()
                );
                conditions.max(1)
            ],
            throttle_key: None,
            internal_error: None,
        }
    }

    /// Whether every condition held (vacuously true without conditions).
    pub fn matched(&self) -> bool {
        self.conditions.iter().all(|c| *c == ConditionResult::True)
    }
}

impl RuleProgram {
    /// Compiles a rule's conditions and throttle key.
    ///
    /// # Errors
    ///
    /// The first expression that does not compile, located as the API names it:
    /// `conditions[1]: Syntax error: ...`, `throttle_key: undeclared reference to ...`.
    pub fn compile<S: AsRef<str>>(
        conditions: &[S],
        throttle_key: Option<&str>,
    ) -> Result<Self, ConditionError> {
        let conditions = conditions
            .iter()
            .enumerate()
            .map(|(i, source)| {
                Expression::compile(source.as_ref(), Scope::Rule)
                    .map_err(|e| e.at(format!("conditions[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let throttle_key = throttle_key
            .map(|source| {
                Expression::compile(source, Scope::Rule).map_err(|e| e.at("throttle_key"))
            })
            .transpose()?;
        let mut needs = Needs::default();
        for expression in conditions.iter().chain(&throttle_key) {
            needs.merge(expression.needs());
        }
        needs.normalize();
        Ok(RuleProgram(Arc::new(Inner {
            conditions,
            throttle_key,
            needs,
        })))
    }

    /// The compiled conditions, in order.
    pub fn conditions(&self) -> &[Expression] {
        &self.0.conditions
    }

    /// The compiled throttle key expression, if any.
    pub fn throttle_key(&self) -> Option<&Expression> {
        self.0.throttle_key.as_ref()
    }

    /// Evaluates every condition on one event, then, if they all held, the throttle key, all
    /// within one `budget`: an expression whose estimated cost no longer fits is an error
    /// result, and so is a panic in the interpreter.
    ///
    /// `headers` are `(name, value)` pairs in any case; they are bound under lower-case names,
    /// the last of a repeated name winning. A payload that is not JSON fails only the
    /// expressions that read `event`.
    pub fn evaluate<'a, H>(&self, event: Json<'a>, headers: H, budget: Budget) -> RuleEvaluation
    where
        H: IntoIterator<Item = (&'a str, &'a str)>,
    {
        evaluate_with(&self.0, &self.0.needs, event, headers, budget)
    }

    /// Converts what the program reads of one input, once, for [`Prepared::cost`] and
    /// [`Prepared::evaluate`] (what [`RuleProgram::evaluate`] does in one go).
    pub fn prepare<'a, H>(&'a self, event: Json<'a>, headers: H) -> Prepared<'a>
    where
        H: IntoIterator<Item = (&'a str, &'a str)>,
    {
        Prepared {
            program: self,
            bindings: Bindings::new(&self.0.needs, event, headers),
        }
    }

    /// Whether evaluation is always cheap: no loop and no function whose work can grow faster
    /// than its input (see [`Expression::is_linear`]). Other programs are evaluated off the
    /// actors' threads.
    pub fn is_linear(&self) -> bool {
        self.0
            .conditions
            .iter()
            .chain(&self.0.throttle_key)
            .all(Expression::is_linear)
    }
}

/// Evaluates the rule with the variables converted under `needs` (the rule's own, or everything
/// for the equivalence tests).
fn evaluate_with<'a, H>(
    rule: &Inner,
    needs: &Needs,
    event: Json<'a>,
    headers: H,
    budget: Budget,
) -> RuleEvaluation
where
    H: IntoIterator<Item = (&'a str, &'a str)>,
{
    evaluate_bound(rule, &Bindings::new(needs, event, headers), budget)
}

/// Passes `outcome` on, noting in `internal` the first failure of the interpreter itself.
fn noting<T>(
    internal: &mut Option<String>,
    outcome: Result<T, ConditionError>,
) -> Result<T, ConditionError> {
    if let Err(e @ ConditionError::Internal(_)) = &outcome {
        internal.get_or_insert_with(|| e.to_string());
    }
    outcome
}

fn evaluate_bound(rule: &Inner, bindings: &Bindings<'_>, budget: Budget) -> RuleEvaluation {
    let mut allowance = Allowance::new(budget);
    let mut internal_error = None;
    let conditions = rule
        .conditions
        .iter()
        .map(|c| {
            match noting(
                &mut internal_error,
                evaluate_bool(bindings, c, "condition", &mut allowance),
            ) {
                Ok(true) => ConditionResult::True,
                Ok(false) => ConditionResult::False,
                Err(e) => ConditionResult::Error(e.to_string()),
            }
        })
        .collect::<Vec<_>>();
    let matched = conditions.iter().all(|c| *c == ConditionResult::True);
    let throttle_key = match &rule.throttle_key {
        Some(key) if matched => Some(
            match noting(&mut internal_error, bindings.evaluate(key, &mut allowance))
                .and_then(|value| render::throttle_key(&value))
            {
                Ok(key) => ThrottleKey::Key(key),
                Err(e) => ThrottleKey::Error(e.to_string()),
            },
        ),
        _ => None,
    };
    RuleEvaluation {
        conditions,
        throttle_key,
        internal_error,
    }
}

/// A program with its input converted: for estimating and evaluating separately.
pub struct Prepared<'a> {
    program: &'a RuleProgram,
    bindings: Bindings<'a>,
}

impl Prepared<'_> {
    /// The estimated cost of evaluating every expression, in budget units (see [`Budget`]):
    /// what evaluation checks against the budget before running each expression.
    pub fn cost(&self) -> u64 {
        let inner = &self.program.0;
        inner
            .conditions
            .iter()
            .chain(&inner.throttle_key)
            .map(|e| self.bindings.estimate(e).cost)
            .fold(0, u64::saturating_add)
    }

    /// Evaluates as [`RuleProgram::evaluate`] does.
    pub fn evaluate(&self, budget: Budget) -> RuleEvaluation {
        evaluate_bound(&self.program.0, &self.bindings, budget)
    }
}

#[cfg(test)]
impl RuleProgram {
    /// Evaluates with the whole payload and every header converted: the reference the pruned
    /// evaluation must agree with.
    pub(crate) fn evaluate_unpruned<'a, H>(&self, event: Json<'a>, headers: H) -> RuleEvaluation
    where
        H: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let everything = Needs {
            event: Some(super::needs::ALL.clone()),
            headers: Some(super::needs::ALL.clone()),
        };
        evaluate_with(&self.0, &everything, event, headers, Budget::default())
    }
}
