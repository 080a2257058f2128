//! Where the actor of each resource of one kind is: running, being passivated, asleep, or gone.
//!
//! Other actors reach a resource's actor only through the registry ([`Registry::send`]), which
//! sends while holding the registry's lock. Passivation switches a slot under the same lock, so
//! every message sent to an actor is in its mailbox before the actor is told to sleep, and none
//! can reach it afterwards: nothing sent is lost to a stopping actor. Looking up an asleep actor
//! asks its manager to wake it (once) and answers [`Lookup::Unavailable`]: the caller retries
//! shortly, by which time the actor is running again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ractor::{ActorRef, MessagingErr};

use super::manager::{ManagerMsg, RETRY_LOOKUP};

/// Where a resource's actor is, as far as the registry knows.
pub enum Lookup<M> {
    /// Running; send to it.
    Running(ActorRef<M>),
    /// Deleted: nothing will run for it again.
    Gone,
    /// Not running right now (starting, restarting, waking up): try again shortly.
    Unavailable,
}

/// What [`Registry::send`] did with a message.
pub enum Sent<M> {
    /// It is in the actor's mailbox.
    Delivered,
    /// The resource was deleted; here is the message back.
    Gone(M),
    /// No actor runs right now (it is being woken if it was asleep): retry with the message.
    Unavailable(M),
}

enum Slot<M> {
    Running(ActorRef<M>),
    /// Asked to sleep; `woken` once someone looked it up meanwhile (the sleep is then refused).
    Sleeping {
        actor: ActorRef<M>,
        woken: bool,
    },
    /// Passivated; `woken` once its manager was asked to wake it.
    Asleep {
        woken: bool,
    },
}

struct Inner<M> {
    slots: HashMap<u64, Slot<M>>,
    gone: HashSet<u64>,
    /// The manager, which wakes asleep resources (set when it starts).
    manager: Option<ActorRef<ManagerMsg>>,
}

/// The actors of one manager by resource id; clones share it.
pub struct Registry<M> {
    inner: Arc<Mutex<Inner<M>>>,
    /// Whether the manager has started every awake actor (once, at start-up).
    started: Arc<tokio::sync::watch::Sender<bool>>,
}

impl<M> Clone for Registry<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            started: self.started.clone(),
        }
    }
}

impl<M> Default for Registry<M> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                slots: HashMap::new(),
                gone: HashSet::new(),
                manager: None,
            })),
            started: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl<M: ractor::Message> Registry<M> {
    fn lock(&self) -> MutexGuard<'_, Inner<M>> {
        self.inner.lock().expect("registry poisoned")
    }

    /// Finds the actor of resource `id` (waking it if it is asleep).
    pub fn get(&self, id: u64) -> Lookup<M> {
        Self::find(&mut self.lock(), id)
    }

    fn find(inner: &mut Inner<M>, id: u64) -> Lookup<M> {
        if inner.gone.contains(&id) {
            return Lookup::Gone;
        }
        let manager = inner.manager.clone();
        match inner.slots.get_mut(&id) {
            Some(Slot::Running(actor)) => Lookup::Running(actor.clone()),
            Some(Slot::Sleeping { woken, .. }) => {
                *woken = true;
                Lookup::Unavailable
            }
            Some(Slot::Asleep { woken }) => {
                if !*woken && let Some(manager) = manager {
                    *woken = manager.cast(ManagerMsg::Wake(id)).is_ok();
                }
                Lookup::Unavailable
            }
            None => Lookup::Unavailable,
        }
    }

    /// Waits up to `timeout` for the actor of `id` to run (it may be starting or waking up).
    pub async fn wait_running(&self, id: u64, timeout: Duration) -> Lookup<M> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.get(id) {
                Lookup::Unavailable if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_LOOKUP).await
                }
                found => return found,
            }
        }
    }

    /// Sends `msg` to the actor of `id` if it runs, under the lock (see the module docs).
    pub fn send(&self, id: u64, msg: M) -> Sent<M> {
        let mut inner = self.lock();
        match Self::find(&mut inner, id) {
            Lookup::Running(actor) => match actor.send_message(msg) {
                Ok(()) => Sent::Delivered,
                // The actor is stopping (a crash): its restart will register a new one.
                Err(MessagingErr::SendErr(back)) => Sent::Unavailable(back),
                // Not returned by a plain send; nothing came back to retry with.
                Err(_) => Sent::Delivered,
            },
            Lookup::Gone => Sent::Gone(msg),
            Lookup::Unavailable => Sent::Unavailable(msg),
        }
    }

    /// Whether resource `id` was deleted.
    pub fn is_gone(&self, id: u64) -> bool {
        self.lock().gone.contains(&id)
    }

    /// Records the (re)started actor of `id`, unless the resource is gone.
    pub fn insert(&self, id: u64, actor: ActorRef<M>) {
        let mut inner = self.lock();
        if !inner.gone.contains(&id) {
            inner.slots.insert(id, Slot::Running(actor));
        }
    }

    /// Marks `id` deleted; lookups answer [`Lookup::Gone`] from now on.
    pub fn mark_gone(&self, id: u64) {
        let mut inner = self.lock();
        inner.slots.remove(&id);
        inner.gone.insert(id);
    }

    /// Ids with a running actor, ascending.
    pub fn running(&self) -> Vec<u64> {
        let inner = self.lock();
        let mut ids: Vec<u64> = inner
            .slots
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Running(_)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Sets the manager that wakes asleep resources.
    pub(super) fn set_manager(&self, manager: ActorRef<ManagerMsg>) {
        let mut inner = self.lock();
        inner.manager = Some(manager);
        // A waker that was lost with a failed manager never woke these: ask the new one.
        for slot in inner.slots.values_mut() {
            if let Slot::Asleep { woken } = slot {
                *woken = false;
            }
        }
    }

    /// Notes that the manager has started every awake actor.
    pub(super) fn mark_started(&self) {
        self.started.send_replace(true);
    }

    /// Waits until the manager has started every awake actor.
    pub async fn wait_started(&self) {
        let mut started = self.started.subscribe();
        let _ = started.wait_for(|s| *s).await;
    }

    /// The manager, if it runs.
    pub(super) fn manager(&self) -> Option<ActorRef<ManagerMsg>> {
        self.lock().manager.clone()
    }

    /// Starts passivating `actor`, the running actor of `id`: from now on nothing more is sent
    /// to it. False if it is not the registered actor.
    pub fn begin_sleep(&self, id: u64, actor: &ActorRef<M>) -> bool {
        let mut inner = self.lock();
        match inner.slots.get(&id) {
            Some(Slot::Running(running)) if running.get_id() == actor.get_id() => {
                let actor = running.clone();
                inner.slots.insert(
                    id,
                    Slot::Sleeping {
                        actor,
                        woken: false,
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Completes the passivation of `id`; false (and `id` runs on) if someone looked it up
    /// since [`Self::begin_sleep`].
    pub(super) fn finish_sleep(&self, id: u64) -> bool {
        let mut inner = self.lock();
        match inner.slots.remove(&id) {
            Some(Slot::Sleeping { woken: false, .. }) => {
                inner.slots.insert(id, Slot::Asleep { woken: false });
                true
            }
            Some(Slot::Sleeping { actor, woken: true }) => {
                inner.slots.insert(id, Slot::Running(actor));
                false
            }
            Some(other) => {
                inner.slots.insert(id, other);
                false
            }
            None => false,
        }
    }

    /// Cancels a passivation begun with [`Self::begin_sleep`]: `id` runs on.
    pub fn resume(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(&id)
            && let Slot::Sleeping { actor, .. } = slot
        {
            *slot = Slot::Running(actor.clone());
        }
    }

    /// Records `id` as asleep (found so at start-up).
    pub(super) fn mark_asleep(&self, id: u64) {
        let mut inner = self.lock();
        if !inner.gone.contains(&id) {
            inner.slots.insert(id, Slot::Asleep { woken: false });
        }
    }
}
