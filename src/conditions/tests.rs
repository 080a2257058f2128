//! Behaviour of the public API, and the equivalence of pruned and full conversion.

use serde_json::json;

use super::analyze::Needs;
use super::expression::{Allowance, Bindings};
use super::needs::ALL;
use super::*;

/// A trimmed GitHub push delivery, in the shape of octokit's `push` example payload.
fn push() -> serde_json::Value {
    json!({
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "0000000000000000000000000000000000000000",
        "created": false,
        "deleted": true,
        "forced": false,
        "compare": "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...000000000000",
        "commits": [
            {"id": "a1", "message": "fix: null deref", "distinct": true,
             "author": {"name": "Codertocat", "username": "Codertocat"}, "added": [], "modified": ["README.md"]},
            {"id": "b2", "message": "docs: \"quoted\" caf\u{e9}", "distinct": false,
             "author": {"name": "Monalisa", "username": "octocat"}, "added": ["a.rs"], "modified": []}
        ],
        "head_commit": null,
        "repository": {
            "id": 186853002,
            "full_name": "Codertocat/Hello-World",
            "private": false,
            "owner": {"login": "Codertocat", "id": 21031067, "site_admin": false},
            "stargazers_count": 0,
            "size": 0,
            "topics": ["rust", "webhooks"],
            "default_branch": "main"
        },
        "pusher": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
        "sender": {"login": "Codertocat", "id": 21031067, "type": "User"}
    })
}

fn evaluate(conditions: &[&str], payload: &serde_json::Value) -> Vec<ConditionResult> {
    let bytes = serde_json::to_vec(payload).unwrap();
    RuleProgram::compile(conditions, None)
        .unwrap()
        .evaluate(
            Json::Bytes(&bytes),
            [("X-GitHub-Event", "push")],
            Budget::default(),
        )
        .conditions
}

fn compile_error(conditions: &[&str]) -> String {
    RuleProgram::compile(conditions, None)
        .unwrap_err()
        .to_string()
}

use ConditionResult::{False, True};

fn error(message: &str) -> ConditionResult {
    ConditionResult::Error(message.to_owned())
}

#[test]
fn syntax_errors_name_the_condition_and_the_position() {
    let message = compile_error(&["true", "event.ref =="]);
    assert!(
        message.starts_with("conditions[1]: Syntax error: mismatched input '<EOF>'"),
        "{message}"
    );
    assert!(message.ends_with("(line 1, column 13)"), "{message}");
    let key = RuleProgram::compile(&["true"], Some("event.(")).unwrap_err();
    assert!(
        key.to_string().starts_with("throttle_key: Syntax error: "),
        "{key}"
    );
}

#[test]
fn undeclared_variables_and_functions_are_compile_errors() {
    assert_eq!(
        compile_error(&["evnt.ref == 'x'"]),
        "conditions[0]: undeclared reference to 'evnt' (declared variables: event, headers)"
    );
    assert_eq!(
        compile_error(&["event.commits.exists(c, c.id == id)"]),
        "conditions[0]: undeclared reference to 'id' (declared variables: event, headers)"
    );
    assert_eq!(
        compile_error(&["lower(event.ref) == 'x'"]),
        "conditions[0]: undeclared function 'lower'"
    );
    assert_eq!(
        compile_error(&["event.ref.lower() == 'x'"]),
        "conditions[0]: undeclared function 'lower'"
    );
    // Outbound filters have no `headers`.
    assert_eq!(
        OutboundFilter::compile("headers['x'] == 'y'")
            .unwrap_err()
            .to_string(),
        "filter: undeclared reference to 'headers' (declared variables: event)"
    );
}

#[test]
fn names_that_are_not_variables_compile() {
    for source in [
        "type(event.ref) == string",
        "type(event.repository.id) == int",
        "optional.of(event.ref).hasValue()",
        "event.?missing.orValue('main') == 'main'",
        "event.ref.lowerAscii().split('/').size() == 3",
        // a comprehension variable may shadow a declared one
        "event.commits.exists(event, event.id == 'a1')",
    ] {
        assert_eq!(evaluate(&[source], &push()), [True], "{source}");
    }
}

#[test]
fn upper_case_header_names_are_rejected() {
    assert_eq!(
        compile_error(&["headers['X-GitHub-Event'] == 'push'"]),
        "conditions[0]: header names are lower-case: write \"x-github-event\" instead of \
         \"X-GitHub-Event\""
    );
}

#[test]
fn conditions_yield_true_false_or_an_error() {
    assert_eq!(
        evaluate(
            &[
                "event.ref == 'refs/heads/main'",
                "event.deleted == false",
                "event.ref"
            ],
            &push()
        ),
        [
            True,
            False,
            error("condition evaluated to string, expected bool")
        ]
    );
    assert_eq!(
        evaluate(&["event.repository.id", "event.head_commit"], &push()),
        [
            error("condition evaluated to int, expected bool"),
            error("condition evaluated to null_type, expected bool")
        ]
    );
}

#[test]
fn a_missing_field_is_an_error_unless_guarded_by_has() {
    assert_eq!(
        evaluate(
            &[
                "event.action == 'opened'",
                "has(event.action) && event.action == 'opened'",
                "!has(event.action) || event.action == 'opened'",
                "has(event.repository.owner.login)",
                "has(event.repository.owner.email)",
            ],
            &push()
        ),
        [error("No such key: action"), False, True, True, False]
    );
}

#[test]
fn json_integers_compare_as_int() {
    let payload = json!({"count": 7, "negative": -3, "ratio": 0.5, "huge": u64::MAX});
    assert_eq!(
        evaluate(
            &[
                "event.count > 5",
                "event.count == 7",
                "event.count + 1 == 8",
                "type(event.count) == int",
                "event.negative < 0",
                "event.ratio < 1",
                "type(event.huge) == uint",
                "event.count * 2 == 14 && event.count % 2 == 1",
            ],
            &payload
        ),
        vec![True; 8]
    );
}

#[test]
fn string_functions() {
    assert_eq!(
        evaluate(
            &[
                "event.repository.full_name.startsWith('Codertocat/')",
                "event.repository.full_name.endsWith('World')",
                "event.commits[0].message.contains('null')",
                "event.ref.matches('^refs/heads/(main|master)$')",
                "event.repository.full_name.startsWith('octo')",
                "event.ref.lowerAscii().contains('HEADS')",
            ],
            &push()
        ),
        [True, True, True, True, False, False]
    );
    let invalid_regex = &evaluate(&["event.ref.matches('[')"], &push())[0];
    assert!(
        matches!(invalid_regex, ConditionResult::Error(m) if m.contains("matches")),
        "{invalid_regex:?}"
    );
}

#[test]
fn in_on_lists_and_maps() {
    assert_eq!(
        evaluate(
            &[
                "'rust' in event.repository.topics",
                "'go' in event.repository.topics",
                "event.sender.type in ['User', 'Bot']",
                "'owner' in event.repository",
                "event.commits.exists(c, 'README.md' in c.modified)",
            ],
            &push()
        ),
        [True, False, True, True, True]
    );
}

#[test]
fn headers_are_bound_by_lower_case_name() {
    let rule = RuleProgram::compile(
        &[
            "headers['x-github-event'] == 'push'",
            "headers.accept == '*/*'",
            "'x-github-delivery' in headers",
            "has(headers.authorization)",
            "headers['x-missing'] == 'a'",
        ],
        None,
    )
    .unwrap();
    let result = rule.evaluate(
        Json::Bytes(b"{}"),
        [
            ("X-GitHub-Event", "push"),
            ("Accept", "*/*"),
            ("x-github-delivery", "72d3162e"),
        ],
        Budget::default(),
    );
    assert_eq!(
        result.conditions,
        [True, True, True, False, error("No such key: x-missing")]
    );
}

#[test]
fn throttle_keys_render_the_value() {
    let alert =
        json!({"commonLabels": {"alertname": "HighCPU", "severity": "page"}, "groupKey": 42});
    let bytes = serde_json::to_vec(&alert).unwrap();
    let key = |source: &str| {
        RuleProgram::compile(&["true"], Some(source))
            .unwrap()
            .evaluate(Json::Bytes(&bytes), [], Budget::default())
            .throttle_key
    };
    let k = |s: &str| Some(ThrottleKey::Key(s.to_owned()));
    assert_eq!(key("event.commonLabels.alertname"), k("HighCPU"));
    assert_eq!(key("event.groupKey"), k("42"));
    assert_eq!(
        key("[event.commonLabels.alertname, event.groupKey]"),
        k(r#"["HighCPU",42]"#)
    );
    assert_eq!(
        key("event.commonLabels"),
        k(r#"{"alertname":"HighCPU","severity":"page"}"#)
    );
    assert_eq!(
        key("event.commonLabels.instance"),
        Some(ThrottleKey::Error("No such key: instance".to_owned()))
    );
    // No key when the event does not match.
    let unmatched = RuleProgram::compile(&["false"], Some("event.groupKey"))
        .unwrap()
        .evaluate(Json::Bytes(&bytes), [], Budget::default());
    assert!(!unmatched.matched());
    assert_eq!(unmatched.throttle_key, None);
}

#[test]
fn no_conditions_always_match() {
    let rule = RuleProgram::compile::<&str>(&[], None).unwrap();
    let result = rule.evaluate(Json::Bytes(b"not json"), [], Budget::default());
    assert!(result.matched());
    assert!(result.conditions.is_empty());
}

#[test]
fn a_payload_that_is_not_json_fails_only_the_conditions_reading_it() {
    let rule = RuleProgram::compile(&["headers['x-a'] == 'b'", "event.a == 1"], None).unwrap();
    let result = rule.evaluate(Json::Bytes(b"a=1&b=2"), [("x-a", "b")], Budget::default());
    assert_eq!(result.conditions[0], True);
    assert!(
        matches!(&result.conditions[1], ConditionResult::Error(m) if m.starts_with("payload is not valid JSON: expected value at line 1 column 1")),
        "{:?}",
        result.conditions[1]
    );
    assert!(!result.matched());
}

#[test]
fn outbound_filters_read_the_envelope() {
    let envelope = json!({
        "event": "job.succeeded", "delivery_id": "d-1", "organization_id": 1,
        "resource_type": "job", "resource_id": 7,
        "payload": {"elapsed": 601.25, "status": "successful"},
        "occurred_at": "2025-01-01T00:00:00Z"
    });
    let bytes = serde_json::to_vec(&envelope).unwrap();
    let matches = |source: &str| {
        OutboundFilter::compile(source)
            .unwrap()
            .matches(Json::Bytes(&bytes), Budget::default())
    };
    assert_eq!(matches("event.payload.elapsed > 600"), Ok(true));
    assert_eq!(matches("event.resource_id == 7"), Ok(true));
    assert_eq!(matches("event.event.startsWith('workflow.')"), Ok(false));
    assert_eq!(
        matches("event.payload.status"),
        Err(ConditionError::UnexpectedType {
            what: "filter",
            found: "string".to_owned(),
            expected: "bool"
        })
    );
    assert_eq!(
        matches("event.payload.missing > 1"),
        Err(ConditionError::Evaluation(
            "No such key: missing".to_owned()
        ))
    );
    // The same filter on a parsed envelope.
    let filter = OutboundFilter::compile("event.payload.elapsed > 600").unwrap();
    assert_eq!(
        filter.matches(Json::Value(&envelope), Budget::default()),
        Ok(true)
    );
}

#[test]
fn compiled_programs_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<RuleProgram>();
    shareable::<OutboundFilter>();
    shareable::<Expression>();
}

/// Payloads exercising every shape: nested objects, lists, escapes, numbers of each kind, a
/// repeated key, members of unexpected types, documents that are not objects.
fn equivalence_payloads() -> Vec<Vec<u8>> {
    let mut payloads = vec![
        serde_json::to_vec(&push()).unwrap(),
        br#"{"ref": 5, "commits": {"id": "x"}, "repository": "flat", "a\"b": 1, "esc\u00e9": "\u00e9\n"}"#
            .to_vec(),
        br#"{"ref": "refs/heads/main", "ref": "refs/heads/dev", "commits": [], "m": {}, "n": null}"#
            .to_vec(),
        br#"{"commits": [1, "two", null, {"id": "a1"}, [5]], "repository": {"topics": {"rust": 1}}}"#
            .to_vec(),
        br#"[{"id": 1}, {"id": 2}]"#.to_vec(),
        br#""refs/heads/main""#.to_vec(),
        b"42".to_vec(),
        b"null".to_vec(),
        br#"{"big": 18446744073709551615, "neg": -1, "f": 1e3, "x": {"y": {"z": [0, 1, 2]}}}"#
            .to_vec(),
    ];
    payloads.push(b"{}".to_vec());
    payloads
}

const EQUIVALENCE_EXPRESSIONS: &[&str] = &[
    "event",
    "event.ref",
    "event.ref == 'refs/heads/main'",
    "event.repository.full_name",
    "event.repository.owner",
    "event.repository.full_name.startsWith('Code')",
    "has(event.ref)",
    "has(event.repository.owner)",
    "has(event.repository.owner.login)",
    "has(event.repository.nope.login)",
    "has(event.ref.x)",
    "has(event.commits.id)",
    "'rust' in event.repository.topics",
    "'owner' in event.repository",
    "'id' in event.commits",
    "size(event)",
    "event.size()",
    "size(event.commits)",
    "event.commits.size() > 1",
    "size(event.ref)",
    "event.commits[0]",
    "event.commits[0].id",
    "event.commits[1].author.username",
    "event.commits[3].id",
    "event.commits[9]",
    "event.commits[-1]",
    "event.commits[0u].id",
    "event.commits[size(event.commits) - 1].id",
    "event.commits.id",
    "event.commits.exists(c, c.id == 'a1')",
    "event.commits.all(c, c.distinct)",
    "event.commits.exists_one(c, has(c.author))",
    "event.commits.map(c, c.author)",
    "event.commits.map(c, c.author.name)[1]",
    "event.commits.filter(c, c.distinct)",
    "event.commits.filter(c, c.distinct).size()",
    "event.commits.map(c, c.modified.size())",
    "event.commits.exists(c, c.modified.exists(f, f.endsWith('.md')))",
    "event.commits.exists(event, event.id == 'a1')",
    "event.repository.exists(k, k == 'owner')",
    "event.repository.all(k, event.repository[k] != null)",
    "event.x.y.z[2] == 2",
    "event.x.y.z.size()",
    "event.big > 1",
    "event.neg < 0 && event.f == 1000.0",
    "type(event.big)",
    "event['a\"b']",
    "event['esc\u{e9}']",
    "event.m == {}",
    "event.n == null",
    "event.?ref.orValue('none')",
    "event.?repository.?owner.?login.orValue('none')",
    "event[?'commits'].hasValue()",
    "event == {'ref': 'refs/heads/main'}",
    "string(event.ref)",
    "event.ref + event.ref",
    "event[0]",
    "event[0].id",
    "event[1]",
    "event.repository.topics.rust",
    "dyn(event).ref",
    "[event.ref, event.repository.id]",
    "{'k': event.repository.owner}",
    "event.repository.owner.login == event.sender.login",
    "headers['x-github-event'] == 'push'",
    "headers",
    "size(headers)",
    "'accept' in headers",
    "headers.exists(h, h.startsWith('x-'))",
];

/// Evaluates `source` on `payload` and the headers with the conversion driven by `needs`.
fn evaluate_under(
    expression: &Expression,
    needs: &Needs,
    payload: Json<'_>,
) -> Result<cel::Value, ConditionError> {
    let headers = [("X-GitHub-Event", "push"), ("Accept", "*/*")];
    Bindings::new(needs, payload, headers)
        .evaluate(expression, &mut Allowance::new(Budget::default()))
}

#[test]
fn pruned_evaluation_equals_full_evaluation() {
    let everything = Needs {
        event: Some(ALL.clone()),
        headers: Some(ALL.clone()),
    };
    let expressions = EQUIVALENCE_EXPRESSIONS
        .iter()
        .map(|s| Expression::compile(s, Scope::Rule).unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect::<Vec<_>>();
    // All the expressions at once, as a rule with many conditions converts them.
    let mut union = Needs::default();
    for expression in &expressions {
        union.merge(expression.needs());
    }
    union.normalize();
    let mut compared = 0;
    for bytes in equivalence_payloads() {
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for expression in &expressions {
            let reference = evaluate_under(expression, &everything, Json::Bytes(&bytes));
            let parsed = Json::Value(&value);
            for (how, needs, payload) in [
                ("pruned bytes", expression.needs(), Json::Bytes(&bytes)),
                ("pruned value", expression.needs(), parsed),
                ("full value", &everything, parsed),
                ("union bytes", &union, Json::Bytes(&bytes)),
            ] {
                assert_eq!(
                    evaluate_under(expression, needs, payload),
                    reference,
                    "{how}: `{}` on {}",
                    expression.source(),
                    String::from_utf8_lossy(&bytes)
                );
                compared += 1;
            }
        }
    }
    assert_eq!(
        compared,
        4 * EQUIVALENCE_EXPRESSIONS.len() * equivalence_payloads().len()
    );
}

#[test]
fn rules_agree_with_their_unpruned_evaluation() {
    let rule = RuleProgram::compile(
        &[
            "event.ref == 'refs/heads/main'",
            "event.repository.full_name.startsWith('Code')",
            "headers['x-github-event'] == 'push'",
            "event.commits.exists(c, c.author.username == 'octocat')",
        ],
        Some("[event.repository.full_name, event.commits.size()]"),
    )
    .unwrap();
    for bytes in equivalence_payloads() {
        let headers = [("X-GitHub-Event", "push")];
        let pruned = rule.evaluate(Json::Bytes(&bytes), headers, Budget::default());
        assert_eq!(pruned, rule.evaluate_unpruned(Json::Bytes(&bytes), headers));
    }
    let push = serde_json::to_vec(&push()).unwrap();
    let result = rule.evaluate(
        Json::Bytes(&push),
        [("X-GitHub-Event", "push")],
        Budget::default(),
    );
    assert!(result.matched(), "{result:?}");
    assert_eq!(
        result.throttle_key,
        Some(ThrottleKey::Key(
            r#"["Codertocat/Hello-World",2]"#.to_owned()
        ))
    );
}

#[test]
fn only_what_is_read_is_converted() {
    let expression = Expression::compile(
        "event.repository.full_name.startsWith('Code') && event.commits.exists(c, c.distinct) \
         && event.commits[1].author.username == 'octocat'",
        Scope::Rule,
    )
    .unwrap();
    let bytes = serde_json::to_vec(&push()).unwrap();
    let event = Expression::compile("event", Scope::Rule).unwrap();
    let needs = expression.needs().clone();
    let converted = evaluate_under(&event, &needs, Json::Bytes(&bytes)).unwrap();
    let expected = json!({
        "repository": {"full_name": "Codertocat/Hello-World"},
        "commits": [{"distinct": true}, {"distinct": false, "author": {"username": "octocat"}}]
    });
    let expected_bytes = serde_json::to_vec(&expected).unwrap();
    let everything = Needs {
        event: Some(ALL.clone()),
        headers: None,
    };
    assert_eq!(
        converted,
        evaluate_under(&event, &everything, Json::Bytes(&expected_bytes)).unwrap()
    );
}

/// Generated expressions of every shape that nests the syntax tree, up to (and past) the size
/// limit: each is either refused with a limit or syntax error, or compiles and evaluates within
/// its budget. A stack overflow would abort the test binary, so "no crash" is the assertion
/// that matters; the thread has the 2 MiB stack of a tokio worker.
mod hostile_shapes {
    use super::*;
    use crate::conditions::limits::{MAX_DEPTH, MAX_LEN, depth};
    use proptest::prelude::*;

    /// One shape, repeated `n` times around `inner`.
    #[derive(Debug, Clone, Copy)]
    enum Shape {
        Chain(&'static str),
        Unary(&'static str),
        Call,
        Member,
        Macro(&'static str),
        List,
        Map,
        Index,
        Ternary,
        Parens,
    }

    fn wrap(shape: Shape, n: usize, inner: &str) -> String {
        match shape {
            Shape::Chain(op) => format!("{inner}{}", format!(" {op} {inner}").repeat(n)),
            Shape::Unary(op) => format!("{}{inner}", op.repeat(n)),
            Shape::Call => format!("{}{inner}{}", "int(".repeat(n), ")".repeat(n)),
            Shape::Member => format!("({inner}){}", ".size()".repeat(n)),
            Shape::Macro(m) => format!(
                "{}{inner}{}",
                format!("[1, 2].{m}(x, ").repeat(n),
                ")".repeat(n)
            ),
            Shape::List => format!("{}{inner}{}", "[".repeat(n), "]".repeat(n)),
            Shape::Map => format!("{}{inner}{}", "{'k': ".repeat(n), "}".repeat(n)),
            Shape::Index => format!("{}{inner}{}", "[[1]][".repeat(n), "]".repeat(n)),
            Shape::Ternary => format!("{}{inner}", "true ? 1 : ".repeat(n)),
            Shape::Parens => format!("{}{inner}{}", "(".repeat(n), ")".repeat(n)),
        }
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::Chain("+")),
            Just(Shape::Chain("&&")),
            Just(Shape::Chain("||")),
            Just(Shape::Chain("==")),
            Just(Shape::Chain("<")),
            Just(Shape::Chain("*")),
            Just(Shape::Chain("in")),
            Just(Shape::Unary("!")),
            Just(Shape::Unary("-")),
            Just(Shape::Call),
            Just(Shape::Member),
            Just(Shape::Macro("all")),
            Just(Shape::Macro("exists")),
            Just(Shape::Macro("map")),
            Just(Shape::Macro("filter")),
            Just(Shape::List),
            Just(Shape::Map),
            Just(Shape::Index),
            Just(Shape::Ternary),
            Just(Shape::Parens),
        ]
    }

    /// An expression of up to three nested shapes, each repeated up to what fits the limit.
    fn expression() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("1".to_owned()),
            Just("true".to_owned()),
            Just("event.a".to_owned()),
            Just("'s'".to_owned()),
        ];
        (
            leaf,
            proptest::collection::vec((shape(), 1usize..=2100), 1..=3),
        )
            .prop_map(|(leaf, layers)| {
                layers.into_iter().fold(leaf, |inner, (shape, n)| {
                    // Keep the source within twice the limit, so large repeats stay cheap to build.
                    let per = wrap(shape, 1, &inner)
                        .len()
                        .saturating_sub(inner.len())
                        .max(1);
                    let n = n.min(2 * MAX_LEN / per + 1);
                    wrap(shape, n, &inner)
                })
            })
    }

    fn check(source: String) -> Result<(), TestCaseError> {
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let compiled = RuleProgram::compile(&[source.as_str()], Some(source.as_str()));
                match compiled {
                    Err(e) => Err(e.to_string()),
                    Ok(rule) => {
                        let tree = depth(rule.conditions()[0].program_expression());
                        assert!(source.len() <= MAX_LEN && tree <= MAX_DEPTH);
                        let evaluated = rule.evaluate(
                            Json::Bytes(br#"{"a": 1}"#),
                            [("x", "y")],
                            Budget::default(),
                        );
                        Ok(evaluated.conditions.len())
                    }
                }
            })
            .expect("thread starts")
            .join()
            .expect("compiling and evaluating never panics");
        if let Err(message) = outcome {
            let known = ["levels deep", "bytes long", "Syntax error", "undeclared"];
            prop_assert!(
                known.iter().any(|k| message.contains(k)),
                "unexpected refusal: {message}"
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]
        #[test]
        fn no_expression_overflows_a_stack(source in expression()) {
            check(source)?;
        }
    }

    #[test]
    fn every_shape_at_the_size_limit_is_refused_or_safe() {
        let shapes = [
            Shape::Chain("+"),
            Shape::Chain("&&"),
            Shape::Unary("!"),
            Shape::Unary("-"),
            Shape::Call,
            Shape::Member,
            Shape::Macro("all"),
            Shape::List,
            Shape::Map,
            Shape::Index,
            Shape::Ternary,
            Shape::Parens,
        ];
        for shape in shapes {
            let per = wrap(shape, 1, "1").len() - 1;
            for n in [
                MAX_DEPTH - 2,
                MAX_DEPTH + 2,
                MAX_LEN / per - 1,
                MAX_LEN / per + 1,
            ] {
                check(wrap(shape, n, "1")).unwrap();
            }
        }
    }

    #[test]
    fn the_issue_expressions_are_refused_with_the_limit() {
        let chain = format!("{}1 == 1", "1+".repeat(1999));
        let error = compile_error(&[chain.as_str()]);
        assert!(
            error.starts_with("conditions[0]: the syntax tree is"),
            "{error}"
        );
        assert!(error.contains("the limit is 100"), "{error}");
        let long = format!("{}1 == 1", "1 + ".repeat(5000));
        assert!(compile_error(&[long.as_str()]).contains("the limit is 4096"));
        let filter = format!("{}1 == 1", "1+".repeat(2000));
        let error = OutboundFilter::compile(&filter).unwrap_err().to_string();
        assert!(error.starts_with("filter: the syntax tree is"), "{error}");
    }

    #[test]
    fn nested_loops_are_refused_by_the_budget_at_evaluation() {
        let ten = "[1,2,3,4,5,6,7,8,9,10]";
        let nested = (0..8).fold("true".to_owned(), |s, i| format!("{ten}.all(v{i}, {s})"));
        let rule = RuleProgram::compile(&[nested.as_str()], None).unwrap();
        let started = std::time::Instant::now();
        let result = rule.evaluate(Json::Bytes(b"{}"), [], Budget::default());
        let [ConditionResult::Error(message)] = result.conditions.as_slice() else {
            panic!("{result:?}");
        };
        assert!(
            message.starts_with("evaluation budget exceeded"),
            "{message}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let strings = (0..7).fold("'aaaaaaaaaa' + 'aaaaaaaaaa'".to_owned(), |s, i| {
            format!("{ten}.map(x{i}, {s})")
        });
        let building = format!("size({strings}) > 0");
        let rule = RuleProgram::compile(&[building.as_str()], None).unwrap();
        let result = rule.evaluate(Json::Bytes(b"{}"), [], Budget::default());
        let [ConditionResult::Error(message)] = result.conditions.as_slice() else {
            panic!("{result:?}");
        };
        assert!(
            message.contains("budget") || message.contains("memory bound"),
            "{message}"
        );
    }
}
