//! Conditions micro-benchmark: a rule of 3 CEL conditions on a ~7 KiB GitHub push payload,
//! evaluated from the raw bytes (JSON parse + conversion + evaluation) with hookforge's pruned
//! conversion, against a baseline measured in the same run: parse to `serde_json::Value`, convert
//! it wholesale with cel's serde path, evaluate.
//!
//! Run: `cargo bench --bench conditions` (env: BENCH_ITERATIONS to scale). Target: <= 20 µs/event.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cel::{Context, Env, Program, Value};
use hookforge::conditions::{Json, RuleProgram};

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
        rule.evaluate(Json::Bytes(black_box(&payload)), HEADERS)
            .matched()
    });

    let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let pruned_parsed = measure(iterations, || {
        rule.evaluate(Json::Value(black_box(&parsed)), HEADERS)
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
}
