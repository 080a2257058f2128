//! The retry schedule under paused tokio time: the real application (journal, dispatcher,
//! endpoint actors) with a scripted transport, so hours of retries run in milliseconds and every
//! attempt lands exactly when the schedule says.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookforge::actors::outbound::{OutboundOptions, Transport};
use hookforge::app::App;
use hookforge::codec::{Protected, RawJson};
use hookforge::config::Config;
use hookforge::delivery::{AttemptError, AttemptOutcome, FailureKind, OutboundRequest};
use hookforge::domain::Event;
use hookforge::domain::endpoint::{self, EndpointCreated, EndpointSettings, RetrySettings};
use hookforge::domain::published::{self, EventPublished};
use hookforge::journal::{ExpectedRevision, Metadata};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Answers attempts from a script (then 204s) and reports when each arrived.
struct Scripted {
    answers: Mutex<VecDeque<AttemptOutcome>>,
    seen: mpsc::UnboundedSender<(Instant, String)>,
}

fn outcome(status: u16, retry_after: Option<u64>) -> AttemptOutcome {
    let ok = (200..300).contains(&status);
    AttemptOutcome {
        status: Some(status),
        duration_ms: 0,
        response_snippet: String::new(),
        retry_after: retry_after.map(Duration::from_secs),
        error: (!ok).then(|| AttemptError {
            kind: FailureKind::HttpStatus,
            message: format!("HTTP {status}"),
        }),
    }
}

impl Transport for Scripted {
    fn send<'a>(
        &'a self,
        request: &'a OutboundRequest,
    ) -> Pin<Box<dyn Future<Output = AttemptOutcome> + Send + 'a>> {
        let id = request
            .headers
            .iter()
            .find(|(n, _)| n == "webhook-id")
            .map(|(_, v)| v.to_str().unwrap().to_owned())
            .unwrap();
        let _ = self.seen.send((Instant::now(), id));
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| outcome(204, None));
        Box::pin(async move { answer })
    }
}

struct Setup {
    app: Arc<App>,
    attempts: mpsc::UnboundedReceiver<(Instant, String)>,
    _dir: tempfile::TempDir,
}

/// Kills the test process if paused time ever stalls (real-time watchdog).
fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(300));
        eprintln!("outbound_paused: no progress in 300 s of real time");
        std::process::exit(101);
    });
}

async fn setup(
    answers: Vec<AttemptOutcome>,
    tweak: impl FnOnce(&mut Config),
    retry: RetrySettings,
) -> Setup {
    watchdog();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        admin_token: Some("paused-admin-token-0123".into()),
        // No retention sweeper: its timers would let the paused clock race ahead.
        retention: hookforge::config::RetentionConfig {
            sweep_interval_seconds: 0,
            ..Default::default()
        },
        ..Config::default()
    };
    config.journal.sync = false;
    // No passivation either: its idle checks are timers too.
    config.actors.idle_seconds = 0;
    tweak(&mut config);
    let (seen, attempts) = mpsc::unbounded_channel();
    let transport = Arc::new(Scripted {
        answers: Mutex::new(answers.into()),
        seen,
    });
    // Jitter fixed at the top of its range: every delay is the full backoff ceiling.
    let options = OutboundOptions {
        transport: Some(transport),
        jitter: Some(Arc::new(|| 1.0)),
    };
    let app = App::start_with(config, options).await.unwrap();
    let settings = EndpointSettings {
        name: "paused".into(),
        url: "https://receiver.example/hook".into(),
        events: vec!["*".into()],
        filter: None,
        custom_headers: None,
        ssl_verify: true,
        timeout_seconds: 10,
        retry,
        rate_limit_per_second: None,
        max_in_flight: 4,
        ordered: false,
    };
    let secret = app.master_key.seal(
        &endpoint::secret_field(1),
        b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let created = EndpointCreated {
        id: 1,
        organization: 1,
        settings,
        enabled: true,
        secret,
    };
    app.commit(
        &Metadata::system("test"),
        endpoint::stream(1),
        ExpectedRevision::NoStream,
        vec![created.into()],
    )
    .await
    .unwrap();
    let event = EventPublished {
        organization: 1,
        event_type: "build.done".into(),
        resource_type: String::new(),
        resource_id: String::new(),
        payload: Protected::Clear(RawJson(b"{}".to_vec())),
        idempotency_key: None,
    };
    app.commit(
        &Metadata::system("test"),
        published::stream(1),
        ExpectedRevision::Any,
        vec![event.into()],
    )
    .await
    .unwrap();
    Setup {
        app,
        attempts,
        _dir: dir,
    }
}

async fn gaps(
    attempts: &mut mpsc::UnboundedReceiver<(Instant, String)>,
    count: usize,
) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..count {
        let (at, id) = attempts.recv().await.unwrap();
        times.push(at);
        ids.push(id);
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one webhook-id for every attempt"
    );
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Waits in real time (the journal writer is a thread, outside tokio's clock) until `check` holds.
async fn eventually(mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        // A blocking task keeps the paused clock from jumping while the writer works.
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(10)))
            .await
            .unwrap();
    }
    panic!("condition not met within 5 s of real time");
}

fn journal_types(app: &App) -> Vec<String> {
    app.journal
        .read_all(0, 100_000)
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_default_schedule_backs_off_exponentially_then_dead_letters() {
    let failures = (0..8).map(|_| outcome(500, None)).collect();
    let mut s = setup(failures, |_| {}, RetrySettings::default()).await;
    let gaps = gaps(&mut s.attempts, 8).await;
    let expected: Vec<Duration> = [5, 10, 20, 40, 80, 160, 320]
        .into_iter()
        .map(Duration::from_secs)
        .collect();
    assert_eq!(
        gaps, expected,
        "initial 5 s, doubling, eight attempts in all"
    );
    // Nothing follows the eighth failure (a ninth attempt would come within 640 s): the
    // delivery is dead-lettered.
    tokio::time::sleep(Duration::from_secs(700)).await;
    assert!(s.attempts.try_recv().is_err());
    eventually(|| {
        journal_types(&s.app)
            .iter()
            .any(|t| t == "delivery.dead_lettered")
    })
    .await;
    let types = journal_types(&s.app);
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "delivery.attempt_failed")
            .count(),
        8
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "delivery.dead_lettered")
            .count(),
        1
    );
    s.app.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_up_to_the_maximum_delay() {
    let answers = vec![
        outcome(429, Some(120)),
        outcome(503, Some(100_000)),
        outcome(500, None),
    ];
    let retry = RetrySettings {
        max_attempts: 8,
        initial_delay_seconds: 5.0,
        max_delay_seconds: 600.0,
        multiplier: 2.0,
    };
    let mut s = setup(answers, |_| {}, retry).await;
    let gaps = gaps(&mut s.attempts, 4).await;
    assert_eq!(
        gaps[0],
        Duration::from_secs(120),
        "Retry-After: 120 on a 429"
    );
    assert_eq!(
        gaps[1],
        Duration::from_secs(600),
        "a huge Retry-After is capped at max_delay_seconds"
    );
    assert_eq!(
        gaps[2],
        Duration::from_secs(20),
        "then the backoff resumes (third failure: 5 × 2²)"
    );
    s.app.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_failing_for_disable_after_failing_hours_is_disabled() {
    let failures = (0..50).map(|_| outcome(503, None)).collect();
    let retry = RetrySettings {
        max_attempts: 50,
        initial_delay_seconds: 60.0,
        max_delay_seconds: 600.0,
        multiplier: 2.0,
    };
    let mut s = setup(
        failures,
        |c| c.outbound.disable_after_failing_hours = 1,
        retry,
    )
    .await;
    // Attempts at 0, 60, 180, 420, 900, 1500, 2100, 2700, 3300, 3900 s: the tenth is the first
    // to fail more than an hour after the first failure.
    let gaps = gaps(&mut s.attempts, 10).await;
    let total: Duration = gaps.iter().sum();
    assert_eq!(total, Duration::from_secs(3900));
    // A next attempt would come within max_delay_seconds (600 s).
    tokio::time::sleep(Duration::from_secs(700)).await;
    assert!(
        s.attempts.try_recv().is_err(),
        "no attempt after the endpoint was disabled"
    );
    eventually(|| {
        journal_types(&s.app)
            .iter()
            .any(|t| t == "endpoint.disabled")
    })
    .await;
    eventually(|| {
        s.app
            .views
            .outbound
            .read()
            .endpoint(1)
            .is_some_and(|e| !e.enabled)
    })
    .await;
    let disabled: Vec<Event> = s
        .app
        .journal
        .read_stream(&endpoint::stream(1), 0, 1000)
        .unwrap()
        .iter()
        .filter_map(|r| Event::decode(r).ok().flatten())
        .filter(|e| matches!(e, Event::EndpointDisabled(_)))
        .collect();
    let [Event::EndpointDisabled(d)] = disabled.as_slice() else {
        panic!("{disabled:?}")
    };
    assert_eq!(
        d.reason,
        "failed continuously for 1 hours without a successful delivery"
    );
    assert!(!s.app.views.outbound.read().endpoint(1).unwrap().enabled);
    let history = s
        .app
        .views
        .deliveries
        .read()
        .list(1, &Default::default(), 0, 1)
        .unwrap();
    assert_eq!(
        history.rows[0].status,
        hookforge::projections::DeliveryStatus::Failed
    );
    s.app.shutdown().await;
}
