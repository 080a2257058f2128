//! Structural limits on an expression, checked before anything recursive touches it.
//!
//! The parser, the analysis and the interpreter all recurse over the syntax tree, so an
//! expression must be shallow enough for a thread's stack whatever its shape. Three checks, in
//! order, make sure of it:
//!
//! 1. [`check_source`], before parsing: at most [`MAX_LEN`] bytes and [`MAX_NESTING`] levels of
//!    brackets (`(`, `[`, `{`) and conditionals (`?`), found by a lexical scan that skips string
//!    literals and comments. Within those bounds the parser is safe for every shape (the property
//!    tests in `tests.rs` generate them all).
//! 2. The parser itself.
//! 3. [`check_depth`], on the parsed tree without recursion: at most [`MAX_DEPTH`] levels, which
//!    is what bounds chains (`a + a + ...`, `x.f().f()...`) that nest the tree without brackets.
//!    Every later walk (analysis, cost estimate, evaluation) then recurses at most that deep.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};

use super::error::ConditionError;

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting of brackets and conditionals accepted.
pub const MAX_NESTING: usize = 32;
/// Deepest syntax tree accepted: a chain of `n` operators is `n` levels deep.
pub const MAX_DEPTH: usize = 100;

/// Refuses an expression that is too long or nests brackets too deeply, without parsing it.
pub(crate) fn check_source(source: &str) -> Result<(), ConditionError> {
    if source.len() > MAX_LEN {
        return Err(ConditionError::TooLong {
            len: source.len(),
            max: MAX_LEN,
        });
    }
    let nesting = nesting(source);
    if nesting > MAX_NESTING {
        return Err(ConditionError::TooDeep {
            what: "brackets and conditionals nest",
            depth: nesting,
            max: MAX_NESTING,
        });
    }
    Ok(())
}

/// The deepest nesting of brackets, where each `?` also opens a level until its group closes
/// (conditionals chain to the right: `a ? b : c ? d : e` nests).
fn nesting(source: &str) -> usize {
    let bytes = source.as_bytes();
    // Per open group: the nesting depth outside it.
    let mut groups: Vec<usize> = Vec::new();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => {
                groups.push(depth);
                depth += 1;
            }
            b')' | b']' | b'}' => depth = groups.pop().unwrap_or(0),
            b'?' => depth += 1,
            _ => {}
        }
        deepest = deepest.max(depth);
        i += 1;
    }
    deepest
}

/// The index just past the string literal whose opening quote is at `start`. A prefix (`r`,
/// `b`) was already scanned as an identifier; a raw string is only scanned as if escapes
/// counted, which can end it later but never earlier than the parser would.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let triple = bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => {
                if !triple {
                    return i + 1;
                }
                if bytes.get(i + 1) == Some(&quote) && bytes.get(i + 2) == Some(&quote) {
                    return i + 3;
                }
                i += 1;
            }
            b'\n' if !triple => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Refuses a parsed expression whose tree is deeper than [`MAX_DEPTH`]. Walks with an explicit
/// stack, so it is itself safe on any tree the parser returns.
pub(crate) fn check_depth(expr: &IdedExpr) -> Result<(), ConditionError> {
    let depth = depth(expr);
    if depth > MAX_DEPTH {
        return Err(ConditionError::TooDeep {
            what: "the syntax tree is",
            depth,
            max: MAX_DEPTH,
        });
    }
    Ok(())
}

/// The number of levels of the tree (a literal alone is 1).
pub(crate) fn depth(expr: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((expr, level)) = stack.pop() {
        deepest = deepest.max(level);
        stack.extend(children(expr).into_iter().map(|child| (child, level + 1)));
    }
    deepest
}

/// The direct subexpressions of `expr`.
pub(crate) fn children(expr: &IdedExpr) -> Vec<&IdedExpr> {
    fn entry(entry: &EntryExpr) -> Vec<&IdedExpr> {
        match entry {
            EntryExpr::StructField(field) => vec![&field.value],
            EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
        }
    }
    match &expr.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => Vec::new(),
        Expr::Select(select) => vec![&select.operand],
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map.entries.iter().flat_map(|e| entry(&e.expr)).collect(),
        Expr::Struct(s) => s.entries.iter().flat_map(|e| entry(&e.expr)).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_brackets_and_conditionals_but_not_strings_or_comments() {
        assert_eq!(nesting("event.a == 1"), 0);
        assert_eq!(nesting("f([{'a': (1)}])"), 4);
        assert_eq!(nesting("a ? b : c ? d : e"), 2);
        assert_eq!(nesting("(a ? b : c) && (d)"), 2);
        assert_eq!(nesting(r#""((((" + '[[[' + """{{{ " ' """"#), 0);
        assert_eq!(nesting(r#""\"((((" == x"#), 0);
        assert_eq!(nesting("x // (((((\n && (y)"), 1);
        assert_eq!(nesting(")))) (("), 2, "stray closers do not underflow");
    }

    #[test]
    fn long_and_deeply_bracketed_sources_are_refused_before_parsing() {
        let long = format!("{} == 1", "1+".repeat(MAX_LEN));
        assert!(matches!(
            check_source(&long),
            Err(ConditionError::TooLong { max: MAX_LEN, .. })
        ));
        let deep = format!(
            "{}1{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        let error = check_source(&deep).unwrap_err().to_string();
        assert!(error.contains("33") && error.contains("32"), "{error}");
        let fine = format!("{}1{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert_eq!(check_source(&fine), Ok(()));
    }

    #[test]
    fn depth_measures_chains_that_brackets_do_not_show() {
        let env = super::super::scope::env();
        let tree = |s: &str| depth(env.compile(s).unwrap().expression());
        assert_eq!(tree("1"), 1);
        assert_eq!(tree("1 + 1"), 2);
        assert!(tree(&format!("{}1", "1 + ".repeat(150))) > MAX_DEPTH);
        let chained = env
            .compile(&format!("'a'{}", ".lowerAscii()".repeat(MAX_DEPTH + 5)))
            .unwrap();
        assert!(matches!(
            check_depth(chained.expression()),
            Err(ConditionError::TooDeep { max: MAX_DEPTH, .. })
        ));
    }
}
