//! The supervisor: spawns children linked to itself and restarts any that fails.
//!
//! A child is described by a [`ChildSpec`], a closure that starts it afresh; every child
//! rebuilds its state from the journal (snapshot plus tail) in `pre_start`, so restarting is
//! just spawning again. Restarts back off exponentially while a child keeps failing, and are
//! counted in the `hookforge_actor_restarts_total` metric.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

/// Starts a child linked to the given supervisor cell.
pub type StartFn = Arc<
    dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, String>> + Send>>
        + Send
        + Sync,
>;

/// How to (re)start one supervised child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique key, e.g. `projector:audit` or `rule:7`.
    pub key: String,
    /// Kind, the metric label (`projector`, `rule`, `endpoint`).
    pub kind: &'static str,
    /// Starts the child.
    pub start: StartFn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Messages the supervisor handles.
pub enum SupervisorMsg {
    /// Start and supervise a child; replies once it is running (or failed to start).
    Start(ChildSpec, RpcReplyPort<Result<(), String>>),
    /// Stop a child for good (its resource was deleted); no restart follows.
    Stop(String),
    /// Restart a child after a back-off delay (sent by the supervisor to itself).
    Restart(ChildSpec),
    /// The keys of running children.
    Children(RpcReplyPort<Vec<String>>),
    /// Stop every child (no restarts) and reply once all have stopped.
    Shutdown(RpcReplyPort<()>),
}

/// The supervisor actor.
pub struct Supervisor {
    /// Restart counts by child kind.
    pub restarts: IntCounterVec,
}

/// The supervisor's state: running children and their failure history.
pub struct SupervisorState {
    running: HashMap<ActorId, ChildSpec>,
    by_key: HashMap<String, ActorCell>,
    failures: HashMap<String, (u32, Instant)>,
}

impl Supervisor {
    async fn start_child(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        spec: ChildSpec,
    ) -> Result<(), String> {
        if state.by_key.contains_key(&spec.key) {
            return Ok(());
        }
        match (spec.start)(myself.get_cell()).await {
            Ok(cell) => {
                state.by_key.insert(spec.key.clone(), cell.clone());
                state.running.insert(cell.get_id(), spec);
                Ok(())
            }
            Err(e) => {
                tracing::error!(child = %spec.key, error = %e, "child failed to start");
                self.schedule_restart(myself, state, spec);
                Err(e)
            }
        }
    }

    fn schedule_restart(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        spec: ChildSpec,
    ) {
        self.restarts.with_label_values(&[spec.kind]).inc();
        let now = Instant::now();
        let entry = state.failures.entry(spec.key.clone()).or_insert((0, now));
        // A child that ran quietly for a minute starts its back-off from scratch.
        if now.duration_since(entry.1) > Duration::from_secs(60) {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        let delay = restart_delay(entry.0);
        tracing::warn!(child = %spec.key, attempt = entry.0, ?delay, "restarting child");
        myself.send_after(delay, move || SupervisorMsg::Restart(spec));
    }
}

/// Back-off before the `failures`-th consecutive restart: 10 ms doubling up to 5 s.
pub fn restart_delay(failures: u32) -> Duration {
    let millis = 10u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_millis(millis.min(5_000))
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            running: HashMap::new(),
            by_key: HashMap::new(),
            failures: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Start(spec, reply) => {
                let result = self.start_child(&myself, state, spec).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Restart(spec) => {
                let _ = self.start_child(&myself, state, spec).await;
            }
            SupervisorMsg::Stop(key) => {
                if let Some(cell) = state.by_key.remove(&key) {
                    state.running.remove(&cell.get_id());
                    state.failures.remove(&key);
                    cell.stop(Some("stopped by supervisor".into()));
                }
            }
            SupervisorMsg::Shutdown(reply) => {
                state.running.clear();
                state.failures.clear();
                for (_, cell) in state.by_key.drain() {
                    let _ = cell
                        .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
                        .await;
                }
                let _ = reply.send(());
            }
            SupervisorMsg::Children(reply) => {
                let mut keys: Vec<String> = state.by_key.keys().cloned().collect();
                keys.sort();
                let _ = reply.send(keys);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "terminated".into()))
            }
            _ => return Ok(()),
        };
        // Children stopped on purpose were already removed from `running`.
        if let Some(spec) = state.running.remove(&cell.get_id()) {
            state.by_key.remove(&spec.key);
            tracing::error!(child = %spec.key, reason = %why, "supervised child stopped unexpectedly");
            self.schedule_restart(&myself, state, spec);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_back_off_and_cap() {
        assert_eq!(restart_delay(1), Duration::from_millis(10));
        assert_eq!(restart_delay(2), Duration::from_millis(20));
        assert_eq!(restart_delay(5), Duration::from_millis(160));
        assert_eq!(restart_delay(30), Duration::from_secs(5));
    }
}
