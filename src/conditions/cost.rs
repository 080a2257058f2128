//! The evaluation budget: an upper bound on what evaluating an expression on one input costs,
//! computed before it runs.
//!
//! The interpreter cannot be interrupted, so an expression is only run once its cost is known to
//! fit. [`estimate`] walks the syntax tree (at most [`MAX_DEPTH`](super::limits::MAX_DEPTH) deep)
//! with a [`Shape`] for every subexpression: an upper bound on the value it can produce (its
//! length, its size in bytes, the shape of its elements). The variables' shapes come from the
//! input itself, so `event.alerts.exists(a, ...)` is priced by the number of alerts this
//! webhook carries, not by a worst case; computed values (`map`, `split`, `+`, `replace`) get
//! bounds from their operands. A comprehension costs its range's length times its body, which
//! is what makes nested loops and repeated string building expensive, and the largest value
//! any step can build is the memory bound.
//!
//! Units approximate nanoseconds of interpreter work on a 2020s x86 core:
//! [`Budget::from_millis`] converts with [`UNITS_PER_MILLI`], measured by `cargo bench --bench
//! conditions` (see `docs/performance.md`). The estimate is an upper bound, not a prediction:
//! what matters is that nothing over the budget runs, and that ordinary rules stay far below it.

use std::rc::Rc;

use cel::common::ast::operators;
use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{CelBytes, CelString};
use cel::common::value::{CowVal, Val};

/// Budget units per millisecond of evaluation on this class of machine.
pub const UNITS_PER_MILLI: u64 = 800_000;

/// Cost of evaluating any node, on top of the bytes it touches.
const NODE: u64 = 30;
/// Cost of one loop iteration, on top of its body and of copying the element it binds.
const ITERATION: u64 = 40;
/// Cost of allocating one value (an element of a list `split` builds).
const ALLOCATION: u64 = 64;
/// Cost per byte of a regular expression compiled by `matches` (the regex crate compiles in
/// time linear in the pattern, with a large constant).
const REGEX_COMPILE_PER_BYTE: u64 = 200;
/// Bound of a scalar's size in bytes (numbers, booleans, timestamps), and of the text of one.
const SCALAR_BYTES: u64 = 24;
/// Most candidate values a shape tracks individually; more are summarised into a bound.
const MAX_TRACKED: usize = 4096;

/// What one evaluation may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Cost units (see [`UNITS_PER_MILLI`]).
    pub max_cost: u64,
    /// Largest value an evaluation may build, in bytes.
    pub max_value_bytes: u64,
}

impl Budget {
    /// A budget of `millis` milliseconds of evaluation and `max_value_bytes` of intermediate
    /// values (`conditions.max_eval_millis`, `conditions.max_value_bytes`).
    pub fn from_millis(millis: u64, max_value_bytes: u64) -> Self {
        Self {
            max_cost: millis.saturating_mul(UNITS_PER_MILLI),
            max_value_bytes,
        }
    }
}

impl Default for Budget {
    /// 10 ms and 16 MiB, the configuration's defaults.
    fn default() -> Self {
        Self::from_millis(10, 16 * 1024 * 1024)
    }
}

/// The bound of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Estimate {
    /// Cost units.
    pub(crate) cost: u64,
    /// Size of the largest value any step may build, in bytes.
    pub(crate) largest: u64,
}

/// A variable bound for an evaluation, as the estimate sees it.
#[derive(Clone, Copy)]
pub(crate) struct Input<'a> {
    /// The converted value.
    pub(crate) value: &'a (dyn Val + 'a),
    /// The size of the document it came from, in bytes: a bound on any part of it.
    pub(crate) bytes: u64,
}

/// The variables of one evaluation.
#[derive(Clone, Copy, Default)]
pub(crate) struct Inputs<'a> {
    /// `event`, if bound.
    pub(crate) event: Option<Input<'a>>,
    /// `headers`, if bound.
    pub(crate) headers: Option<Input<'a>>,
}

/// Bounds the cost and the largest value of evaluating `expr` on `inputs`.
pub(crate) fn estimate(expr: &IdedExpr, inputs: Inputs<'_>) -> Estimate {
    let mut walker = Walker {
        inputs,
        locals: Vec::new(),
        largest: 0,
    };
    let (cost, _) = walker.visit(expr);
    Estimate {
        cost,
        largest: walker.largest,
    }
}

/// An upper bound on a value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    /// Elements of a list or map, bytes of a string; 1 for a scalar.
    len: u64,
    /// Size in bytes, everything included.
    bytes: u64,
    /// Bound of every element (or map key and value); `None`: anything within `bytes`.
    elem: Option<Rc<Bound>>,
}

impl Bound {
    fn scalar() -> Self {
        Self::sized(1, SCALAR_BYTES)
    }

    fn text(bytes: u64) -> Self {
        Self::sized(bytes, bytes)
    }

    fn sized(len: u64, bytes: u64) -> Self {
        Bound {
            len,
            bytes,
            elem: None,
        }
    }

    fn element(&self) -> Bound {
        match &self.elem {
            Some(elem) => (**elem).clone(),
            None => Bound::text(self.bytes),
        }
    }

    fn join(&self, other: &Bound) -> Bound {
        let elem = match (&self.elem, &other.elem) {
            (Some(a), Some(b)) => Some(Rc::new(a.join(b))),
            _ => None,
        };
        Bound {
            len: self.len.max(other.len),
            bytes: self.bytes.max(other.bytes),
            elem,
        }
    }
}

/// What a subexpression can be.
#[derive(Clone)]
enum Shape<'a> {
    /// One of these parts of an input (a field of `event`, every element a loop variable
    /// takes), each no larger than `bytes` in all (a part is never larger than what holds it).
    Data {
        values: Vec<&'a (dyn Val + 'a)>,
        bytes: u64,
    },
    /// A computed or literal value.
    Computed(Bound),
}

impl<'a> Shape<'a> {
    fn bound(&self) -> Bound {
        match self {
            Shape::Computed(bound) => bound.clone(),
            Shape::Data { values, bytes } => {
                let (mut len, mut size) = (0, 0);
                for value in values {
                    let (l, s) = measure(*value, *bytes);
                    len = len.max(l);
                    size = size.max(s);
                }
                Bound::sized(len, size)
            }
        }
    }

    fn len(&self) -> u64 {
        self.bound().len
    }

    fn bytes(&self) -> u64 {
        match self {
            Shape::Computed(bound) => bound.bytes,
            Shape::Data { .. } => self.bound().bytes,
        }
    }

    /// Every element (or map key) a loop over this value binds its variable to.
    fn elements(&self) -> Shape<'a> {
        match self {
            Shape::Computed(bound) => Shape::Computed(bound.element()),
            Shape::Data { values, bytes } => {
                let mut found = Vec::new();
                let mut largest = 0;
                for value in values {
                    if let Some(iterable) = value.as_iterable() {
                        let mut items = iterable.iter();
                        while let Some(item) = items.next() {
                            largest = largest.max(deep_size(item));
                            found.push(item);
                            if found.len() > MAX_TRACKED {
                                return Shape::Computed(Bound::text(*bytes));
                            }
                        }
                    }
                }
                Shape::Data {
                    values: found,
                    bytes: largest.min(*bytes),
                }
            }
        }
    }

    /// The member `name` (or a constant index) of this value.
    fn member(&self, key: &dyn Val) -> Shape<'a> {
        match self {
            Shape::Computed(bound) => Shape::Computed(bound.element()),
            Shape::Data { values, bytes } => {
                let mut found = Vec::new();
                for value in values {
                    match value.as_indexer().map(|i| i.get(key)) {
                        Some(Ok(CowVal::Borrowed(member))) => found.push(member),
                        // Computed on access: bounded by the document.
                        Some(Ok(CowVal::Owned(_))) => return Shape::Computed(Bound::text(*bytes)),
                        _ => {}
                    }
                }
                Shape::Data {
                    values: found,
                    bytes: *bytes,
                }
            }
        }
    }

    /// Any member of this value (a computed index): every element, or every map value.
    fn any_member(&self) -> Shape<'a> {
        match self {
            Shape::Computed(bound) => Shape::Computed(bound.element()),
            Shape::Data { values, bytes } => {
                let mut found = Vec::new();
                for value in values {
                    let (Some(iterable), Some(indexer)) = (value.as_iterable(), value.as_indexer())
                    else {
                        continue;
                    };
                    let is_map = value.get_type().kind() == cel::common::types::Kind::Map;
                    let mut items = iterable.iter();
                    while let Some(item) = items.next() {
                        let member = if is_map {
                            match indexer.get(item) {
                                Ok(CowVal::Borrowed(member)) => member,
                                _ => return Shape::Computed(Bound::text(*bytes)),
                            }
                        } else {
                            item
                        };
                        found.push(member);
                        if found.len() > MAX_TRACKED {
                            return Shape::Computed(Bound::text(*bytes));
                        }
                    }
                }
                Shape::Data {
                    values: found,
                    bytes: *bytes,
                }
            }
        }
    }
}

/// The size of a value in bytes, everything included: each element or member also counts the
/// [`ALLOCATION`] its copy makes, which is what copying it into a loop variable costs. Linear in
/// the value; JSON nesting bounds the recursion.
fn deep_size(value: &dyn Val) -> u64 {
    let (len, bytes) = measure(value, 0);
    if bytes > 0 || value.as_iterable().is_none() {
        return bytes.max(len);
    }
    let mut total = 0u64;
    let is_map = value.get_type().kind() == cel::common::types::Kind::Map;
    if let Some(iterable) = value.as_iterable() {
        let mut items = iterable.iter();
        while let Some(item) = items.next() {
            total = total
                .saturating_add(deep_size(item))
                .saturating_add(ALLOCATION);
            if is_map && let Some(Ok(member)) = value.as_indexer().map(|i| i.get(item)) {
                total = total.saturating_add(deep_size(member.as_ref()));
            }
        }
    }
    total
}

/// `(len, bytes)` of one part of an input: exact for strings and scalars, `bound` for
/// containers (walking them would cost as much as evaluating).
fn measure(value: &dyn Val, bound: u64) -> (u64, u64) {
    if let Some(s) = value.downcast_ref::<CelString>() {
        let n = s.inner().len() as u64;
        return (n, n);
    }
    if let Some(b) = value.downcast_ref::<CelBytes>() {
        let n = b.inner().len() as u64;
        return (n, n);
    }
    match value.as_sizer() {
        Some(sizer) => (u64::try_from(*sizer.size().inner()).unwrap_or(0), bound),
        None => (1, SCALAR_BYTES),
    }
}

struct Walker<'a> {
    inputs: Inputs<'a>,
    /// Comprehension variables in scope, innermost last.
    locals: Vec<(String, Shape<'a>)>,
    largest: u64,
}

impl<'a> Walker<'a> {
    /// The cost of evaluating `expr` once, and the shape of its value.
    fn visit(&mut self, expr: &IdedExpr) -> (u64, Shape<'a>) {
        let (cost, shape) = match &expr.expr {
            Expr::Unspecified => (NODE, Shape::Computed(Bound::scalar())),
            Expr::Literal(literal) => (NODE, Shape::Computed(literal_bound(literal))),
            Expr::Ident(name) => (NODE, self.variable(name)),
            Expr::Select(select) => {
                let (cost, operand) = self.visit(&select.operand);
                let shape = if select.test {
                    Shape::Computed(Bound::scalar())
                } else {
                    operand.member(&CelString::from(select.field.as_str()))
                };
                (cost + NODE, shape)
            }
            Expr::Call(call) => self.call(call),
            Expr::List(list) => {
                let mut cost = NODE;
                let mut bound: Option<Bound> = None;
                let mut bytes = 0u64;
                for element in &list.elements {
                    let (c, shape) = self.visit(element);
                    cost = cost.saturating_add(c);
                    let b = shape.bound();
                    bytes = bytes.saturating_add(b.bytes);
                    bound = Some(bound.map_or(b.clone(), |acc| acc.join(&b)));
                }
                let len = list.elements.len() as u64;
                // An empty list has no element: the smallest bound joins as a no-op.
                let elem = Some(Rc::new(bound.unwrap_or_else(|| Bound::sized(0, 0))));
                (
                    cost.saturating_add(len * ITERATION),
                    Shape::Computed(Bound { len, bytes, elem }),
                )
            }
            Expr::Map(map) => {
                let mut cost = NODE;
                let mut bytes = 0u64;
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        for part in [&entry.key, &entry.value] {
                            let (c, shape) = self.visit(part);
                            cost = cost.saturating_add(c).saturating_add(ITERATION);
                            bytes = bytes.saturating_add(shape.bytes());
                        }
                    }
                }
                let len = map.entries.len() as u64;
                (cost, Shape::Computed(Bound::sized(len, bytes)))
            }
            Expr::Struct(s) => {
                let mut cost = NODE;
                let mut bytes = 0u64;
                for entry in &s.entries {
                    if let EntryExpr::StructField(field) = &entry.expr {
                        let (c, shape) = self.visit(&field.value);
                        cost = cost.saturating_add(c);
                        bytes = bytes.saturating_add(shape.bytes());
                    }
                }
                (cost, Shape::Computed(Bound::sized(1, bytes)))
            }
            Expr::Comprehension(c) => self.comprehension(c),
        };
        if let Shape::Computed(bound) = &shape {
            self.largest = self.largest.max(bound.bytes);
        }
        (cost, shape)
    }

    fn variable(&self, name: &str) -> Shape<'a> {
        if let Some((_, shape)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return shape.clone();
        }
        let input = match name {
            "event" => self.inputs.event,
            "headers" => self.inputs.headers,
            _ => None,
        };
        match input {
            Some(input) => Shape::Data {
                values: vec![input.value],
                bytes: input.bytes,
            },
            // A type name (`int`) or a variable the input lacks (evaluation reports it).
            None => Shape::Computed(Bound::scalar()),
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> (u64, Shape<'a>) {
        let (range_cost, range) = self.visit(&c.iter_range);
        let (init_cost, init) = self.visit(&c.accu_init);
        let iterations = range.len();
        let element = range.elements();
        let outer = self.locals.len();
        self.locals.push((c.iter_var.clone(), element.clone()));
        if let Some(second) = &c.iter_var2 {
            self.locals.push((second.clone(), range.any_member()));
        }
        self.locals.push((c.accu_var.clone(), init.clone()));
        let (cond_cost, _) = self.visit(&c.loop_cond);
        let (step_cost, step) = self.visit(&c.loop_step);
        self.locals.truncate(outer);
        // Every step adds at most what one step built to the accumulator (the macros only fold
        // booleans, count, or append), so after all steps it is bounded by:
        let step = step.bound();
        let init_bound = init.bound();
        let accumulated = Bound {
            len: init_bound
                .len
                .saturating_add(iterations.saturating_mul(step.len)),
            bytes: init_bound
                .bytes
                .saturating_add(iterations.saturating_mul(step.bytes)),
            elem: step.elem.clone(),
        };
        self.largest = self.largest.max(accumulated.bytes);
        self.locals
            .push((c.accu_var.clone(), Shape::Computed(accumulated)));
        let (result_cost, result) = self.visit(&c.result);
        self.locals.truncate(outer);
        // The interpreter copies each element into the loop variable.
        let per_iteration = cond_cost
            .saturating_add(step_cost)
            .saturating_add(ITERATION)
            .saturating_add(element.bytes());
        let cost = range_cost
            .saturating_add(init_cost)
            .saturating_add(iterations.saturating_mul(per_iteration))
            .saturating_add(result_cost);
        (cost, result)
    }

    fn call(&mut self, call: &CallExpr) -> (u64, Shape<'a>) {
        let mut cost = NODE;
        let target = call.target.as_deref().map(|t| {
            let (c, shape) = self.visit(t);
            cost = cost.saturating_add(c);
            shape
        });
        let name = call.func_name.as_str();
        // Member access with a constant key keeps following the input.
        if matches!(
            name,
            operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT
        ) && let [operand, key] = call.args.as_slice()
        {
            let (c, operand) = self.visit(operand);
            cost = cost.saturating_add(c);
            let shape = match &key.expr {
                Expr::Literal(LiteralValue::String(s)) => {
                    operand.member(&CelString::from(s.inner()))
                }
                Expr::Literal(LiteralValue::Int(i)) => {
                    operand.member(&cel::common::types::CelInt::from(*i.inner()))
                }
                _ => {
                    let (c, _) = self.visit(key);
                    cost = cost.saturating_add(c);
                    operand.any_member()
                }
            };
            return (cost.saturating_add(NODE), shape);
        }
        let mut args = Vec::with_capacity(call.args.len() + 1);
        args.extend(target);
        for arg in &call.args {
            let (c, shape) = self.visit(arg);
            cost = cost.saturating_add(c);
            args.push(shape);
        }
        let (work, bound) = function(name, &args);
        (cost.saturating_add(work), Shape::Computed(bound))
    }
}

/// The work of applying `name` to arguments of these shapes (the receiver first), and a bound on
/// its result. Unknown functions are assumed linear in their arguments and no larger than them.
fn function(name: &str, args: &[Shape<'_>]) -> (u64, Bound) {
    let bytes = |i: usize| args.get(i).map_or(0, Shape::bytes);
    let all_bytes = args
        .iter()
        .fold(0u64, |acc, a| acc.saturating_add(a.bytes()));
    match name {
        operators::ADD => {
            let (a, b) = (
                args.first().map(Shape::bound),
                args.get(1).map(Shape::bound),
            );
            let (a, b) = (
                a.unwrap_or_else(Bound::scalar),
                b.unwrap_or_else(Bound::scalar),
            );
            let elem = match (&a.elem, &b.elem) {
                (Some(x), Some(y)) => Some(Rc::new(x.join(y))),
                _ => None,
            };
            let sum = Bound {
                len: a.len.saturating_add(b.len),
                bytes: a.bytes.saturating_add(b.bytes),
                elem,
            };
            (sum.bytes.saturating_add(NODE), sum)
        }
        operators::EQUALS
        | operators::NOT_EQUALS
        | operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS => {
            (bytes(0).min(bytes(1)).saturating_add(NODE), Bound::scalar())
        }
        operators::IN => {
            // A scan of the container, each comparison bounded by the needle's size.
            let container = args.get(1).map_or(0, Shape::len);
            let work = container.saturating_mul(bytes(0).saturating_add(NODE));
            (work.saturating_add(NODE), Bound::scalar())
        }
        operators::LOGICAL_AND
        | operators::LOGICAL_OR
        | operators::LOGICAL_NOT
        | operators::NOT_STRICTLY_FALSE
        | operators::NEGATE
        | operators::SUBSTRACT
        | operators::MULTIPLY
        | operators::DIVIDE
        | operators::MODULO
        | "size"
        | "hasValue"
        | "optional.none"
        | "type" => (NODE, Bound::scalar()),
        operators::CONDITIONAL => {
            let joined = args
                .get(1)
                .zip(args.get(2))
                .map_or_else(Bound::scalar, |(a, b)| a.bound().join(&b.bound()));
            (NODE, joined)
        }
        "matches" => {
            let pattern = bytes(1);
            let work = pattern
                .saturating_mul(REGEX_COMPILE_PER_BYTE)
                .saturating_add(bytes(0).saturating_mul(pattern.clamp(1, 64)));
            (work.saturating_add(NODE), Bound::scalar())
        }
        "replace" => {
            // Replacing the empty string inserts between every character.
            let out = bytes(0)
                .saturating_add(1)
                .saturating_mul(bytes(2).max(1))
                .saturating_add(bytes(0));
            (out.saturating_add(all_bytes), Bound::text(out))
        }
        "split" => {
            let s = bytes(0);
            let parts = Bound {
                len: s.saturating_add(1),
                bytes: s.saturating_add(s.saturating_add(1).saturating_mul(SCALAR_BYTES)),
                elem: Some(Rc::new(Bound::text(s))),
            };
            let work = s.saturating_add(1).saturating_mul(ALLOCATION);
            (work.saturating_add(all_bytes), parts)
        }
        "join" => {
            let list = args.first().map(Shape::bound).unwrap_or_else(Bound::scalar);
            let out = list.bytes.saturating_add(list.len.saturating_mul(bytes(1)));
            (out.saturating_add(NODE), Bound::text(out))
        }
        "format" => {
            // Every placeholder can render any argument, numbers in a few dozen characters.
            let out = bytes(0).saturating_mul(bytes(1).saturating_add(SCALAR_BYTES));
            (out.saturating_add(NODE), Bound::text(out))
        }
        "strings.quote" | "quote" => {
            let out = bytes(0).saturating_mul(6).saturating_add(2);
            (out.saturating_add(NODE), Bound::text(out))
        }
        "string" | "bytes" => {
            let out = bytes(0).max(SCALAR_BYTES);
            (out.saturating_add(NODE), Bound::text(out))
        }
        "dyn" | "optional.of" | "optional.ofNonZeroValue" | "value" | "orValue" | "or" => {
            let joined = args
                .iter()
                .map(Shape::bound)
                .reduce(|a, b| a.join(&b))
                .unwrap_or_else(Bound::scalar);
            (NODE, joined)
        }
        "int" | "uint" | "double" | "bool" | "timestamp" | "duration" => {
            (all_bytes.saturating_add(NODE), Bound::scalar())
        }
        "lowerAscii" | "upperAscii" | "trim" | "reverse" | "substring" | "charAt" => {
            (all_bytes.saturating_add(NODE), Bound::text(bytes(0)))
        }
        "contains" | "startsWith" | "endsWith" | "indexOf" | "lastIndexOf" => {
            (all_bytes.saturating_add(NODE), Bound::scalar())
        }
        _ => (
            all_bytes.saturating_add(NODE),
            Bound::sized(all_bytes.max(1), all_bytes.max(SCALAR_BYTES)),
        ),
    }
}

fn literal_bound(literal: &LiteralValue) -> Bound {
    match literal {
        LiteralValue::String(s) => Bound::text(s.inner().len() as u64),
        LiteralValue::Bytes(b) => Bound::text(b.inner().len() as u64),
        _ => Bound::scalar(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost_on(source: &str, event: &serde_json::Value) -> Estimate {
        let program = super::super::scope::env().compile(source).unwrap();
        let bytes = serde_json::to_vec(event).unwrap();
        let value = super::super::from_bytes::convert(&bytes, &super::super::needs::ALL).unwrap();
        let inputs = Inputs {
            event: Some(Input {
                value: value.as_ref(),
                bytes: bytes.len() as u64,
            }),
            headers: None,
        };
        estimate(program.expression(), inputs)
    }

    fn cost(source: &str) -> u64 {
        cost_on(source, &serde_json::json!({})).cost
    }

    #[test]
    fn simple_conditions_cost_a_few_nodes() {
        let event = serde_json::json!({"action": "opened", "repository": {"name": "hookforge"}});
        let e = cost_on(
            "event.action == 'opened' && event.repository.name.startsWith('hook')",
            &event,
        );
        assert!(e.cost < 1_000, "{e:?}");
    }

    #[test]
    fn loops_over_the_input_are_priced_by_its_actual_length() {
        let few = serde_json::json!({"alerts": [{"s": "a"}, {"s": "b"}]});
        let many = serde_json::json!({"alerts": vec![serde_json::json!({"s": "a"}); 200]});
        let source = "event.alerts.exists(a, a.s == 'critical')";
        let (few, many) = (cost_on(source, &few).cost, cost_on(source, &many).cost);
        assert!(many > 50 * few, "few {few}, many {many}");
        assert!(many < 200_000, "{many}");
    }

    #[test]
    fn nested_loops_multiply() {
        let ten = "[1,2,3,4,5,6,7,8,9,10]";
        let nest = |n: usize| {
            let mut s = "true".to_owned();
            for i in 0..n {
                s = format!("{ten}.all(v{i}, {s})");
            }
            cost(&s)
        };
        assert!(nest(3) > 8 * nest(2));
        assert!(nest(8) > Budget::default().max_cost, "{}", nest(8));
    }

    #[test]
    fn repeated_string_building_is_bounded_in_size() {
        let mut s = "'aaaaaaaaaa'".to_owned();
        for i in 0..7 {
            s = format!("[1,2,3,4,5,6,7,8,9,10].map(x{i}, {s} + {s})");
        }
        let e = cost_on(&format!("size({s}) > 0"), &serde_json::json!({}));
        assert!(e.largest > Budget::default().max_value_bytes, "{e:?}");
        let replaced = cost_on(
            "event.s.replace('a', event.s).replace('a', event.s).size() > 0",
            &serde_json::json!({"s": "a".repeat(1000)}),
        );
        assert!(replaced.largest > 1_000_000_000, "{replaced:?}");
    }

    #[test]
    fn estimates_saturate_instead_of_overflowing() {
        let mut s = "true".to_owned();
        for i in 0..30 {
            s = format!("[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16].all(v{i}, {s})");
        }
        assert_eq!(cost(&s), u64::MAX);
    }
}
