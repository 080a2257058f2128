//! Compile-time analysis of a parsed expression: rejects undeclared variables and collects what
//! each declared variable is read for (a [`Need`] tree per variable), so that evaluation converts
//! only those parts of the payload.

use cel::common::ast::operators::{IN, INDEX, OPT_INDEX, OPT_SELECT};
use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};

use super::error::ConditionError;
use super::needs::{Need, Step, Usage};
use super::scope::{Root, Scope, env, is_declared_function};

/// What an expression reads of each declared variable; `None` if it doesn't use the variable.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Needs {
    pub(crate) event: Option<Need>,
    pub(crate) headers: Option<Need>,
}

impl Needs {
    fn root_mut(&mut self, root: Root) -> &mut Need {
        match root {
            Root::Event => self.event.get_or_insert_default(),
            Root::Headers => self.headers.get_or_insert_default(),
        }
    }

    /// Adds what `other` reads.
    pub(crate) fn merge(&mut self, other: &Needs) {
        if let Some(need) = &other.event {
            self.event.get_or_insert_default().merge(need);
        }
        if let Some(need) = &other.headers {
            self.headers.get_or_insert_default().merge(need);
        }
    }

    /// Normalizes every tree (see [`Need::normalize`]).
    pub(crate) fn normalize(&mut self) {
        self.event.iter_mut().for_each(Need::normalize);
        self.headers.iter_mut().for_each(Need::normalize);
    }
}

/// Checks `expr` against `scope` and returns what it reads of each variable, normalized.
pub(crate) fn analyze(expr: &IdedExpr, scope: Scope) -> Result<Needs, ConditionError> {
    let mut walker = Walker {
        scope,
        bound: Vec::new(),
        needs: Needs::default(),
    };
    walker.visit(expr)?;
    walker.needs.normalize();
    Ok(walker.needs)
}

/// A path from a declared variable: `event.commits[0].id` is `(Event, [commits, 0, id])`.
type Path = (Root, Vec<Step>);

/// What a comprehension variable stands for.
#[derive(Clone)]
enum Binding {
    /// Every element of the value at a path: reads of the variable are reads of that path.
    Path(Path),
    /// A computed value: reads of it are not reads of the payload.
    Opaque,
}

struct Walker {
    scope: Scope,
    /// Comprehension variables in scope, innermost last.
    bound: Vec<(String, Binding)>,
    needs: Needs,
}

impl Walker {
    fn binding(&self, name: &str) -> Option<&Binding> {
        self.bound
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
    }

    /// The access path `expr` spells, if it is a chain of constant selections on a declared
    /// variable (or on a comprehension variable bound to one).
    fn path(&self, expr: &IdedExpr) -> Option<Path> {
        match &expr.expr {
            Expr::Ident(name) => match self.binding(name) {
                Some(Binding::Path(path)) => Some(path.clone()),
                Some(Binding::Opaque) => None,
                None => self.scope.root(name).map(|root| (root, Vec::new())),
            },
            Expr::Select(select) if !select.test => {
                let (root, mut steps) = self.path(&select.operand)?;
                steps.push(Step::Field(select.field.clone()));
                Some((root, steps))
            }
            Expr::Call(call) => {
                let [operand, key] = constant_access(call)?;
                let (root, mut steps) = self.path(operand)?;
                steps.push(key_step(key)?);
                Some((root, steps))
            }
            _ => None,
        }
    }

    fn mark(&mut self, (root, steps): Path, usage: Usage) -> Result<(), ConditionError> {
        if root == Root::Headers
            && let Some(Step::Field(name)) = steps.first()
            && name.bytes().any(|b| b.is_ascii_uppercase())
        {
            return Err(ConditionError::UpperCaseHeader {
                given: name.clone(),
                lower: name.to_ascii_lowercase(),
            });
        }
        self.needs.root_mut(root).mark(&steps, usage);
        Ok(())
    }

    fn visit(&mut self, expr: &IdedExpr) -> Result<(), ConditionError> {
        if let Some(path) = self.path(expr) {
            return self.mark(path, Usage::Whole);
        }
        match &expr.expr {
            Expr::Unspecified | Expr::Literal(_) => Ok(()),
            Expr::Ident(name) => self.check_name(name, &[name.as_str()]),
            Expr::Select(select) => {
                if select.test
                    && let Some((root, mut steps)) = self.path(&select.operand)
                {
                    steps.push(Step::Field(select.field.clone()));
                    return self.mark((root, steps), Usage::Presence);
                }
                if !select.test
                    && let Some(segments) = qualified_name(expr)
                    && self.binding(segments[0]).is_none()
                {
                    // `google.protobuf.Timestamp`: a type name, or an undeclared variable.
                    return self.check_name(segments[0], &segments);
                }
                self.visit(&select.operand)
            }
            Expr::Call(call) => self.visit_call(call),
            Expr::Comprehension(comprehension) => self.visit_comprehension(comprehension),
            Expr::List(list) => list.elements.iter().try_for_each(|e| self.visit(e)),
            Expr::Map(map) => map
                .entries
                .iter()
                .try_for_each(|e| self.visit_entry(&e.expr)),
            Expr::Struct(s) => s.entries.iter().try_for_each(|e| self.visit_entry(&e.expr)),
        }
    }

    fn visit_entry(&mut self, entry: &EntryExpr) -> Result<(), ConditionError> {
        match entry {
            EntryExpr::StructField(field) => self.visit(&field.value),
            EntryExpr::MapEntry(entry) => {
                self.visit(&entry.key)?;
                self.visit(&entry.value)
            }
        }
    }

    /// An identifier (or qualified name, as `segments`) that is neither a declared nor a
    /// comprehension variable must name a type (`int`, `google.protobuf.Timestamp`).
    fn check_name(&self, root: &str, segments: &[&str]) -> Result<(), ConditionError> {
        if self.binding(root).is_some() || env().types().find_type(&segments.join(".")).is_some() {
            return Ok(());
        }
        Err(ConditionError::UndeclaredVariable {
            name: root.to_owned(),
            declared: self.scope.declared(),
        })
    }

    fn visit_call(&mut self, call: &CallExpr) -> Result<(), ConditionError> {
        // `size(x)` and `x.size()` read only how many members or elements `x` has.
        if call.func_name == "size" {
            let operand = match (&call.target, call.args.as_slice()) {
                (Some(target), []) => Some(target.as_ref()),
                (None, [arg]) => Some(arg),
                _ => None,
            };
            if let Some(path) = operand.and_then(|e| self.path(e)) {
                return self.mark(path, Usage::Shape);
            }
        }
        // `"key" in x` on a map only tests whether the member exists (on a list, the field
        // need makes the converters keep the whole list).
        if call.func_name == IN
            && call.target.is_none()
            && let [key, container] = call.args.as_slice()
            && let Expr::Literal(LiteralValue::String(name)) = &key.expr
            && let Some((root, mut steps)) = self.path(container)
        {
            steps.push(Step::Field(name.inner().to_owned()));
            return self.mark((root, steps), Usage::Presence);
        }
        if let Some(target) = &call.target {
            // `optional.of(x)`: `optional` is a function namespace, not a variable.
            let namespaced = qualified_name(target).is_some_and(|segments| {
                self.binding(segments[0]).is_none()
                    && self.scope.root(segments[0]).is_none()
                    && is_declared_function(&format!("{}.{}", segments.join("."), call.func_name))
            });
            if namespaced {
                return call.args.iter().try_for_each(|arg| self.visit(arg));
            }
            self.visit(target)?;
        }
        // Operators (`_==_`, `@in`...) are not identifiers and are always defined.
        let is_identifier = call
            .func_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if is_identifier && !is_declared_function(&call.func_name) {
            return Err(ConditionError::UndeclaredFunction {
                name: call.func_name.clone(),
            });
        }
        call.args.iter().try_for_each(|arg| self.visit(arg))
    }

    fn visit_comprehension(&mut self, c: &ComprehensionExpr) -> Result<(), ConditionError> {
        // Iterating reads every member (or element); what the loop reads of each is recorded
        // under `Each` through the variable bound to the elements.
        let elements = match self.path(&c.iter_range) {
            // One variable: the element of a list, the key of a map.
            Some((root, mut steps)) if c.iter_var2.is_none() => {
                self.mark((root, steps.clone()), Usage::Shape)?;
                steps.push(Step::Each);
                Binding::Path((root, steps))
            }
            // No macro of this CEL version makes two-variable comprehensions: read the range
            // whole rather than guess what each variable stands for.
            _ => {
                self.visit(&c.iter_range)?;
                Binding::Opaque
            }
        };
        self.visit(&c.accu_init)?;
        let outer = self.bound.len();
        self.bound.push((c.iter_var.clone(), elements));
        if let Some(second) = &c.iter_var2 {
            self.bound.push((second.clone(), Binding::Opaque));
        }
        self.bound.push((c.accu_var.clone(), Binding::Opaque));
        let looped = self
            .visit(&c.loop_cond)
            .and_then(|()| self.visit(&c.loop_step));
        self.bound.truncate(outer);
        looped?;
        self.bound.push((c.accu_var.clone(), Binding::Opaque));
        let result = self.visit(&c.result);
        self.bound.truncate(outer);
        result
    }
}

/// `x[k]`, `x.?f` or `x[?k]` with a constant key: the operand and the key.
fn constant_access(call: &CallExpr) -> Option<[&IdedExpr; 2]> {
    let is_access = [INDEX, OPT_INDEX, OPT_SELECT].contains(&call.func_name.as_str());
    match (is_access, &call.target, call.args.as_slice()) {
        (true, None, [operand, key]) if matches!(key.expr, Expr::Literal(_)) => {
            Some([operand, key])
        }
        _ => None,
    }
}

/// The step a constant key takes: a string selects a member, an integer an element. Other
/// constants (doubles, booleans...) are not followed: the operand is then read whole.
fn key_step(key: &IdedExpr) -> Option<Step> {
    match &key.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(Step::Field(s.inner().to_owned())),
        Expr::Literal(LiteralValue::Int(i)) => Some(Step::Index(*i.inner())),
        Expr::Literal(LiteralValue::UInt(u)) => i64::try_from(*u.inner()).ok().map(Step::Index),
        _ => None,
    }
}

/// The segments of `a.b.c` (an identifier with field selections), root first.
fn qualified_name(expr: &IdedExpr) -> Option<Vec<&str>> {
    match &expr.expr {
        Expr::Ident(name) => Some(vec![name.as_str()]),
        Expr::Select(select) if !select.test => {
            let mut segments = qualified_name(&select.operand)?;
            segments.push(select.field.as_str());
            Some(segments)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::needs::{ALL, PRESENT};

    fn needs(source: &str) -> Needs {
        let program = env().compile(source).unwrap();
        analyze(program.expression(), Scope::Rule).unwrap()
    }

    fn fields<const N: usize>(members: [(&str, Need); N]) -> Need {
        Need {
            fields: members.map(|(k, v)| (k.to_owned(), v)).into(),
            ..Need::default()
        }
    }

    #[test]
    fn selections_need_only_their_leaves() {
        let n = needs(
            r#"event.ref == "refs/heads/main" && event.repository.full_name.startsWith("octo")"#,
        );
        let expected = fields([
            ("ref", ALL.clone()),
            ("repository", fields([("full_name", ALL.clone())])),
        ]);
        assert_eq!(n.event, Some(expected));
        assert_eq!(n.headers, None);
        assert_eq!(
            needs(r#"headers["x-github-event"] == "push""#).headers,
            Some(fields([("x-github-event", ALL.clone())]))
        );
    }

    #[test]
    fn presence_tests_and_sizes_do_not_read_values() {
        let n = needs("has(event.pull_request.merged_at) && 'bug' in event.labels").event;
        let expected = fields([
            ("pull_request", fields([("merged_at", PRESENT.clone())])),
            ("labels", fields([("bug", PRESENT.clone())])),
        ]);
        assert_eq!(n, Some(expected));
        let size = needs("event.commits.size() > 0").event.unwrap();
        assert!(size.fields["commits"].shape && !size.fields["commits"].all);
    }

    #[test]
    fn comprehensions_read_each_element_through_their_variable() {
        let n = needs("event.alerts.exists(a, a.labels.severity == 'critical')").event;
        let each = fields([("labels", fields([("severity", ALL.clone())]))]);
        let alerts = Need {
            shape: true,
            each: Some(Box::new(each)),
            ..Need::default()
        };
        assert_eq!(n, Some(fields([("alerts", alerts)])));
        // `filter` appends the element itself to its result: each element is read whole.
        let n = needs("event.alerts.filter(a, a.firing).size() > 0")
            .event
            .unwrap();
        assert_eq!(n.fields["alerts"].each.as_deref(), Some(&ALL));
    }

    #[test]
    fn whole_uses_computed_keys_and_shadowing_read_everything_below() {
        assert_eq!(needs("size(event) > 3").event.map(|n| n.shape), Some(true));
        assert_eq!(needs("event == {}").event, Some(ALL.clone()));
        assert_eq!(
            needs("event.labels[event.key]").event,
            Some(fields([("labels", ALL.clone()), ("key", ALL.clone())]))
        );
        // Inside the comprehension `event` is the element, not the payload.
        assert_eq!(needs("[1, 2].exists(event, event > 1)").event, None);
    }
}
