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
//!    (`Actor::spawn_linked(None, actor, args, supervisor)`).
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
//!         let actor = RuleActor { app: self.app.clone(), id };
//!         Actor::spawn_linked(None, actor, (), supervisor).await.map(|(a, _)| a).map_err(|e| e.to_string())
//!     }
//! }
//! start_manager(&app, Arc::new(Rules { app: app.clone() }), registry).await?;
//! ```

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, Message, RpcReplyPort};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::supervisor::{ChildSpec, SupervisorMsg};
use crate::app::App;
use crate::journal::{EventFilter, Journal, JournalError, Position, RecordedEvent, Revision};

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
}

/// Where a resource's actor is, as far as the registry knows.
pub enum Lookup<M> {
    /// Running; send to it.
    Running(ActorRef<M>),
    /// Deleted: nothing will run for it again.
    Gone,
    /// Not running right now (starting, restarting): try again shortly.
    Unavailable,
}

struct RegistryInner<M> {
    running: HashMap<u64, ActorRef<M>>,
    gone: HashSet<u64>,
}

/// The running children of one manager by resource id; clones share it.
pub struct Registry<M> {
    inner: Arc<RwLock<RegistryInner<M>>>,
}

impl<M> Clone for Registry<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M> Default for Registry<M> {
    fn default() -> Self {
        Self {
            inner: Arc::new(RwLock::new(RegistryInner {
                running: HashMap::new(),
                gone: HashSet::new(),
            })),
        }
    }
}

impl<M> Registry<M> {
    /// Finds the actor of resource `id`.
    pub fn get(&self, id: u64) -> Lookup<M> {
        let inner = self.inner.read().expect("registry poisoned");
        if inner.gone.contains(&id) {
            return Lookup::Gone;
        }
        match inner.running.get(&id) {
            Some(actor) => Lookup::Running(actor.clone()),
            None => Lookup::Unavailable,
        }
    }

    /// Whether resource `id` was deleted.
    pub fn is_gone(&self, id: u64) -> bool {
        self.inner
            .read()
            .expect("registry poisoned")
            .gone
            .contains(&id)
    }

    /// Records the (re)started actor of `id`, unless the resource is gone.
    pub fn insert(&self, id: u64, actor: ActorRef<M>) {
        let mut inner = self.inner.write().expect("registry poisoned");
        if !inner.gone.contains(&id) {
            inner.running.insert(id, actor);
        }
    }

    /// Marks `id` deleted; lookups answer [`Lookup::Gone`] from now on.
    pub fn mark_gone(&self, id: u64) {
        let mut inner = self.inner.write().expect("registry poisoned");
        inner.running.remove(&id);
        inner.gone.insert(id);
    }

    /// Ids with a registered actor, ascending.
    pub fn running(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .inner
            .read()
            .expect("registry poisoned")
            .running
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }
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

/// Messages of the manager.
pub enum ManagerMsg {
    /// Lifecycle events from the category subscription; everything below the position was read.
    Events(Vec<RecordedEvent>, Position, RpcReplyPort<()>),
}

/// The manager actor for resources of kind `K`.
pub struct Manager<K: ManagedKind> {
    journal: Journal,
    supervisor: ActorRef<SupervisorMsg>,
    kind: Arc<K>,
    registry: Registry<K::Msg>,
}

/// The manager's state: live ids and where it has read the category to.
pub struct ManagerState {
    live: BTreeSet<u64>,
    next: Position,
    pump: JoinHandle<()>,
    saved_at: Position,
}

fn snapshot_tag<K: ManagedKind>() -> String {
    format!("manager:{}@{}", K::CATEGORY, env!("CARGO_PKG_VERSION"))
}

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

    fn save(&self, state: &mut ManagerState) {
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
        let (live, next) = match self.journal.load_snapshot(&snapshot_tag::<K>()) {
            Ok(Some((position, bytes))) => match postcard::from_bytes::<Vec<u64>>(&bytes) {
                Ok(ids) => (ids.into_iter().collect(), position),
                Err(_) => (BTreeSet::new(), 0),
            },
            _ => (BTreeSet::new(), 0),
        };
        let mut subscription = self
            .journal
            .subscribe(next, EventFilter::category(K::CATEGORY));
        let pump = tokio::spawn(async move {
            loop {
                let batch = match subscription.next_batch(BATCH).await {
                    Ok(batch) => batch,
                    Err(JournalError::Closed(_)) => break,
                    Err(e) => {
                        myself.stop(Some(format!("journal read failed: {e}")));
                        break;
                    }
                };
                let next = subscription.position();
                let lifecycle = batch
                    .into_iter()
                    .filter(|e| e.event_type == K::CREATED || e.event_type == K::DELETED)
                    .collect();
                if ractor::call!(myself, ManagerMsg::Events, lifecycle, next).is_err() {
                    break;
                }
            }
        });
        Ok(ManagerState {
            live,
            next,
            pump,
            saved_at: next,
        })
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        for id in &state.live {
            self.start_child(*id).await;
        }
        if !state.live.is_empty() {
            tracing::info!(category = K::CATEGORY, children = state.live.len(), elapsed = ?started.elapsed(), "started resource actors");
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ManagerMsg::Events(events, next, reply) = msg;
        let prefix = format!("{}-", K::CATEGORY);
        for event in &events {
            let Some(id) = event
                .stream
                .strip_prefix(&prefix)
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if event.event_type == K::CREATED {
                if state.live.insert(id) {
                    self.start_child(id).await;
                }
            } else {
                self.registry.mark_gone(id);
                if state.live.remove(&id) {
                    let _ = self
                        .supervisor
                        .send_message(SupervisorMsg::Stop(Self::child_key(id)));
                }
            }
        }
        state.next = next;
        // The category also holds every event of every resource: save by distance read, so a
        // restart never rescans much of it.
        if next.saturating_sub(state.saved_at) >= SNAPSHOT_EVERY_POSITIONS {
            self.save(state);
        }
        let _ = reply.send(());
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.pump.abort();
        self.save(state);
        Ok(())
    }
}

/// Starts the manager of kind `K` under the application's supervisor; it then starts the
/// children. `registry` is where other actors find them.
pub async fn start_manager<K: ManagedKind>(
    app: &App,
    kind: Arc<K>,
    registry: Registry<K::Msg>,
) -> Result<(), String> {
    let journal = app.journal.clone();
    let supervisor = app.supervisor.clone();
    let spec = ChildSpec {
        key: format!("manager:{}", K::CATEGORY),
        kind: "manager",
        start: Arc::new(move |cell| {
            let manager = Manager {
                journal: journal.clone(),
                supervisor: supervisor.clone(),
                kind: kind.clone(),
                registry: registry.clone(),
            };
            Box::pin(async move {
                Actor::spawn_linked(None, manager, (), cell)
                    .await
                    .map(|(actor, _)| actor.get_cell())
                    .map_err(|e| e.to_string())
            })
        }),
    };
    app.start_child(spec).await
}

/// How long a caller should wait before looking a resource up again after [`Lookup::Unavailable`].
pub const RETRY_LOOKUP: Duration = Duration::from_millis(5);
