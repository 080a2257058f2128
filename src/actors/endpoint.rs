//! The endpoint actor: one per outbound endpoint, owner of its deliveries.
//!
//! Its state is the fold of its stream ([`EndpointState`]): pending deliveries with their
//! `next_attempt_at`. Everything it decides is appended to that stream and only acted on once
//! the fold shows it, so the state in memory never runs ahead of what a replay rebuilds:
//!
//! 1. The dispatcher sends [`EndpointMsg::Schedule`]; the actor appends `DeliveryScheduled`
//!    (at most once per source position) and acknowledges when the fold sees it.
//! 2. Due deliveries start as attempts, within `max_in_flight` and `rate_limit_per_second`;
//!    an ordered endpoint sends its oldest pending delivery only, one at a time.
//! 3. Each attempt signs the envelope afresh (new timestamp, same `webhook-id`) and goes out
//!    through the [`Transport`](super::outbound::Transport); the outcome is turned into events by
//!    [`record_attempt`] (pure) and appended.
//! 4. A tokio timer wakes the actor at the next `next_attempt_at` (or the next rate-limit token).
//!
//! A crash between sending and recording leaves the attempt unrecorded: after the restart the
//! delivery is sent again with the same `webhook-id`, which receivers use to deduplicate.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::{AbortHandle, JoinHandle};

use super::dispatcher::DispatchAck;
use super::idle::Idle;
use super::manager::{catch_up, follow, load_state, save_state};
use super::sleepers::Asleep;
use crate::app::App;
use crate::codec::{EventBody, Protected, RawJson, Sealed};
use crate::delivery::envelope::raw_payload;
use crate::delivery::signing::signed_headers;
use crate::delivery::{
    AttemptError, AttemptOutcome, Envelope, FailureKind, OutboundRequest, RetryPolicy,
};
use crate::domain::Event;
use crate::domain::delivery::{
    AttemptContext, DeliveryFilterFailed, DeliveryKind, DeliveryScheduled, DeliverySource,
    EventRef, new_webhook_id, record_attempt,
};
use crate::domain::endpoint::{self, EndpointSettings};
use crate::domain::filter::EndpointFilter;
use crate::domain::published::{Deliverable, EventPublished, deliverable};
use crate::domain::rate_limit::TokenBucket;
use crate::journal::{Metadata, Position, RecordedEvent};
use crate::projections::endpoint_state::{Change, EndpointState};
use crate::secrets::{DataKeys, Unreadable};

/// Folded events between snapshots of the state (at most).
const SNAPSHOT_EVERY_EVENTS: u64 = 2_000;
/// Event payloads kept in memory for deliveries not yet attempted; beyond, they are read back.
const PAYLOAD_CACHE: usize = 1024;

/// An event the dispatcher hands to every candidate endpoint, shared by all of them.
pub struct Dispatched {
    /// Where it is in the journal.
    pub source: EventRef,
    /// Its envelope content (kept for the first attempt, to avoid reading it back).
    pub event: Deliverable,
    /// Its correlation id, carried onto the deliveries.
    pub correlation_id: String,
    /// The envelope filters see, built once for all the endpoints that filter.
    filter_envelope: std::sync::OnceLock<Option<Vec<u8>>>,
}

impl Dispatched {
    /// An event at `source` to dispatch.
    pub fn new(source: EventRef, event: Deliverable, correlation_id: String) -> Self {
        Self {
            source,
            event,
            correlation_id,
            filter_envelope: std::sync::OnceLock::new(),
        }
    }

    /// The JSON envelope a filter evaluates (`delivery_id` empty: filters run before a
    /// delivery exists); `None` if the payload is not JSON or was erased.
    pub fn filter_envelope(&self, keys: &DataKeys) -> Option<&[u8]> {
        self.filter_envelope
            .get_or_init(|| {
                let event = &self.event;
                let payload = open_payload(keys, event).ok()?;
                Envelope {
                    event: event.event_type.clone(),
                    delivery_id: String::new(),
                    organization_id: event.organization.to_string(),
                    resource_type: event.resource_type.clone(),
                    resource_id: event.resource_id.clone(),
                    payload: raw_payload(&payload.0).ok()?,
                    occurred_at: chrono::DateTime::from_timestamp_micros(event.occurred_at)
                        .unwrap_or_default(),
                }
                .to_body()
                .ok()
            })
            .as_deref()
    }
}

/// `event`'s payload in the clear (published events' payloads are sealed under their
/// organization's data key).
fn open_payload(keys: &DataKeys, event: &Deliverable) -> Result<RawJson, Unreadable> {
    keys.open(
        event.organization,
        EventPublished::TYPE,
        event.payload.clone(),
    )
}

/// The endpoint's filter as the actor applies it.
enum Filter {
    /// No filter: every candidate event is delivered.
    None,
    /// A compiled filter.
    Compiled(EndpointFilter),
    /// The stored filter no longer compiles (a stricter limit or a CEL upgrade): every
    /// candidate event is recorded as `filter_error` with this reason, visibly.
    Broken(String),
}

/// What the filter decided for one event.
type Verdict = Result<bool, String>;

/// A delivery the dispatcher asks the endpoint to make.
pub struct ScheduleRequest {
    /// The event.
    pub dispatched: Arc<Dispatched>,
    /// Completed once the delivery is durably recorded (or not needed).
    pub ack: DispatchAck,
}

/// How one attempt ended, reported by its task.
pub struct AttemptReport {
    delivery: u64,
    attempt: u32,
    started_at: i64,
    occurred_at: Option<i64>,
    outcome: AttemptOutcome,
}

/// Messages of an endpoint actor.
pub enum EndpointMsg {
    /// Events of its stream, in order (from its subscription).
    Events(Vec<RecordedEvent>, RpcReplyPort<()>),
    /// Record a delivery of a dispatched event.
    Schedule(ScheduleRequest),
    /// A retry or rate-limit timer fired.
    Wake,
    /// An attempt finished.
    Attempted(AttemptReport),
    /// An append was refused: crash and rebuild from the stream.
    AppendFailed(String),
    /// The evaluation pool decided the filter on the oldest queued request.
    Filtered(Verdict),
    /// Time to see whether the actor has been idle long enough to passivate.
    IdleCheck,
    /// Passivate now if still idle (queued behind everything sent before the sleep began).
    Sleep,
}

/// The endpoint actor's configuration: which endpoint, and the application it serves.
pub struct EndpointActor {
    /// The application (journal, master key, outbound services, metrics).
    pub app: Arc<App>,
    /// The endpoint id.
    pub id: u64,
}

/// What an attempt needs from the endpoint's configuration, decrypted once per change.
struct SendSpec {
    url: url::Url,
    secrets: Vec<String>,
    refresh_at: Option<i64>,
    custom_headers: Vec<(String, String)>,
    timeout: Duration,
    ssl_verify: bool,
    name: String,
    policy: RetryPolicy,
}

impl std::fmt::Debug for SendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSpec")
            .field("url", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

/// The running actor's state.
pub struct EndpointRun {
    state: EndpointState,
    spec: Option<Arc<SendSpec>>,
    pump: JoinHandle<()>,
    in_flight: HashMap<u64, AbortHandle>,
    awaiting_record: HashSet<u64>,
    submitted_source: Option<Position>,
    incoming: HashMap<Position, Arc<Dispatched>>,
    payloads: HashMap<u64, Arc<Dispatched>>,
    acks: VecDeque<DispatchAck>,
    bucket: Option<TokenBucket>,
    timer_at: Option<i64>,
    folded_since_snapshot: u64,
    filter: Filter,
    /// Requests waiting for (or at) the evaluation pool, in source order.
    filtering: VecDeque<ScheduleRequest>,
    filter_busy: bool,
    idle: Idle,
}

impl EndpointActor {
    fn tag(&self) -> String {
        format!("endpoint-{}@{}", self.id, env!("CARGO_PKG_VERSION"))
    }

    fn stream(&self) -> String {
        endpoint::stream(self.id)
    }

    fn now(&self) -> i64 {
        self.app.outbound.clock.now()
    }

    fn build_spec(&self, state: &EndpointState) -> Option<Arc<SendSpec>> {
        let settings: &EndpointSettings = state.settings.as_ref()?;
        let key = &self.app.master_key;
        let field = endpoint::secret_field(self.id);
        let now = self.now();
        let open = |sealed: &Sealed| key.open_string(&field, sealed);
        let result = (|| {
            let secrets = state
                .signing_secrets(now)
                .into_iter()
                .map(open)
                .collect::<Result<Vec<_>, _>>()?;
            let custom_headers = match &settings.custom_headers {
                None => Vec::new(),
                Some(sealed) => {
                    let bytes = key.open(&endpoint::headers_field(self.id), sealed)?;
                    serde_json::from_slice(&bytes)
                        .map_err(|_| crate::secrets::SecretError::Unseal)?
                }
            };
            Ok::<_, crate::secrets::SecretError>((secrets, custom_headers))
        })();
        let (secrets, custom_headers) = match result {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(endpoint = self.id, error = %e, "cannot open the endpoint's secrets; deliveries are held");
                return None;
            }
        };
        let url = match url::Url::parse(&settings.url) {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(endpoint = self.id, error = %e, "stored URL does not parse; deliveries are held");
                return None;
            }
        };
        let disable_after = Duration::from_secs(
            self.app
                .config
                .outbound
                .disable_after_failing_hours
                .saturating_mul(3600),
        );
        Some(Arc::new(SendSpec {
            url,
            secrets,
            refresh_at: state
                .previous_secret
                .as_ref()
                .map(|(_, until)| *until)
                .filter(|until| *until > now),
            custom_headers,
            timeout: Duration::from_secs(u64::from(settings.timeout_seconds)),
            ssl_verify: settings.ssl_verify,
            name: settings.name.clone(),
            policy: settings.retry.policy(disable_after),
        }))
    }

    fn reconfigure(&self, run: &mut EndpointRun) {
        run.spec = self.build_spec(&run.state);
        let source = run
            .state
            .settings
            .as_ref()
            .and_then(|s| s.filter.as_deref());
        run.filter = match source.map(EndpointFilter::compile) {
            None => Filter::None,
            Some(Ok(filter)) => Filter::Compiled(filter),
            Some(Err(e)) => {
                tracing::error!(endpoint = self.id, error = %e, "the stored filter no longer compiles; deliveries are recorded as filter_error");
                Filter::Broken(format!("the filter no longer compiles: {e}"))
            }
        };
        let rate = run
            .state
            .settings
            .as_ref()
            .and_then(|s| s.rate_limit_per_second);
        run.bucket = match (rate, run.bucket.take()) {
            (None, _) => None,
            (Some(rate), Some(bucket)) if bucket.rate() == f64::from(rate) => Some(bucket),
            (Some(rate), _) => Some(TokenBucket::new(rate, self.now())),
        };
        if !run.state.is_active() {
            run.incoming.clear();
            run.payloads.clear();
        }
    }

    fn append(&self, myself: &ActorRef<EndpointMsg>, events: &[Event], correlation_id: String) {
        let metadata = Metadata::system(correlation_id);
        let encoded = events.iter().map(|e| e.encode(metadata.clone())).collect();
        let ticket = self.app.journal.append(
            self.stream(),
            crate::journal::ExpectedRevision::Any,
            encoded,
        );
        self.app.outbound.tickets.watch(ticket, myself.clone());
    }

    fn release_acks(run: &mut EndpointRun, up_to: Position) {
        while run.acks.front().is_some_and(|ack| ack.position() <= up_to) {
            if let Some(ack) = run.acks.pop_front() {
                ack.scheduled();
            }
        }
    }

    fn fold(&self, run: &mut EndpointRun, events: &[RecordedEvent]) {
        let mut reconfigure = false;
        let consumer = format!("endpoint:{}", self.id);
        for record in events {
            let state = &mut run.state;
            let change = self
                .app
                .parking
                .guard(&consumer, record, || state.apply(record))
                .unwrap_or(Change::None);
            match change {
                Change::Scheduled { id, source } => {
                    if let Some(p) = source {
                        if let Some(event) = run.incoming.remove(&p)
                            && run.payloads.len() < PAYLOAD_CACHE
                        {
                            run.payloads.insert(id, event);
                        }
                        Self::release_acks(run, p);
                    }
                }
                Change::Skipped { source: Some(p) } => {
                    run.incoming.remove(&p);
                    Self::release_acks(run, p);
                }
                Change::Skipped { source: None } | Change::None => {}
                Change::Attempted { id } => {
                    run.awaiting_record.remove(&id);
                    if !run.state.pending.contains_key(&id) {
                        run.payloads.remove(&id);
                    }
                }
                Change::Config => reconfigure = true,
                Change::Undecodable(reason) => self.app.parking.park(
                    &consumer,
                    record.position,
                    format!("{} does not decode: {reason}", record.event_type),
                ),
            }
        }
        if reconfigure {
            self.reconfigure(run);
        }
        // Deliveries leave `pending` through their attempts (handled above) or all at once when
        // the endpoint is disabled or deleted.
        if run.state.pending.is_empty() {
            run.awaiting_record.clear();
            run.payloads.clear();
        }
        run.folded_since_snapshot += events.len() as u64;
        if run.folded_since_snapshot >= SNAPSHOT_EVERY_EVENTS {
            save_state(
                &self.app.journal,
                &self.tag(),
                run.state.next_revision,
                &run.state,
            );
            run.folded_since_snapshot = 0;
        }
    }

    fn schedule(
        &self,
        myself: &ActorRef<EndpointMsg>,
        run: &mut EndpointRun,
        request: ScheduleRequest,
    ) {
        let position = request.dispatched.source.position;
        if !run.state.is_active() {
            return request.ack.skipped();
        }
        if run.state.already_dispatched(position) {
            return request.ack.scheduled();
        }
        if run.submitted_source.is_some_and(|s| position <= s) {
            // Already appended by this incarnation (the dispatcher replays after a restart).
            run.acks.push_back(request.ack);
            return;
        }
        // Costly filters go to the evaluation pool, one request at a time, in source order;
        // anything arriving while requests wait there queues behind them.
        let pooled = matches!(&run.filter, Filter::Compiled(f) if !f.is_linear());
        if pooled || !run.filtering.is_empty() {
            run.filtering.push_back(request);
            return self.next_filter(myself, run);
        }
        let verdict = match &run.filter {
            Filter::None => Ok(true),
            Filter::Broken(reason) => Err(reason.clone()),
            Filter::Compiled(filter) => self.filter_inline(filter, &request.dispatched),
        };
        self.settle(myself, run, request, verdict);
    }

    fn filter_inline(&self, filter: &EndpointFilter, dispatched: &Dispatched) -> Verdict {
        let Some(envelope) = dispatched.filter_envelope(&self.app.data_keys) else {
            return Ok(false);
        };
        filter
            .evaluate(envelope, self.app.config.conditions.budget())
            .map_err(|e| e.to_string())
    }

    /// Hands the oldest queued request's filter to the evaluation pool, unless one is there.
    fn next_filter(&self, myself: &ActorRef<EndpointMsg>, run: &mut EndpointRun) {
        if run.filter_busy {
            return;
        }
        let Some(front) = run.filtering.front() else {
            return;
        };
        let filter = match &run.filter {
            Filter::Compiled(filter) => filter.clone(),
            // The filter changed while requests waited: decide them with the new one, here.
            Filter::None | Filter::Broken(_) => {
                let requests: Vec<_> = run.filtering.drain(..).collect();
                for request in requests {
                    let verdict = match &run.filter {
                        Filter::Broken(reason) => Err(reason.clone()),
                        _ => Ok(true),
                    };
                    self.settle(myself, run, request, verdict);
                }
                return;
            }
        };
        let dispatched = front.dispatched.clone();
        let (pool, budget) = (
            self.app.eval_pool.clone(),
            self.app.config.conditions.budget(),
        );
        let organization = run.state.organization;
        let keys = self.app.data_keys.clone();
        let me = myself.clone();
        run.filter_busy = true;
        tokio::spawn(async move {
            let verdict = pool
                .run(organization, move || {
                    match dispatched.filter_envelope(&keys) {
                        Some(envelope) => {
                            filter.evaluate(envelope, budget).map_err(|e| e.to_string())
                        }
                        None => Ok(false),
                    }
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            let _ = me.send_message(EndpointMsg::Filtered(verdict));
        });
    }

    fn filtered(&self, myself: &ActorRef<EndpointMsg>, run: &mut EndpointRun, verdict: Verdict) {
        run.filter_busy = false;
        if let Some(request) = run.filtering.pop_front() {
            if run.state.is_active() {
                self.settle(myself, run, request, verdict);
            } else {
                request.ack.skipped();
            }
        }
        self.next_filter(myself, run);
    }

    /// Records what the filter decided: a delivery, a `filter_error` delivery, or nothing.
    fn settle(
        &self,
        myself: &ActorRef<EndpointMsg>,
        run: &mut EndpointRun,
        request: ScheduleRequest,
        verdict: Verdict,
    ) {
        let dispatched = &request.dispatched;
        let position = dispatched.source.position;
        let event: Event = match verdict {
            Ok(false) => return request.ack.skipped(),
            Ok(true) => DeliveryScheduled {
                endpoint: self.id,
                organization: run.state.organization,
                webhook_id: new_webhook_id(),
                event_type: dispatched.event.event_type.clone(),
                kind: DeliveryKind::Dispatched,
                source: DeliverySource::Journal(dispatched.source.clone()),
            }
            .into(),
            Err(error) => {
                self.app.metrics.outbound.filter_errors.inc();
                DeliveryFilterFailed {
                    endpoint: self.id,
                    organization: run.state.organization,
                    webhook_id: new_webhook_id(),
                    event_type: dispatched.event.event_type.clone(),
                    source: DeliverySource::Journal(dispatched.source.clone()),
                    error,
                }
                .into()
            }
        };
        let scheduled = matches!(event, Event::DeliveryScheduled(_));
        self.append(myself, &[event], dispatched.correlation_id.clone());
        run.submitted_source = Some(position);
        if scheduled && run.incoming.len() < PAYLOAD_CACHE {
            run.incoming.insert(position, request.dispatched.clone());
        }
        run.acks.push_back(request.ack);
    }

    /// Starts every due delivery the limits allow, and arms the timer for the next one.
    fn pump(&self, myself: &ActorRef<EndpointMsg>, run: &mut EndpointRun) {
        let Some(spec) = run.spec.clone() else { return };
        if !run.state.is_active() {
            return;
        }
        let now = self.now();
        if spec.refresh_at.is_some_and(|at| now >= at) {
            self.reconfigure(run);
            return self.pump(myself, run);
        }
        // An attempt occupies its slot until its outcome is durable, so a crash can strand at
        // most `max_in_flight` attempts (sent, outcome unrecorded).
        let max = run
            .state
            .settings
            .as_ref()
            .map_or(1, |s| s.max_in_flight as usize);
        let free = max.saturating_sub(run.in_flight.len() + run.awaiting_record.len());
        let due = {
            let (in_flight, awaiting) = (&run.in_flight, &run.awaiting_record);
            run.state.due(
                now,
                |id| in_flight.contains_key(&id) || awaiting.contains(&id),
                free,
            )
        };
        for id in due {
            if let Some(bucket) = run.bucket.as_mut()
                && !bucket.try_take(now)
            {
                let at = bucket.next_available(now);
                self.arm(myself, run, at, now);
                return;
            }
            self.start_attempt(myself, run, &spec, id, now);
        }
        let next = {
            let (in_flight, awaiting) = (&run.in_flight, &run.awaiting_record);
            run.state
                .next_due(|id| in_flight.contains_key(&id) || awaiting.contains(&id))
        };
        if let Some(at) = next
            && at > now
        {
            self.arm(myself, run, at, now);
        }
    }

    /// If nothing is in progress or due now, how the actor would sleep: the revision it has
    /// folded to and when its next retry is due.
    fn quiescent(&self, run: &EndpointRun) -> Option<Asleep> {
        let busy = !run.in_flight.is_empty()
            || !run.awaiting_record.is_empty()
            || !run.acks.is_empty()
            || !run.filtering.is_empty()
            || run.filter_busy;
        if busy {
            return None;
        }
        let wake_at = run.state.next_due(|_| false);
        if wake_at.is_some_and(|at| at <= self.now()) {
            return None;
        }
        Some(Asleep {
            revision: run.state.next_revision,
            wake_at,
        })
    }

    fn arm(&self, myself: &ActorRef<EndpointMsg>, run: &mut EndpointRun, at: i64, now: i64) {
        if run.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        run.timer_at = Some(at);
        let delay = Duration::from_micros(u64::try_from(at - now).unwrap_or(0));
        myself.send_after(delay, || EndpointMsg::Wake);
    }

    fn start_attempt(
        &self,
        myself: &ActorRef<EndpointMsg>,
        run: &mut EndpointRun,
        spec: &Arc<SendSpec>,
        id: u64,
        now: i64,
    ) {
        let Some(pending) = run.state.pending.get(&id) else {
            return;
        };
        let attempt = pending.attempts + 1;
        let job = AttemptJob {
            delivery: id,
            attempt,
            webhook_id: pending.webhook_id.to_string(),
            event_type: run.state.event_type(pending).to_owned(),
            source: run.state.source(pending),
            organization: run.state.organization,
            cached: run.payloads.remove(&id),
            spec: spec.clone(),
            app: self.app.clone(),
        };
        self.app.metrics.outbound.attempted.inc();
        let me = myself.clone();
        let task = tokio::spawn(async move {
            let report = job.run(now).await;
            let _ = me.send_message(EndpointMsg::Attempted(report));
        });
        run.in_flight.insert(id, task.abort_handle());
    }

    fn attempted(
        &self,
        myself: &ActorRef<EndpointMsg>,
        run: &mut EndpointRun,
        report: AttemptReport,
    ) {
        run.in_flight.remove(&report.delivery);
        let metrics = &self.app.metrics.outbound;
        metrics
            .attempt_seconds
            .observe(report.outcome.duration_ms as f64 / 1000.0);
        if report.outcome.is_success() {
            metrics.succeeded.inc();
            if let Some(occurred) = report.occurred_at {
                let end = report.started_at
                    + i64::try_from(report.outcome.duration_ms).unwrap_or(0) * 1000;
                metrics
                    .publish_to_delivery_seconds
                    .observe((end - occurred).max(0) as f64 / 1e6);
            }
        } else {
            metrics.failed.inc();
        }
        let Some(spec) = run.spec.clone() else { return };
        let Some(pending) = run.state.pending.get(&report.delivery) else {
            return;
        };
        if pending.attempts + 1 != report.attempt {
            return;
        }
        let (webhook_id, event_type) = (
            pending.webhook_id.to_string(),
            run.state.event_type(pending).to_owned(),
        );
        let ctx = AttemptContext {
            endpoint: self.id,
            organization: run.state.organization,
            endpoint_name: &spec.name,
            delivery: report.delivery,
            webhook_id: &webhook_id,
            event_type: &event_type,
            attempt: report.attempt,
            started_at: report.started_at,
            failing_since: run.state.failing_since,
            policy: &spec.policy,
            jitter: (self.app.outbound.jitter)(),
        };
        let events = record_attempt(&ctx, &report.outcome);
        for event in &events {
            match event {
                Event::DeliveryDeadLettered(_) => metrics.dead_lettered.inc(),
                Event::EndpointDisabled(e) => {
                    metrics.endpoints_disabled.inc();
                    tracing::warn!(endpoint = self.id, reason = %e.reason, "endpoint disabled");
                }
                _ => {}
            }
        }
        self.append(myself, &events, format!("delivery-{}", report.delivery));
        run.awaiting_record.insert(report.delivery);
    }
}

/// One attempt, run on its own task so the actor keeps handling messages.
struct AttemptJob {
    delivery: u64,
    attempt: u32,
    webhook_id: String,
    event_type: String,
    source: DeliverySource,
    organization: u64,
    cached: Option<Arc<Dispatched>>,
    spec: Arc<SendSpec>,
    app: Arc<App>,
}

impl AttemptJob {
    async fn run(self, started_at: i64) -> AttemptReport {
        let (occurred_at, outcome) = match self.request(started_at).await {
            Ok((request, occurred_at)) => (
                Some(occurred_at),
                self.app.outbound.transport.send(&request).await,
            ),
            Err(message) => (
                None,
                AttemptOutcome {
                    status: None,
                    duration_ms: 0,
                    response_snippet: String::new(),
                    retry_after: None,
                    error: Some(AttemptError {
                        kind: FailureKind::Other,
                        message,
                    }),
                },
            ),
        };
        AttemptReport {
            delivery: self.delivery,
            attempt: self.attempt,
            started_at,
            occurred_at,
            outcome,
        }
    }

    async fn event(&self) -> Result<Cow<'_, Deliverable>, String> {
        if let Some(dispatched) = &self.cached {
            return Ok(Cow::Borrowed(&dispatched.event));
        }
        match &self.source {
            DeliverySource::Inline(inline) => Ok(Cow::Owned(Deliverable {
                organization: self.organization,
                event_type: self.event_type.clone(),
                resource_type: inline.resource_type.clone(),
                resource_id: inline.resource_id.clone(),
                payload: Protected::Clear(inline.payload.clone()),
                occurred_at: inline.occurred_at,
            })),
            DeliverySource::Journal(source) => {
                let (journal, source) = (self.app.journal.clone(), source.clone());
                let records = tokio::task::spawn_blocking(move || {
                    journal.read_stream(&source.stream, source.revision, 1)
                })
                .await
                .map_err(|e| format!("reading the event failed: {e}"))?
                .map_err(|e| format!("reading the event failed: {e}"))?;
                match records.first() {
                    Some(record) if record.compacted => Err(
                        "the event's payload was removed by retention (retention.payload_days) before it was delivered"
                            .to_owned(),
                    ),
                    found => found.and_then(deliverable).map(Cow::Owned).ok_or_else(|| {
                        "the event to deliver is no longer readable from the journal".to_owned()
                    }),
                }
            }
        }
    }

    async fn request(&self, started_at: i64) -> Result<(OutboundRequest, i64), String> {
        let event = self.event().await?;
        let payload = open_payload(&self.app.data_keys, &event).map_err(|e| match e {
            Unreadable::Erased => {
                "the event's payload was erased before it was delivered".to_owned()
            }
            Unreadable::Corrupt => format!("the event's payload does not open: {e}"),
        })?;
        let envelope = Envelope {
            event: self.event_type.clone(),
            delivery_id: self.webhook_id.clone(),
            organization_id: event.organization.to_string(),
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            payload: raw_payload(&payload.0).map_err(|e| e.to_string())?,
            occurred_at: chrono::DateTime::from_timestamp_micros(event.occurred_at)
                .unwrap_or_default(),
        };
        let body = envelope.to_body().map_err(|e| e.to_string())?;
        let secrets: Vec<&str> = self.spec.secrets.iter().map(String::as_str).collect();
        let headers = signed_headers(
            &self.event_type,
            &self.webhook_id,
            started_at.div_euclid(1_000_000),
            &body,
            &secrets,
            &self.spec.custom_headers,
        )
        .map_err(|e| e.to_string())?;
        let request = OutboundRequest {
            url: self.spec.url.clone(),
            headers,
            body: Bytes::from(body),
            timeout: self.spec.timeout,
            ssl_verify: self.spec.ssl_verify,
        };
        Ok((request, event.occurred_at))
    }
}

impl Actor for EndpointActor {
    type Msg = EndpointMsg;
    type State = EndpointRun;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let stream = self.stream();
        let mut state: EndpointState =
            load_state(&self.app.journal, &self.tag()).unwrap_or_default();
        let consumer = format!("endpoint:{}", self.id);
        let parking = self.app.parking.clone();
        let next = catch_up(&self.app.journal, &stream, state.next_revision, |event| {
            if let Some(Change::Undecodable(reason)) =
                parking.guard(&consumer, event, || state.apply(event))
            {
                let reason = format!("{} does not decode: {reason}", event.event_type);
                parking.park(&consumer, event.position, reason);
            }
        })
        .await?;
        state.next_revision = next;
        let pump = follow(
            &self.app.journal,
            &stream,
            next,
            myself.clone(),
            EndpointMsg::Events,
        );
        let mut run = EndpointRun {
            state,
            spec: None,
            pump,
            in_flight: HashMap::new(),
            awaiting_record: HashSet::new(),
            submitted_source: None,
            incoming: HashMap::new(),
            payloads: HashMap::new(),
            acks: VecDeque::new(),
            bucket: None,
            timer_at: None,
            folded_since_snapshot: 0,
            filter: Filter::None,
            filtering: VecDeque::new(),
            filter_busy: false,
            idle: Idle::start(self.app.config.actors.idle(), &myself, || {
                EndpointMsg::IdleCheck
            }),
        };
        self.reconfigure(&mut run);
        Ok(run)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        run: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.pump(&myself, run);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        run: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if run.idle.asleep {
            // Passivated: the manager is stopping this actor; the next one re-reads the stream.
            if let EndpointMsg::Events(_, reply) = msg {
                let _ = reply.send(());
            }
            return Ok(());
        }
        match msg {
            EndpointMsg::Events(events, reply) => {
                run.idle.worked();
                self.fold(run, &events);
                let _ = reply.send(());
                self.pump(&myself, run);
            }
            EndpointMsg::Schedule(request) => {
                run.idle.worked();
                self.schedule(&myself, run, request)
            }
            EndpointMsg::Wake => {
                run.idle.worked();
                run.timer_at = None;
                self.pump(&myself, run);
            }
            EndpointMsg::Attempted(report) => {
                run.idle.worked();
                self.attempted(&myself, run, report);
                self.pump(&myself, run);
            }
            EndpointMsg::Filtered(verdict) => {
                run.idle.worked();
                self.filtered(&myself, run, verdict)
            }
            EndpointMsg::IdleCheck => run.idle.check(
                &self.app.outbound.endpoints,
                self.id,
                &myself,
                self.quiescent(run),
                EndpointMsg::Sleep,
            ),
            EndpointMsg::Sleep => {
                let quiescent = self.quiescent(run);
                run.idle
                    .sleep(&self.app.outbound.endpoints, self.id, quiescent)
                    .await
            }
            EndpointMsg::AppendFailed(reason) => {
                return Err(format!(
                    "endpoint {}: an append was refused ({reason}); rebuilding from the stream",
                    self.id
                )
                .into());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        run: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        run.pump.abort();
        run.idle.stop();
        for (_, task) in run.in_flight.drain() {
            task.abort();
        }
        if run.state.deleted || self.app.outbound.endpoints.is_gone(self.id) {
            for ack in run.acks.drain(..) {
                ack.skipped();
            }
            for request in run.filtering.drain(..) {
                request.ack.skipped();
            }
        }
        if run.folded_since_snapshot > 0 {
            save_state(
                &self.app.journal,
                &self.tag(),
                run.state.next_revision,
                &run.state,
            );
        }
        Ok(())
    }
}
