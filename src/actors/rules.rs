//! Rules as a kind of resource for the generic [`Manager`](super::manager::Manager): one
//! [`RuleActor`] per rule, started when `rule.created` is committed, stopped for good on
//! `rule.deleted`, passivated when idle and woken by the next event of its stream.

use std::sync::Arc;

use ractor::{ActorCell, ActorRef};

use super::manager::{ManagedKind, Registry, spawn_linked, start_manager};
use super::rule::{ActionLauncher, RuleActor, RuleMsg};
use crate::app::App;
use crate::codec::EventBody;
use crate::domain::rule::{RuleCreated, RuleDeleted};
use crate::journal::Position;

/// The rule kind.
pub struct Rules {
    app: Arc<App>,
}

impl ManagedKind for Rules {
    type Msg = RuleMsg;
    const CATEGORY: &'static str = "rule";
    const CREATED: &'static str = RuleCreated::TYPE;
    const DELETED: &'static str = RuleDeleted::TYPE;

    async fn spawn(
        self: Arc<Self>,
        id: u64,
        registry: Registry<RuleMsg>,
        supervisor: ActorCell,
    ) -> Result<ActorRef<RuleMsg>, String> {
        let app = &self.app;
        let launcher: Arc<dyn ActionLauncher> = app.launcher.clone();
        let actor = RuleActor {
            id,
            journal: app.journal.clone(),
            launcher,
            metrics: app.metrics.inbound.clone(),
            budget: app.config.conditions.budget(),
            pool: app.eval_pool.clone(),
            parking: app.parking.clone(),
            store: app.rule_store.clone(),
            keys: app.data_keys.clone(),
            registry,
            idle_after: app.config.actors.idle(),
        };
        spawn_linked(actor, supervisor).await
    }

    fn passivates(&self) -> bool {
        self.app.config.actors.idle().is_some()
    }

    /// The rules view, caught up to the start-up head before actors start.
    fn seed(&self) -> Option<(Vec<u64>, Position)> {
        let ids = self.app.views.rules.read().all().map(|r| r.id).collect();
        Some((ids, self.app.start_position))
    }
}

/// Starts the rule manager (which starts one actor per rule).
pub async fn start(app: &Arc<App>) -> Result<(), String> {
    start_manager(app, Arc::new(Rules { app: app.clone() }), app.rules.clone()).await
}
