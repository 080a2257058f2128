//! One supervised actor per live resource of a stream category, for any kind of resource.
//!
//! # What it does
//!
//! A [`Manager`] follows the lifecycle events of one category in the global log (`endpoint`
//! for outbound endpoints, `rule` for event rules). At start-up it starts a child for every live
//! resource; when a resource's creation event is committed it starts one more; when its deletion
//! event is committed it marks the resource gone in the [`Registry`] and stops the child for
//! good. Children run under the root [`Supervisor`](super::supervisor::Supervisor): one that
//! fails is restarted (with back-off) and, like every child, rebuilds its state from its own
//! stream, so a restart loses nothing.
//! The manager snapshots its set of live ids, so start-up does not rescan the category.
//!
//! Other actors find a child through the [`Registry`] (`registry.get(id)`): `Running(actor)`,
//! `Gone` (deleted; drop whatever was meant for it), or `Unavailable` (being started or
//! restarted; try again shortly).
//!
//! # Using it for a new kind of resource (rules, for instance)
//!
//! 1. Give each resource a stream `<category>-<id>` whose first event is the creation event and
//!    whose deletion event says it is gone.
//! 2. Implement [`ManagedKind`]: the category, the two event type names, and `spawn`, which
//!    spawns the child actor *linked to the supervisor cell it is given*
//!    ([`spawn_linked`] does it for an actor without arguments).
//! 3. In the child's `pre_start`, rebuild state with [`load_state`] and [`catch_up`], then call
//!    [`follow`] to receive the rest of the stream as it is committed (one batch at a time, via a
//!    call, so memory stays bounded). Save snapshots with [`save_state`] now and then and in
//!    `post_stop`. Never stop the child from inside (even once its resource is deleted): the
//!    supervisor would restart it; the manager stops it.
//! 4. Start the manager once, as a supervised child: [`start_manager`].
//!
//! ```ignore
//! struct Rules { app: Arc<App> }
//! impl ManagedKind for Rules {
//!     type Msg = RuleMsg;
//!     const CATEGORY: &'static str = "rule";
//!     const CREATED: &'static str = "rule.created";
//!     const DELETED: &'static str = "rule.deleted";
//!     async fn spawn(self: Arc<Self>, id: u64, registry: Registry<RuleMsg>, supervisor: ActorCell)
//!         -> Result<ActorRef<RuleMsg>, String> {
//!         spawn_linked(RuleActor { app: self.app.clone(), id }, supervisor).await
//!     }
//! }
//! start_manager(&app, Arc::new(Rules { app: app.clone() }), registry).await?;
//! ```

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, Message, RpcReplyPort};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::sleepers::{Asleep, Sleepers};
use super::supervisor::{ChildSpec, SupervisorMsg};
use crate::app::App;
use crate::journal::{EventFilter, Journal, JournalError, Position, RecordedEvent, Revision};
use crate::metrics::PassivationMetrics;
use crate::store::Store;

/// Journal positions read between two snapshots of the manager's live set (at most).
const SNAPSHOT_EVERY_POSITIONS: u64 = 50_000;
/// Events per batch from the subscription.
const BATCH: usize = 1024;

/// A kind of resource with one actor each.
pub trait ManagedKind: Send + Sync + Sized + 'static {
    /// The children's message type.
    type Msg: Message;
    /// Stream category: resources live in streams `<CATEGORY>-<id>`.
    const CATEGORY: &'static str;
    /// Event type that creates a resource.
    const CREATED: &'static str;
    /// Event type that deletes one.
    const DELETED: &'static str;

    /// Spawns the child for resource `id`, linked to `supervisor`. Called at start-up, on
    /// creation and on every restart; the manager registers the returned actor.
    fn spawn(
        self: Arc<Self>,
        id: u64,
        registry: Registry<Self::Msg>,
        supervisor: ActorCell,
    ) -> impl Future<Output = Result<ActorRef<Self::Msg>, String>> + Send;

    /// The live ids and the journal position they are known at, for a manager without a
    /// snapshot (a first start after an upgrade), so it need not read the category from 0.
    fn seed(&self) -> Option<(Vec<u64>, Position)> {
        None
    }

    /// Whether idle children are passivated; if not, the manager starts every child, asleep
    /// ones included.
    fn passivates(&self) -> bool;

    /// Now, in µs since the epoch (the clock timers of asleep resources are due by).
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

pub use super::registry::{Lookup, Registry, Sent};

/// Spawns `actor` linked to `supervisor`: what [`ManagedKind::spawn`] usually does.
pub async fn spawn_linked<A: Actor<Arguments = ()>>(
    actor: A,
    supervisor: ActorCell,
) -> Result<ActorRef<A::Msg>, String> {
    Actor::spawn_linked(None, actor, (), supervisor)
        .await
        .map(|(actor, _)| actor)
        .map_err(|e| e.to_string())
}

/// Loads a child's state snapshot saved under `tag` (`None` if absent or if it no longer decodes).
pub fn load_state<S: DeserializeOwned>(journal: &Journal, tag: &str) -> Option<S> {
    match journal.load_snapshot(tag) {
        Ok(Some((_, bytes))) => match postcard::from_bytes(&bytes) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!(tag, error = %e, "snapshot does not decode; rebuilding from the stream");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(tag, error = %e, "snapshot unreadable; rebuilding from the stream");
            None
        }
    }
}

/// Saves a child's state (derived from every event of its stream below `revision`).
pub fn save_state<S: Serialize>(journal: &Journal, tag: &str, revision: Revision, state: &S) {
    match postcard::to_stdvec(state) {
        Ok(bytes) => {
            if let Err(e) = journal.save_snapshot(tag, revision, &bytes) {
                tracing::warn!(tag, error = %e, "snapshot not saved");
            }
        }
        Err(e) => tracing::warn!(tag, error = %e, "snapshot encoding failed"),
    }
}

/// Reads `stream` from revision `from` to its current end, in order, calling `apply` for each
/// event; returns the next revision. Reads run on the blocking pool.
pub async fn catch_up(
    journal: &Journal,
    stream: &str,
    mut from: Revision,
    mut apply: impl FnMut(&RecordedEvent),
) -> Result<Revision, JournalError> {
    loop {
        let (journal, name) = (journal.clone(), stream.to_owned());
        let batch = tokio::task::spawn_blocking(move || journal.read_stream(&name, from, BATCH))
            .await
            .map_err(|e| JournalError::Io(std::io::Error::other(e)))??;
        let Some(last) = batch.last() else {
            return Ok(from);
        };
        from = last.revision + 1;
        batch.iter().for_each(&mut apply);
    }
}

/// Spawns the task that hands `actor` the events of `stream` from revision `from` on, as they
/// are committed. Each batch goes over with a call (`wrap` builds the message), so at most one
/// batch is in flight. A read failure stops the actor (its supervisor restarts it); a closed
/// journal ends the task. Abort the returned handle in `post_stop`.
pub fn follow<M: Message>(
    journal: &Journal,
    stream: &str,
    from: Revision,
    actor: ActorRef<M>,
    wrap: fn(Vec<RecordedEvent>, RpcReplyPort<()>) -> M,
) -> JoinHandle<()> {
    let mut subscription = journal.subscribe_stream(stream, from);
    let stream = stream.to_owned();
    tokio::spawn(async move {
        loop {
            let batch = match subscription.next_batch(256).await {
                Ok(batch) => batch,
                Err(JournalError::Closed(_)) => break,
                Err(e) => {
                    tracing::error!(%stream, error = %e, "cannot read the stream");
                    actor.stop(Some(format!("stream read failed: {e}")));
                    break;
                }
            };
            if actor.call(|reply| wrap(batch, reply), None).await.is_err() {
                break;
            }
        }
    })
}

/// What the category subscription saw for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Its creation event.
    Created(u64),
    /// Its deletion event.
    Deleted(u64),
    /// Some other event of its stream, at this revision (wakes it if it is asleep).
    Other(u64, Revision),
}

/// Messages of the manager.
pub enum ManagerMsg {
    /// What the category subscription saw; everything below the position was read.
    Events(Vec<Seen>, Position, RpcReplyPort<()>),
    /// Wake an asleep resource (a message is waiting for it).
    Wake(u64),
    /// An idle child asks to sleep (see [`super::idle`]); the reply says whether it may.
    Passivate(u64, Asleep, RpcReplyPort<bool>),
    /// Wake the asleep resources whose timer is due.
    Tick,
}

/// The manager actor for resources of kind `K`.
pub struct Manager<K: ManagedKind> {
    journal: Journal,
    supervisor: ActorRef<SupervisorMsg>,
    kind: Arc<K>,
    registry: Registry<K::Msg>,
    sleepers: Sleepers,
    store: Store,
    metrics: PassivationMetrics,
}

/// The manager's state: live ids, asleep ones, and where it has read the category to.
pub struct ManagerState {
    live: BTreeSet<u64>,
    asleep: HashMap<u64, Asleep>,
    next: Position,
    pump: JoinHandle<()>,
    ticker: Option<JoinHandle<()>>,
    saved_at: Position,
}

fn snapshot_tag<K: ManagedKind>() -> String {
    format!("manager:{}@{}", K::CATEGORY, env!("CARGO_PKG_VERSION"))
}

/// How often due timers of asleep resources are looked for.
const TICK: Duration = Duration::from_secs(1);

impl<K: ManagedKind> Manager<K> {
    fn child_key(id: u64) -> String {
        format!("{}:{id}", K::CATEGORY)
    }

    fn spec(&self, id: u64) -> ChildSpec {
        let (kind, registry) = (self.kind.clone(), self.registry.clone());
        ChildSpec {
            key: Self::child_key(id),
            kind: K::CATEGORY,
            start: Arc::new(move |supervisor| {
                let (kind, registry) = (kind.clone(), registry.clone());
                Box::pin(async move {
                    let actor = kind.spawn(id, registry.clone(), supervisor).await?;
                    registry.insert(id, actor.clone());
                    Ok(actor.get_cell())
                })
            }),
        }
    }

    async fn start_child(&self, id: u64) {
        match ractor::call!(self.supervisor, SupervisorMsg::Start, self.spec(id)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(category = K::CATEGORY, id, error = %e, "child did not start; the supervisor retries")
            }
            Err(e) => {
                tracing::error!(category = K::CATEGORY, id, error = %e, "supervisor unreachable")
            }
        }
    }

    /// Wakes `id` if it is asleep.
    async fn wake(&self, state: &mut ManagerState, id: u64) {
        let Some(asleep) = state.asleep.remove(&id) else {
            return;
        };
        if let Err(e) = self.sleepers.remove(id, &asleep) {
            // The row stays: at worst a restart finds it asleep and wakes it on its next message.
            tracing::warn!(category = K::CATEGORY, id, error = %e, "asleep row not removed");
        }
        self.metrics.asleep.with_label_values(&[K::CATEGORY]).dec();
        self.metrics.woken.with_label_values(&[K::CATEGORY]).inc();
        self.start_child(id).await;
    }

    /// Whether the stream of `id` holds nothing at or past `revision`.
    fn stream_ends_at(&self, id: u64, revision: Revision) -> bool {
        let stream = format!("{}-{id}", K::CATEGORY);
        match self.journal.stream_revision(&stream) {
            Ok(head) => head.map_or(0, |last| last + 1) == revision,
            Err(_) => false,
        }
    }

    fn passivate(&self, state: &mut ManagerState, id: u64, asleep: Asleep) -> bool {
        if !state.live.contains(&id)
            || state.asleep.contains_key(&id)
            || !self.stream_ends_at(id, asleep.revision)
        {
            return false;
        }
        if let Err(e) = self.sleepers.put(id, &asleep) {
            tracing::warn!(category = K::CATEGORY, id, error = %e, "not passivated: the asleep row was not written");
            return false;
        }
        if !self.registry.finish_sleep(id) {
            // Looked up meanwhile: it runs on.
            let _ = self.sleepers.remove(id, &asleep);
            return false;
        }
        state.asleep.insert(id, asleep);
        self.metrics.asleep.with_label_values(&[K::CATEGORY]).inc();
        self.metrics
            .passivated
            .with_label_values(&[K::CATEGORY])
            .inc();
        let _ = self
            .supervisor
            .cast(SupervisorMsg::Stop(Self::child_key(id)));
        true
    }

    fn save(&self, state: &mut ManagerState) {
        // Asleep rows first: the snapshot's position must never run ahead of them.
        if let Err(e) = self.store.flush() {
            tracing::warn!(category = K::CATEGORY, error = %e, "manager snapshot not saved: the store did not flush");
            return;
        }
        state.saved_at = state.next;
        let ids: Vec<u64> = state.live.iter().copied().collect();
        match postcard::to_stdvec(&ids) {
            Ok(bytes) => {
                if let Err(e) = self
                    .journal
                    .save_snapshot(&snapshot_tag::<K>(), state.next, &bytes)
                {
                    tracing::warn!(category = K::CATEGORY, error = %e, "manager snapshot not saved");
                }
            }
            Err(e) => {
                tracing::warn!(category = K::CATEGORY, error = %e, "manager snapshot not encoded")
            }
        }
    }

    /// The live ids and the position they were read to: the snapshot, else the kind's seed,
    /// else nothing (the category is read from the start).
    fn load_live(&self) -> (BTreeSet<u64>, Position) {
        if let Ok(Some((position, bytes))) = self.journal.load_snapshot(&snapshot_tag::<K>())
            && let Ok(ids) = postcard::from_bytes::<Vec<u64>>(&bytes)
        {
            return (ids.into_iter().collect(), position);
        }
        match self.kind.seed() {
            Some((ids, position)) => (ids.into_iter().collect(), position),
            None => (BTreeSet::new(), 0),
        }
    }

    fn load_asleep(&self, live: &BTreeSet<u64>) -> HashMap<u64, Asleep> {
        let keep = self.kind.passivates();
        let rows = match self.sleepers.all() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(category = K::CATEGORY, error = %e, "asleep table unreadable; starting every actor");
                return HashMap::new();
            }
        };
        let mut asleep = HashMap::new();
        for (id, row) in rows {
            if keep && live.contains(&id) {
                asleep.insert(id, row);
            } else {
                let _ = self.sleepers.remove(id, &row);
            }
        }
        asleep
    }
}

/// Runs the timer tick while something is asleep, and only then: an idle server (or a test on
/// tokio's paused clock) has no timer firing every second for nothing.
fn keep_ticking(myself: &ActorRef<ManagerMsg>, state: &mut ManagerState) {
    match (&state.ticker, state.asleep.is_empty()) {
        (None, false) => state.ticker = Some(myself.send_interval(TICK, || ManagerMsg::Tick)),
        (Some(ticker), true) => {
            ticker.abort();
            state.ticker = None;
        }
        _ => {}
    }
}

/// Maps a batch of the category to what the manager needs of it.
fn seen<K: ManagedKind>(batch: Vec<RecordedEvent>) -> Vec<Seen> {
    let prefix = format!("{}-", K::CATEGORY);
    batch
        .into_iter()
        .filter_map(|event| {
            let id = event.stream.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            Some(if event.event_type == K::CREATED {
                Seen::Created(id)
            } else if event.event_type == K::DELETED {
                Seen::Deleted(id)
            } else {
                Seen::Other(id, event.revision)
            })
        })
        .collect()
}

impl<K: ManagedKind> Actor for Manager<K> {
    type Msg = ManagerMsg;
    type State = ManagerState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let (live, next) = self.load_live();
        let asleep = self.load_asleep(&live);
        for id in asleep.keys() {
            self.registry.mark_asleep(*id);
        }
        self.metrics
            .asleep
            .with_label_values(&[K::CATEGORY])
            .set(asleep.len() as i64);
        self.registry.set_manager(myself.clone());
        let mut subscription = self
            .journal
            .subscribe(next, EventFilter::category(K::CATEGORY));
        let pump_to = myself.clone();
        let pump = tokio::spawn(async move {
            loop {
                let batch = match subscription.next_batch(BATCH).await {
                    Ok(batch) => batch,
                    Err(JournalError::Closed(_)) => break,
                    Err(e) => {
                        pump_to.stop(Some(format!("journal read failed: {e}")));
                        break;
                    }
                };
                let next = subscription.position();
                if ractor::call!(pump_to, ManagerMsg::Events, seen::<K>(batch), next).is_err() {
                    break;
                }
            }
        });
        let mut state = ManagerState {
            live,
            asleep,
            next,
            pump,
            ticker: None,
            saved_at: next,
        };
        keep_ticking(&myself, &mut state);
        Ok(state)
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        let awake: Vec<u64> = state
            .live
            .iter()
            .filter(|id| !state.asleep.contains_key(id))
            .copied()
            .collect();
        for id in &awake {
            self.start_child(*id).await;
        }
        if !state.live.is_empty() {
            tracing::info!(category = K::CATEGORY, started = awake.len(), asleep = state.asleep.len(), elapsed = ?started.elapsed(), "started resource actors");
        }
        self.registry.mark_started();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ManagerMsg::Events(seen, next, reply) => {
                for event in seen {
                    match event {
                        Seen::Created(id) => {
                            if state.live.insert(id) {
                                self.start_child(id).await;
                            }
                        }
                        Seen::Deleted(id) => {
                            self.registry.mark_gone(id);
                            if let Some(asleep) = state.asleep.remove(&id) {
                                let _ = self.sleepers.remove(id, &asleep);
                                self.metrics.asleep.with_label_values(&[K::CATEGORY]).dec();
                            }
                            if state.live.remove(&id) {
                                let _ = self
                                    .supervisor
                                    .send_message(SupervisorMsg::Stop(Self::child_key(id)));
                            }
                        }
                        Seen::Other(id, revision) => {
                            if state
                                .asleep
                                .get(&id)
                                .is_some_and(|a| a.is_woken_by(revision))
                            {
                                self.wake(state, id).await;
                            }
                        }
                    }
                }
                state.next = next;
                // The category also holds every event of every resource: save by distance
                // read, so a restart never rescans much of it.
                if next.saturating_sub(state.saved_at) >= SNAPSHOT_EVERY_POSITIONS {
                    self.save(state);
                }
                let _ = reply.send(());
            }
            ManagerMsg::Wake(id) => self.wake(state, id).await,
            ManagerMsg::Passivate(id, asleep, reply) => {
                let _ = reply.send(self.passivate(state, id, asleep));
                keep_ticking(&myself, state);
            }
            ManagerMsg::Tick => {
                if !state.asleep.is_empty() {
                    match self.sleepers.due(self.kind.now()) {
                        Ok(due) => {
                            for id in due {
                                self.wake(state, id).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(category = K::CATEGORY, error = %e, "timer index unreadable")
                        }
                    }
                }
                keep_ticking(&myself, state);
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
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        self.save(state);
        Ok(())
    }
}

/// Starts the manager of kind `K` under the application's supervisor and waits until it has
/// started the children that are awake. `registry` is where other actors find them.
pub async fn start_manager<K: ManagedKind>(
    app: &App,
    kind: Arc<K>,
    registry: Registry<K::Msg>,
) -> Result<(), String> {
    let sleepers = Sleepers::open(&app.store, K::CATEGORY).map_err(|e| e.to_string())?;
    let started = registry.clone();
    let (journal, store) = (app.journal.clone(), app.store.clone());
    let supervisor = app.supervisor.clone();
    let metrics = app.metrics.passivation.clone();
    let spec = ChildSpec {
        key: format!("manager:{}", K::CATEGORY),
        kind: "manager",
        start: Arc::new(move |cell| {
            let manager = Manager {
                journal: journal.clone(),
                supervisor: supervisor.clone(),
                kind: kind.clone(),
                registry: registry.clone(),
                sleepers: sleepers.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
            };
            Box::pin(async move {
                Actor::spawn_linked(None, manager, (), cell)
                    .await
                    .map(|(actor, _)| actor.get_cell())
                    .map_err(|e| e.to_string())
            })
        }),
    };
    app.start_child(spec).await?;
    // Ready means the awake actors run (a rule's dedup keys are rebuilt before the first
    // webhook is answered), as it did before managers started them.
    started.wait_started().await;
    Ok(())
}

/// How long a caller should wait before looking a resource up again after [`Lookup::Unavailable`].
pub const RETRY_LOOKUP: Duration = Duration::from_millis(5);
