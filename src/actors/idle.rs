//! Passivation, as a resource actor sees it: notice being idle, ask to sleep, then stop working.
//!
//! A child of a [`Manager`](super::manager::Manager) keeps an [`Idle`] in its state, calls
//! [`Idle::worked`] on every message that is work, and handles two messages of its own:
//! - the periodic check, [`Idle::check`]: if idle and nothing is in progress, it begins the sleep
//!   with [`Registry::begin_sleep`] (nothing more is sent to it from then on) and sends itself
//!   the second message, which queues behind whatever was sent before;
//! - that message, [`Idle::sleep`]: if it is still idle and quiescent, it asks the manager; if
//!   the manager agrees, [`Idle::asleep`] is set and every later message is void until the
//!   manager stops it. Otherwise it calls [`Registry::resume`] and runs on.
//!
//! The manager agrees only if the actor's stream has nothing past the revision it handled, so
//! an asleep actor never sits on unread events: anything appended later wakes it.

use std::time::{Duration, Instant};

use ractor::{ActorRef, Message};
use tokio::task::JoinHandle;

use super::manager::ManagerMsg;
use super::registry::Registry;
use super::sleepers::Asleep;

/// A child's idleness.
pub struct Idle {
    after: Option<Duration>,
    last_work: Instant,
    /// The manager agreed to passivate this actor: it is stopping; ignore everything.
    pub asleep: bool,
    ticker: Option<JoinHandle<()>>,
}

impl Idle {
    /// Starts the periodic check (`tick` builds its message) if passivation is on (`after`).
    pub fn start<M: Message>(
        after: Option<Duration>,
        myself: &ActorRef<M>,
        tick: fn() -> M,
    ) -> Self {
        let ticker = after.map(|after| {
            let every = (after / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
            myself.send_interval(every, tick)
        });
        Self {
            after,
            last_work: Instant::now(),
            asleep: false,
            ticker,
        }
    }

    /// Notes that the actor did some work.
    pub fn worked(&mut self) {
        self.last_work = Instant::now();
    }

    /// Whether the actor has had no work for its idle time.
    pub fn is_idle(&self) -> bool {
        self.after
            .is_some_and(|after| self.last_work.elapsed() >= after)
    }

    /// The periodic check. `quiescent` is how the actor would sleep, if nothing is in progress;
    /// `sleep` is its message for [`Self::sleep`].
    pub fn check<M: Message>(
        &self,
        registry: &Registry<M>,
        id: u64,
        myself: &ActorRef<M>,
        quiescent: Option<Asleep>,
        sleep: M,
    ) {
        if self.is_idle() && quiescent.is_some() && registry.begin_sleep(id, myself) {
            let _ = myself.send_message(sleep);
        }
    }

    /// The sleep message queued by [`Self::check`]: asks the manager if the actor is still idle
    /// and `quiescent`, and runs on otherwise (or if the manager refuses).
    pub async fn sleep<M: Message>(
        &mut self,
        registry: &Registry<M>,
        id: u64,
        quiescent: Option<Asleep>,
    ) {
        match quiescent.filter(|_| self.is_idle()) {
            Some(asleep) => self.asleep = ask_to_sleep(registry, id, asleep).await,
            None => registry.resume(id),
        }
    }

    /// Stops the periodic check (in `post_stop`).
    pub fn stop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

/// Asks the manager to passivate resource `id`, begun with [`Registry::begin_sleep`]. True if it
/// agreed (the actor is being stopped); otherwise the actor was resumed and runs on.
async fn ask_to_sleep<M: Message>(registry: &Registry<M>, id: u64, asleep: Asleep) -> bool {
    let agreed = match registry.manager() {
        Some(manager) => ractor::call!(manager, ManagerMsg::Passivate, id, asleep).unwrap_or(false),
        None => false,
    };
    if !agreed {
        registry.resume(id);
    }
    agreed
}
