//! The dispatcher: follows the global log and hands every deliverable event to the endpoints
//! that subscribe to it.
//!
//! For each event, [`deliverable`] says whether endpoints receive it at all; the
//! [`DispatchIndex`] (by organization and event type, never a scan of every endpoint) gives the
//! candidates; each candidate's actor runs its own CEL filter over the envelope (so one
//! tenant's expensive filter never holds up the dispatcher), records `DeliveryScheduled` (once
//! per source position) for a match, and acknowledges when that record is durable or when the
//! filter said no. The number of matches is counted from those acknowledgements.
//!
//! The dispatcher's checkpoint never passes an event whose deliveries are not all durable: a
//! snapshot of the index is taken at some position, and saved only once every delivery of every
//! event before it was acknowledged. If an acknowledgement is lost (an endpoint actor crashed
//! with the request in its mailbox), the dispatcher fails, its supervisor restarts it from the
//! last snapshot, and the endpoints ignore what they already recorded. Publishers therefore
//! never have to wait for delivery scheduling: once an event is in the journal, it reaches every
//! matching endpoint, even if the publishing client hung up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::endpoint::{Dispatched, EndpointMsg, ScheduleRequest};
use super::manager::{RETRY_LOOKUP, Sent};
use super::supervisor::ChildSpec;
use crate::app::App;
use crate::domain::delivery::EventRef;
use crate::domain::published::{Deliverable, deliverable};
use crate::journal::{EventFilter, JournalError, Position, RecordedEvent};
use crate::projections::dispatch_index::{DispatchIndex, IndexedEndpoint, MatchStats};

/// Events per batch from the subscription.
const BATCH: usize = 1024;
/// Events between index snapshots (at most).
const SNAPSHOT_EVERY_EVENTS: u64 = 20_000;
/// Time between index snapshots (at most, while events flow).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// Recent match counts kept for `POST /api/v2/events/` answers.
const RECENT_COUNTS: usize = 100_000;

fn snapshot_tag() -> String {
    format!("dispatcher@{}", env!("CARGO_PKG_VERSION"))
}

#[derive(Default)]
struct Recent {
    counts: HashMap<Position, u32>,
    order: VecDeque<Position>,
}

/// How far the dispatcher has read, and how many endpoints recent events matched; shared with
/// the HTTP layer, which reports `deliveries_scheduled`.
#[derive(Clone)]
pub struct DispatchProgress {
    processed: Arc<watch::Sender<Position>>,
    /// Bumped whenever a count is recorded.
    counted: Arc<watch::Sender<u64>>,
    recent: Arc<Mutex<Recent>>,
}

impl Default for DispatchProgress {
    fn default() -> Self {
        Self {
            processed: Arc::new(watch::channel(0).0),
            counted: Arc::new(watch::channel(0).0),
            recent: Arc::default(),
        }
    }
}

impl DispatchProgress {
    fn record(&self, position: Position, matched: u32) {
        {
            let mut recent = self.recent.lock().expect("recent counts poisoned");
            if recent.counts.insert(position, matched).is_none() {
                recent.order.push_back(position);
            }
            while recent.order.len() > RECENT_COUNTS {
                if let Some(old) = recent.order.pop_front() {
                    recent.counts.remove(&old);
                }
            }
        }
        self.counted.send_modify(|n| *n += 1);
    }

    fn count(&self, position: Position) -> Option<u32> {
        self.recent
            .lock()
            .expect("recent counts poisoned")
            .counts
            .get(&position)
            .copied()
    }

    fn advance(&self, next: Position) {
        self.processed.send_if_modified(|p| {
            let moved = next > *p;
            *p = (*p).max(next);
            moved
        });
    }

    /// Every event below this position has been matched and handed to its endpoints.
    pub fn processed(&self) -> Position {
        *self.processed.borrow()
    }

    /// How many endpoints the event at `position` matched, once every candidate endpoint has
    /// filtered it and durably recorded its delivery (waiting at most `timeout`); `None` if that
    /// did not happen in time or was forgotten.
    pub async fn matched(&self, position: Position, timeout: Duration) -> Option<u32> {
        let mut counted = self.counted.subscribe();
        let counted = tokio::time::timeout(timeout, async {
            loop {
                if let Some(count) = self.count(position) {
                    return Some(count);
                }
                counted.changed().await.ok()?;
            }
        });
        counted.await.ok().flatten()
    }
}

/// The promise an endpoint actor gives the dispatcher: settled once the delivery is durably
/// recorded ([`scheduled`](Self::scheduled)) or will never be ([`skipped`](Self::skipped)).
/// Dropping it unsettled tells the dispatcher the request was lost.
pub struct DispatchAck {
    dispatcher: Option<ActorRef<DispatcherMsg>>,
    position: Position,
}

impl DispatchAck {
    /// The delivery for this event is durably recorded (a `filter_error` one included).
    pub fn scheduled(self) {
        self.settle(true);
    }

    /// No delivery is needed: the filter did not match, or the endpoint is inactive or gone.
    pub fn skipped(self) {
        self.settle(false);
    }

    fn settle(mut self, matched: bool) {
        if let Some(d) = self.dispatcher.take() {
            let _ = d.send_message(DispatcherMsg::Acked(self.position, matched));
        }
    }

    /// The source position this acknowledgement is about.
    pub fn position(&self) -> Position {
        self.position
    }
}

impl Drop for DispatchAck {
    fn drop(&mut self) {
        if let Some(d) = self.dispatcher.take() {
            let _ = d.send_message(DispatcherMsg::Lost(self.position));
        }
    }
}

/// Messages of the dispatcher.
pub enum DispatcherMsg {
    /// Events from the global subscription; everything below the position was read.
    Events(Vec<RecordedEvent>, Position, RpcReplyPort<()>),
    /// An endpoint settled its delivery of the event at this position (`true`: it matched and is
    /// durably recorded).
    Acked(Position, bool),
    /// A request for the event at this position was lost: restart from the last snapshot.
    Lost(Position),
}

/// The dispatcher actor.
pub struct Dispatcher {
    app: Arc<App>,
}

/// The acknowledgements an event still waits for, and how many endpoints matched so far.
struct Tally {
    remaining: u32,
    matched: u32,
}

/// Its state: the index, what is being acknowledged, and the pending snapshot.
pub struct DispatcherState {
    index: DispatchIndex,
    next: Position,
    inflight: BTreeMap<Position, Tally>,
    candidate: Option<(Position, Vec<IndexedEndpoint>)>,
    since_candidate: u64,
    last_candidate: Instant,
    pump: JoinHandle<()>,
}

impl DispatcherState {
    /// Every delivery of every event below this position is durably recorded.
    fn watermark(&self) -> Position {
        self.inflight.keys().next().copied().unwrap_or(self.next)
    }
}

impl Dispatcher {
    fn save(&self, position: Position, endpoints: &[IndexedEndpoint]) {
        match postcard::to_stdvec(endpoints) {
            Ok(bytes) => {
                if let Err(e) = self
                    .app
                    .journal
                    .save_snapshot(&snapshot_tag(), position, &bytes)
                {
                    tracing::warn!(error = %e, "dispatcher snapshot not saved");
                }
            }
            Err(e) => tracing::warn!(error = %e, "dispatcher snapshot not encoded"),
        }
    }

    fn maybe_snapshot(&self, state: &mut DispatcherState) {
        if let Some((position, _)) = &state.candidate
            && state.watermark() >= *position
            && let Some((position, endpoints)) = state.candidate.take()
        {
            self.save(position, &endpoints);
        }
        if state.candidate.is_none()
            && (state.since_candidate >= SNAPSHOT_EVERY_EVENTS
                || (state.since_candidate > 0 && state.last_candidate.elapsed() >= SNAPSHOT_EVERY))
        {
            state.candidate = Some((state.next, state.index.snapshot()));
            state.since_candidate = 0;
            state.last_candidate = Instant::now();
        }
    }

    async fn dispatch(
        &self,
        myself: &ActorRef<DispatcherMsg>,
        state: &mut DispatcherState,
        record: &RecordedEvent,
        event: Deliverable,
    ) {
        let metrics = &self.app.metrics.outbound;
        let mut stats = MatchStats::default();
        let candidates = state
            .index
            .candidates(event.organization, &event.event_type, &mut stats);
        metrics.dispatched_events.inc();
        metrics.index_lookups.inc_by(stats.lookups);
        metrics.index_candidates.inc_by(stats.candidates);
        if candidates.is_empty() {
            self.app.outbound.progress.record(record.position, 0);
            return;
        }
        let count = u32::try_from(candidates.len()).unwrap_or(u32::MAX);
        state.inflight.insert(
            record.position,
            Tally {
                remaining: count,
                matched: 0,
            },
        );
        let dispatched = Arc::new(Dispatched::new(
            EventRef {
                position: record.position,
                stream: record.stream.clone(),
                revision: record.revision,
            },
            event,
            record.metadata.correlation_id.clone(),
        ));
        for id in candidates {
            let request = ScheduleRequest {
                dispatched: dispatched.clone(),
                ack: DispatchAck {
                    dispatcher: Some(myself.clone()),
                    position: record.position,
                },
            };
            self.hand_off(id, request).await;
        }
    }

    /// Gives `request` to endpoint `id`'s actor, waiting while it is being (re)started or woken.
    async fn hand_off(&self, id: u64, request: ScheduleRequest) {
        let started = Instant::now();
        let mut warned = false;
        let mut msg = EndpointMsg::Schedule(request);
        loop {
            msg = match self.app.outbound.endpoints.send(id, msg) {
                Sent::Delivered => return,
                Sent::Gone(EndpointMsg::Schedule(request)) => return request.ack.skipped(),
                Sent::Gone(_) => return,
                Sent::Unavailable(back) => back,
            };
            if !warned && started.elapsed() > Duration::from_secs(5) {
                tracing::warn!(endpoint = id, "waiting for the endpoint's actor to start");
                warned = true;
            }
            tokio::time::sleep(RETRY_LOOKUP).await;
        }
    }
}

impl Actor for Dispatcher {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let (next, index) = match self.app.journal.load_snapshot(&snapshot_tag()) {
            Ok(Some((position, bytes))) => {
                match postcard::from_bytes::<Vec<IndexedEndpoint>>(&bytes) {
                    Ok(endpoints) => (position, DispatchIndex::from_snapshot(endpoints)),
                    Err(e) => {
                        tracing::warn!(error = %e, "dispatcher snapshot does not decode; rebuilding from the log");
                        (0, DispatchIndex::default())
                    }
                }
            }
            _ => (0, DispatchIndex::default()),
        };
        self.app.outbound.progress.advance(next);
        let mut subscription = self.app.journal.subscribe(next, EventFilter::All);
        let pump = tokio::spawn(async move {
            loop {
                let batch = match subscription.next_batch(BATCH).await {
                    Ok(batch) => batch,
                    Err(JournalError::Closed(_)) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "dispatcher cannot read the journal");
                        myself.stop(Some(format!("journal read failed: {e}")));
                        break;
                    }
                };
                let next = subscription.position();
                if ractor::call!(myself, DispatcherMsg::Events, batch, next).is_err() {
                    break;
                }
            }
        });
        Ok(DispatcherState {
            index,
            next,
            inflight: BTreeMap::new(),
            candidate: None,
            since_candidate: 0,
            last_candidate: Instant::now(),
            pump,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Events(events, next, reply) => {
                for record in &events {
                    let index = &mut state.index;
                    let event = self.app.parking.guard("dispatcher", record, || {
                        index.apply(record);
                        deliverable(record)
                    });
                    if let Some(event) = event.flatten() {
                        self.dispatch(&myself, state, record, event).await;
                    }
                }
                state.since_candidate += events.len() as u64;
                state.next = next;
                self.app.outbound.progress.advance(next);
                self.maybe_snapshot(state);
                let _ = reply.send(());
            }
            DispatcherMsg::Acked(position, matched) => {
                if let Some(tally) = state.inflight.get_mut(&position) {
                    tally.remaining -= 1;
                    if matched {
                        tally.matched += 1;
                        self.app.metrics.outbound.matched.inc();
                    }
                    if tally.remaining == 0 {
                        let matched = tally.matched;
                        state.inflight.remove(&position);
                        self.app.outbound.progress.record(position, matched);
                        self.maybe_snapshot(state);
                    }
                }
            }
            DispatcherMsg::Lost(position) => {
                if state.inflight.contains_key(&position) {
                    return Err(format!("a delivery request for the event at position {position} was lost; restarting from the last snapshot").into());
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.pump.abort();
        if state.inflight.is_empty() {
            self.save(state.next, &state.index.snapshot());
        } else if let Some((position, endpoints)) = state.candidate.take()
            && state.watermark() >= position
        {
            self.save(position, &endpoints);
        }
        Ok(())
    }
}

/// Starts the dispatcher under the application's supervisor.
pub async fn start(app: &Arc<App>) -> Result<(), String> {
    let app = app.clone();
    let spec = ChildSpec {
        key: "dispatcher".into(),
        kind: "dispatcher",
        start: Arc::new({
            let app = app.clone();
            move |cell| {
                let dispatcher = Dispatcher { app: app.clone() };
                Box::pin(async move {
                    Actor::spawn_linked(None, dispatcher, (), cell)
                        .await
                        .map(|(actor, _)| actor.get_cell())
                        .map_err(|e| e.to_string())
                })
            }
        }),
    };
    app.start_child(spec).await
}
