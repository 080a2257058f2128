//! Conditions micro-benchmark: a rule of 3 CEL conditions on a ~7 KiB GitHub push payload,
//! evaluated from the raw bytes (JSON parse + conversion + evaluation) with hookforge's pruned
//! conversion, against a baseline measured in the same run: parse to `serde_json::Value`, convert
//! it wholesale with cel's serde path, evaluate.
//!
//! A second part calibrates the evaluation budget: for expressions of every costly shape (nested
//! loops, loops over a large payload, string building, `split`, `replace`, `matches`) on a
//! ~400 KiB payload, it prints the estimated cost in budget units and the measured evaluation
//! time, and the worst ratio: the nanoseconds one budget unit stands for on this machine, which
//! `conditions::UNITS_PER_MILLI` must keep at or below 1,000,000 / (ns per unit).
//!
//! Run: `cargo bench --bench conditions` (env: BENCH_ITERATIONS to scale). Target: <= 20 µs/event.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cel::{Context, Env, Program, Value};
use hookforge::conditions::{Budget, Json, RuleProgram, UNITS_PER_MILLI};

#[path = "support/github_push.rs"]
mod github_push;
use github_push::push_payload;

const CONDITIONS: [&str; 3] = [
    r#"event.ref == "refs/heads/main""#,
    r#"event.repository.full_name.startsWith("octo")"#,
    r#"headers["x-github-event"] == "push""#,
];
const TARGET_MICROS: f64 = 20.0;

const HEADERS: [(&str, &str); 9] = [
    ("Host", "hookforge.example.com"),
    ("User-Agent", "GitHub-Hookshot/044aadd"),
    ("Content-Type", "application/json"),
    ("Content-Length", "7250"),
    ("X-GitHub-Event", "push"),
    ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ("X-GitHub-Hook-ID", "292430182"),
    (
        "X-Hub-Signature-256",
        "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c",
    ),
    ("Accept", "*/*"),
];

/// The baseline: what binding the payload costs without pruning, through cel's own API.
struct Baseline {
    env: Arc<Env>,
    programs: Vec<Program>,
}

impl Baseline {
    fn new() -> Self {
        let env = Arc::new(Env::stdlib());
        let programs = CONDITIONS.iter().map(|c| env.compile(c).unwrap()).collect();
        Baseline { env, programs }
    }

    fn evaluate(&self, bytes: &[u8]) -> bool {
        let parsed: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let event = cel::to_value(&parsed).unwrap();
        let headers = HEADERS
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>();
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_from_value("event", event);
        context.add_variable_from_value("headers", headers);
        self.programs
            .iter()
            .all(|p| p.execute(&context) == Ok(Value::Bool(true)))
    }
}

/// Runs `f` `iterations` times, 5 rounds, and returns the median time per call.
fn measure(iterations: usize, mut f: impl FnMut() -> bool) -> Duration {
    for _ in 0..iterations / 10 {
        assert!(black_box(f()));
    }
    let mut rounds = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                assert!(black_box(f()));
            }
            start.elapsed() / iterations as u32
        })
        .collect::<Vec<_>>();
    rounds.sort();
    rounds[2]
}

fn report(name: &str, per_event: Duration) {
    let micros = per_event.as_secs_f64() * 1e6;
    println!(
        "{name:<48} {micros:>8.2} µs/event {:>12.0} events/s",
        1.0 / per_event.as_secs_f64()
    );
}

fn main() {
    let iterations = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let payload = push_payload();
    println!(
        "rule of {} conditions on a {} byte push payload, {} iterations x 5 rounds (median)",
        CONDITIONS.len(),
        payload.len(),
        iterations
    );

    let rule = RuleProgram::compile(&CONDITIONS, None).unwrap();
    let pruned = measure(iterations, || {
        rule.evaluate(Json::Bytes(black_box(&payload)), HEADERS, Budget::default())
            .matched()
    });

    let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let pruned_parsed = measure(iterations, || {
        rule.evaluate(Json::Value(black_box(&parsed)), HEADERS, Budget::default())
            .matched()
    });
    let parse_only = measure(iterations, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(&payload)).is_ok())
    });

    let baseline = Baseline::new();
    let full = measure(iterations / 4, || baseline.evaluate(black_box(&payload)));

    report("hookforge, bytes -> pruned CEL (parse+eval)", pruned);
    report(
        "hookforge, parsed Value -> pruned CEL (eval)",
        pruned_parsed,
    );
    report("serde_json::Value parse alone (reference)", parse_only);
    report("baseline: Value parse + cel::to_value + eval", full);
    println!(
        "speed-up over baseline: {:.1}x",
        full.as_secs_f64() / pruned.as_secs_f64()
    );
    let micros = pruned.as_secs_f64() * 1e6;
    let verdict = if micros <= TARGET_MICROS {
        "met"
    } else {
        "MISSED"
    };
    println!("target <= {TARGET_MICROS} µs/event incl. parse: {verdict} ({micros:.2} µs)");
    calibrate_budget();
}

/// Estimated cost against measured evaluation time for costly shapes (see the module docs).
fn calibrate_budget() {
    let ten = "[1,2,3,4,5,6,7,8,9,10]";
    let nest = |n: usize, body: &str| {
        (0..n).fold(body.to_owned(), |inner, i| {
            format!("{ten}.all(v{i}, {inner})")
        })
    };
    let strings = (0..3).fold("'aaaaaaaaaa'".to_owned(), |s, i| {
        format!("{ten}.map(x{i}, {s} + {s})")
    });
    let alerts: Vec<serde_json::Value> = (0..2000)
        .map(|i| {
            let severity = if i % 7 == 0 { "critical" } else { "warning" };
            serde_json::json!({"labels": {"severity": severity, "team": "core"}, "status": "firing"})
        })
        .collect();
    let payload = serde_json::to_vec(&serde_json::json!({
        "s": "x".repeat(100_000),
        "alerts": alerts,
        "list": (0..1000).collect::<Vec<_>>(),
        "words": (0..3000).map(|i| format!("w{i}")).collect::<Vec<_>>(),
    }))
    .unwrap();
    let shapes: [(&str, String); 12] = [
        ("5 nested loops over literals", nest(5, "true")),
        ("6 nested loops over literals", nest(6, "v0 < 100")),
        (
            "3 nested maps building strings",
            format!("size({strings}) > 0"),
        ),
        (
            "exists over 2,000 alerts",
            "event.alerts.exists(a, a.labels.severity == 'critical' && a.status == 'resolved')"
                .into(),
        ),
        (
            "all over 2,000 alerts",
            "event.alerts.all(a, a.labels.team == 'core')".into(),
        ),
        (
            "map then filter 2,000 alerts",
            "event.alerts.map(a, a.labels.severity).filter(s, s == 'critical').size() > 1".into(),
        ),
        (
            "1,000 x 1,000 over the payload",
            "event.list.all(x, event.list.exists(y, y == x))".into(),
        ),
        (
            "replace in 100 KB",
            "event.s.replace('x', 'yy').size() > 0".into(),
        ),
        (
            "split 100 KB into characters",
            "event.s.split('').size() > 0".into(),
        ),
        ("matches over 100 KB", "event.s.matches('x*y')".into()),
        (
            "map 3,000 words to strings",
            "event.words.map(w, w.upperAscii() + '-' + w).size() > 0".into(),
        ),
        (
            "join 3,000 words",
            "event.words.join(',').size() > 0".into(),
        ),
    ];
    let unlimited = Budget {
        max_cost: u64::MAX,
        max_value_bytes: u64::MAX,
    };
    println!();
    println!(
        "evaluation budget calibration on a {} byte payload (evaluation only, conversion excluded)",
        payload.len()
    );
    let mut worst: f64 = 0.0;
    for (name, source) in shapes {
        let program = RuleProgram::compile(&[source.as_str()], None).unwrap();
        let prepared = program.prepare(Json::Bytes(&payload), std::iter::empty());
        let cost = prepared.cost();
        let started = Instant::now();
        let mut runs = 0u32;
        while runs < 3 || (started.elapsed() < Duration::from_millis(300) && runs < 1000) {
            black_box(prepared.evaluate(unlimited));
            runs += 1;
        }
        let nanos = started.elapsed().as_nanos() as f64 / f64::from(runs);
        let ratio = nanos / cost as f64;
        worst = worst.max(ratio);
        println!(
            "{name:<34} {cost:>12} units {:>10.3} ms {ratio:>7.3} ns/unit",
            nanos / 1e6
        );
    }
    let millis_per_budget = worst * (UNITS_PER_MILLI as f64) / 1e6;
    println!(
        "worst {worst:.3} ns/unit: a budget of 1 ms ({UNITS_PER_MILLI} units) takes at most {millis_per_budget:.2} ms here"
    );
}
