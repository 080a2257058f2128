//! The rule actor: one per event rule. It folds the rule's stream into a [`RuleState`], decides
//! every received webhook in log order (duplicate → conditions → throttle), appends the decision,
//! fires the actions and appends their results.
//!
//! Decisions are made from the log alone, so a rule that crashes or restarts rebuilds exactly the
//! state it had (from its snapshot plus the tail of its stream) and decides whatever it had not
//! decided yet. Its own appends come back through its subscription and are folded idempotently.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::codec::EventBody as _;
use crate::conditions::{
    Budget, ConditionResult, EvalPool, Json, RuleEvaluation, RuleProgram, ThrottleKey,
};
use crate::domain::Event;
use crate::domain::rule::{self, Action};
use crate::domain::rule_state::{Pending, RuleState, received};
use crate::domain::webhook::{
    ActionResult, ActionStatus, ActionsFired, OpenedWebhook, Outcome, WebhookParked,
    WebhookReceived,
};
use crate::journal::{
    AppendTicket, ExpectedRevision, Journal, JournalError, Metadata, RecordedEvent,
};
use crate::metrics::InboundMetrics;
use crate::secrets::{DataKeys, Unreadable};
use crate::store::Writes;

use super::idle::Idle;
use super::manager::Registry;
use super::rule_store::{DiskSeen, RuleStore};
use super::sleepers::Asleep;

/// Rounds of decisions between saves of the rule's state (at most).
const SAVE_EVERY_ROUNDS: u32 = 64;
/// Time between saves of the rule's state while webhooks flow (at most).
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// Time between sweeps of the seen keys out of the dedup window.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);
/// Stream events read per catch-up batch.
const BATCH: usize = 512;

/// What a fired action needs to know.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    /// The rule firing.
    pub rule: u64,
    /// Its name.
    pub rule_name: String,
    /// Its organization.
    pub organization: u64,
    /// The event log that made it fire.
    pub event_log_id: u64,
    /// The webhook.
    pub webhook: OpenedWebhook,
    /// The action.
    pub action: Action,
    /// Correlation id of the request that delivered the webhook.
    pub correlation_id: String,
}

/// Fires one action (launches a job or workflow, sends a notification).
pub trait ActionLauncher: Send + Sync + 'static {
    /// Fires `request.action`; failures are results, not errors.
    fn launch(
        &self,
        request: LaunchRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = ActionResult> + Send + '_>>;
}

/// The rule actor's configuration.
#[derive(Clone)]
pub struct RuleActor {
    /// Rule id.
    pub id: u64,
    /// The journal.
    pub journal: Journal,
    /// Fires actions.
    pub launcher: Arc<dyn ActionLauncher>,
    /// Counters.
    pub metrics: InboundMetrics,
    /// What one evaluation of the rule may cost.
    pub budget: Budget,
    /// Where evaluations that may be expensive run.
    pub pool: EvalPool,
    /// Where webhooks the rule cannot process are set aside.
    pub parking: crate::actors::Parking,
    /// Where the rule's state and seen keys live.
    pub store: RuleStore,
    /// Opens the organization's sealed payloads.
    pub keys: Arc<DataKeys>,
    /// Where the rule actors are found (and ask to passivate).
    pub registry: Registry<RuleMsg>,
    /// Idle time before passivation (`None`: never).
    pub idle_after: Option<std::time::Duration>,
}

/// A dry run's input.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The payload to test (JSON).
    pub payload: serde_json::Value,
    /// Headers (any case).
    pub headers: Vec<(String, String)>,
    /// Test time (µs), for the throttle check.
    pub now: i64,
}

/// What a dry run reports.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunReport {
    /// Whether every condition held.
    pub conditions_matched: bool,
    /// Each condition with its result.
    pub condition_results: Vec<serde_json::Value>,
    /// Whether the rule would be throttled now.
    pub throttled: bool,
    /// The throttle key, if the rule has one.
    pub throttle_key: Option<String>,
    /// The actions that would fire.
    pub actions: Vec<serde_json::Value>,
}

/// Messages a rule actor handles.
pub enum RuleMsg {
    /// New events of the rule's stream, from its subscription.
    Events(Vec<RecordedEvent>, RpcReplyPort<()>),
    /// Evaluate a payload without recording or firing anything.
    DryRun(DryRun, RpcReplyPort<Result<DryRunReport, String>>),
    /// Time to see whether the actor has been idle long enough to passivate.
    IdleCheck,
    /// Passivate now if still idle (queued behind everything sent before the sleep began).
    Sleep,
}

/// Running state.
pub struct RuleActorState {
    state: RuleState,
    program: Option<RuleProgram>,
    pump: Option<JoinHandle<()>>,
    /// Seen keys of the rounds since the last save.
    unsaved: Writes,
    horizon: Option<i64>,
    rounds: u32,
    saved_at: std::time::Instant,
    failed: bool,
    swept_at: std::time::Instant,
    expired: Option<Vec<(Vec<u8>, i64)>>,
    idle: Idle,
}

impl RuleActor {
    fn stream(&self) -> String {
        rule::stream(self.id)
    }

    fn metadata(&self, correlation_id: &str) -> Metadata {
        Metadata {
            actor: format!("rule:{}", self.id),
            correlation_id: correlation_id.to_owned(),
        }
    }

    /// The rule's state: as last saved in the store, plus whatever its stream holds past it.
    fn load(&self) -> Result<RuleState, ActorProcessingErr> {
        let mut state = self
            .store
            .state(self.id)?
            .unwrap_or_else(|| RuleState::new(self.id));
        let saved = state.next_revision;
        let mut writes = Writes::new(self.store.table());
        let mut seen = DiskSeen {
            rule: self.id,
            writes: &mut writes,
            horizon: None,
        };
        loop {
            let batch = self
                .journal
                .read_stream(&self.stream(), state.next_revision, BATCH)?;
            if batch.is_empty() {
                break;
            }
            for record in &batch {
                state.apply(record, &mut seen);
            }
        }
        if state.next_revision != saved {
            self.store.save(&mut writes, self.id, &state);
            writes.commit_bare()?;
        }
        Ok(state)
    }

    /// Saves the state with the seen keys the last rounds added, in one atomic batch, every
    /// [`SAVE_EVERY_ROUNDS`] rounds or [`SAVE_EVERY`] (and at `force`). Called once the rounds'
    /// decisions are durable, so the store is never ahead of the log; a crash loses at most
    /// what the log replays.
    fn save(&self, actor: &mut RuleActorState, force: bool) -> Result<(), ActorProcessingErr> {
        actor.rounds += 1;
        if !force && actor.rounds < SAVE_EVERY_ROUNDS && actor.saved_at.elapsed() < SAVE_EVERY {
            return Ok(());
        }
        let mut writes = std::mem::replace(&mut actor.unsaved, Writes::new(self.store.table()));
        if let Some(expired) = actor.expired.take() {
            self.store.forget_expired(&mut writes, expired)?;
        }
        self.store.save(&mut writes, self.id, &actor.state);
        writes.commit_bare()?;
        actor.rounds = 0;
        actor.saved_at = std::time::Instant::now();
        Ok(())
    }

    /// Every [`SWEEP_EVERY`], finds (off this thread) the seen keys out of the window; the next
    /// save forgets them.
    async fn sweep(&self, actor: &mut RuleActorState) -> Result<(), ActorProcessingErr> {
        let Some(horizon) = actor.horizon else {
            return Ok(());
        };
        if actor.swept_at.elapsed() < SWEEP_EVERY || actor.expired.is_some() {
            return Ok(());
        }
        actor.swept_at = std::time::Instant::now();
        let (store, id) = (self.store.clone(), self.id);
        let expired = tokio::task::spawn_blocking(move || store.expired(id, horizon)).await??;
        actor.expired = Some(expired);
        Ok(())
    }

    /// The received webhook behind `pending`, opened (`None` once erased): from the batch at
    /// hand, or from the journal.
    fn webhook(
        &self,
        pending: &Pending,
        at_hand: &HashMap<u64, RecordedEvent>,
    ) -> Result<(Option<OpenedWebhook>, String), String> {
        let record = match at_hand.get(&pending.event_log_id) {
            Some(record) => record.clone(),
            None => self
                .journal
                .read_stream(&self.stream(), pending.revision, 1)
                .map_err(|e| format!("the received webhook cannot be read: {e}"))?
                .into_iter()
                .next()
                .ok_or("the received webhook is missing from its stream")?,
        };
        let opened = self.open(received(&record)?)?;
        Ok((opened, record.metadata.correlation_id))
    }

    /// Opens `webhook`'s content: `None` once an erasure destroyed it, an error (to park it
    /// with) when it does not open.
    fn open(&self, mut webhook: WebhookReceived) -> Result<Option<OpenedWebhook>, String> {
        let content = std::mem::take(&mut webhook.content);
        match self
            .keys
            .open(webhook.organization, WebhookReceived::TYPE, content)
        {
            Ok(content) => Ok(Some(OpenedWebhook {
                received: webhook,
                content,
            })),
            Err(Unreadable::Erased) => Ok(None),
            Err(e) => Err(format!("the received webhook does not open: {e}")),
        }
    }

    /// Sets webhook `event_log_id` aside for `reason`: journaled (the event log shows
    /// `parked`), counted, and listed for `hookforge parked retry`.
    fn park(
        &self,
        actor: &mut RuleActorState,
        event_log_id: u64,
        reason: String,
        tickets: &mut Vec<AppendTicket>,
    ) {
        self.parking
            .park(&format!("rule:{}", self.id), event_log_id, reason.clone());
        actor.state.park(event_log_id);
        let parked = WebhookParked {
            event_log_id,
            rule: self.id,
            organization: actor.state.organization,
            reason,
        };
        tickets.push(self.journal.append(
            self.stream(),
            ExpectedRevision::Any,
            vec![Event::from(parked).encode(self.metadata(""))],
        ));
    }

    /// Decides every undecided webhook, then fires every decided-but-unfired one.
    async fn process(
        &self,
        actor: &mut RuleActorState,
        at_hand: HashMap<u64, RecordedEvent>,
        seen: &mut DiskSeen<'_>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(config) = actor.state.config.clone() else {
            return Ok(());
        };
        let mut tickets: Vec<AppendTicket> = Vec::new();
        let mut webhooks: HashMap<u64, (Option<OpenedWebhook>, String)> = HashMap::new();
        let pending: Vec<Pending> = actor.state.undecided.values().cloned().collect();
        for pending in pending {
            let (webhook, correlation_id) = match self.webhook(&pending, &at_hand) {
                Ok(found) => found,
                Err(reason) => {
                    self.park(actor, pending.event_log_id, reason, &mut tickets);
                    continue;
                }
            };
            let evaluation = match (&actor.program, actor.state.needs_evaluation(&pending, seen)) {
                (Some(program), true) => {
                    let conditions = program.conditions().len();
                    self.metrics.conditions_evaluated.inc_by(conditions as u64);
                    Some(match &webhook {
                        Some(webhook) => {
                            self.evaluate(
                                program,
                                actor.state.organization,
                                &webhook.payload(),
                                &webhook.content.headers,
                            )
                            .await
                        }
                        None => RuleEvaluation::erased(conditions),
                    })
                }
                _ => None,
            };
            if let Some(failure) = evaluation.as_ref().and_then(|e| e.internal_error.clone()) {
                self.park(actor, pending.event_log_id, failure, &mut tickets);
                continue;
            }
            let decision = actor.state.decide(&pending, evaluation, seen);
            self.metrics
                .decisions
                .with_label_values(&[outcome_label(decision.outcome)])
                .inc();
            actor.state.apply_decision(&decision, seen);
            let metadata = self.metadata(&correlation_id);
            tickets.push(self.journal.append(
                self.stream(),
                ExpectedRevision::Any,
                vec![Event::from(decision).encode(metadata)],
            ));
            webhooks.insert(pending.event_log_id, (webhook, correlation_id));
        }
        let unfired: Vec<u64> = actor.state.unfired.keys().copied().collect();
        for event_log_id in unfired {
            let (webhook, correlation_id) = match webhooks.remove(&event_log_id) {
                Some(found) => found,
                None => {
                    let found = self.revision_of(event_log_id).and_then(|revision| {
                        let pending = Pending {
                            event_log_id,
                            revision,
                            received_at: 0,
                            event_guid: None,
                            replay_key: None,
                        };
                        self.webhook(&pending, &at_hand)
                    });
                    match found {
                        Ok(found) => found,
                        Err(reason) => {
                            self.park(actor, event_log_id, reason, &mut tickets);
                            continue;
                        }
                    }
                }
            };
            let mut results = Vec::with_capacity(config.actions.len());
            for action in &config.actions {
                let Some(webhook) = &webhook else {
                    results.push(ActionResult {
                        action_type: action.action_type,
                        target_id: action.target_id,
                        status: ActionStatus::Failed,
                        job_id: None,
                        workflow_job_id: None,
                        error: Some("the payload was erased before the action fired".into()),
                    });
                    continue;
                };
                let request = LaunchRequest {
                    rule: self.id,
                    rule_name: config.name.clone(),
                    organization: actor.state.organization,
                    event_log_id,
                    webhook: webhook.clone(),
                    action: action.clone(),
                    correlation_id: correlation_id.clone(),
                };
                // A launcher that panics fails this action only.
                let result = std::panic::AssertUnwindSafe(self.launcher.launch(request))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| ActionResult {
                        action_type: action.action_type,
                        target_id: action.target_id,
                        status: ActionStatus::Failed,
                        job_id: None,
                        workflow_job_id: None,
                        error: Some(format!(
                            "internal error: {}",
                            crate::conditions::panic_message(&*panic)
                        )),
                    });
                self.metrics
                    .actions
                    .with_label_values(&[action.action_type.as_str(), status_label(result.status)])
                    .inc();
                results.push(result);
            }
            actor.state.unfired.remove(&event_log_id);
            let fired = ActionsFired {
                event_log_id,
                rule: self.id,
                organization: actor.state.organization,
                results,
            };
            let metadata = self.metadata(&correlation_id);
            tickets.push(self.journal.append(
                self.stream(),
                ExpectedRevision::Any,
                vec![Event::from(fired).encode(metadata)],
            ));
        }
        // Pipelined: every append was submitted above; a failed one means the journal stopped,
        // and this actor must rebuild from the log rather than run ahead of it.
        for ticket in tickets {
            ticket.await?;
        }
        Ok(())
    }

    /// Evaluates the rule on one payload within its budget: inline when the program is linear,
    /// on the evaluation pool (in the organization's turn) when it may be expensive.
    async fn evaluate(
        &self,
        program: &RuleProgram,
        organization: u64,
        payload: &[u8],
        headers: &[(String, String)],
    ) -> RuleEvaluation {
        let budget = self.budget;
        if program.is_linear() {
            let headers = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            return program.evaluate(Json::Bytes(payload), headers, budget);
        }
        let conditions = program.conditions().len();
        let (program, payload, headers) = (program.clone(), payload.to_vec(), headers.to_vec());
        let evaluated = self
            .pool
            .run(organization, move || {
                let headers = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                program.evaluate(Json::Bytes(&payload), headers, budget)
            })
            .await;
        evaluated.unwrap_or_else(|e| RuleEvaluation::failed(conditions, &e.to_string()))
    }

    /// Folds `events`, decides and fires what they brought, then saves (now and then).
    async fn round(
        &self,
        actor: &mut RuleActorState,
        events: Vec<RecordedEvent>,
    ) -> Result<(), ActorProcessingErr> {
        let mut unsaved = std::mem::replace(&mut actor.unsaved, Writes::new(self.store.table()));
        let mut seen = DiskSeen {
            rule: self.id,
            writes: &mut unsaved,
            horizon: actor.horizon,
        };
        let mut at_hand = HashMap::new();
        let mut reconfigured = false;
        for record in events {
            let before = actor.state.next_revision;
            actor.state.apply(&record, &mut seen);
            if actor.state.next_revision == before {
                continue;
            }
            reconfigured |= record.event_type.starts_with("rule.");
            if record.event_type == <WebhookReceived as crate::codec::EventBody>::TYPE {
                at_hand.insert(record.position, record);
            }
        }
        if reconfigured {
            actor.program = compile(&actor.state);
        }
        let processed = self.process(actor, at_hand, &mut seen).await;
        actor.horizon = seen.horizon;
        actor.unsaved = unsaved;
        if processed.is_err() {
            // Some decision may not be durable: never save this state, rebuild from the log.
            actor.failed = true;
        }
        processed?;
        self.sweep(actor).await?;
        self.save(actor, false)
    }

    /// The stream revision of the webhook at `position` (read back for an unfired decision).
    fn revision_of(&self, position: u64) -> Result<u64, String> {
        let mut revision = 0;
        loop {
            let batch = self
                .journal
                .read_stream(&self.stream(), revision, BATCH)
                .map_err(|e| format!("the rule's stream cannot be read: {e}"))?;
            if batch.is_empty() {
                return Err(format!(
                    "webhook at position {position} not found in its stream"
                ));
            }
            if let Some(record) = batch.iter().find(|r| r.position == position) {
                return Ok(record.revision);
            }
            revision = batch.last().expect("not empty").revision + 1;
        }
    }

    async fn dry_run(&self, actor: &RuleActorState, run: DryRun) -> Result<DryRunReport, String> {
        let config = actor.state.config.as_ref().ok_or("the rule was deleted")?;
        let program = actor
            .program
            .as_ref()
            .ok_or("the rule's conditions do not compile")?;
        let payload = serde_json::to_vec(&run.payload).map_err(|e| e.to_string())?;
        let evaluation = self
            .evaluate(program, actor.state.organization, &payload, &run.headers)
            .await;
        let condition_results = config
            .conditions
            .iter()
            .zip(&evaluation.conditions)
            .map(|(condition, result)| condition_json(&condition.expression, result))
            .collect();
        let matched = evaluation.matched();
        let throttle_key = match &evaluation.throttle_key {
            Some(ThrottleKey::Key(key)) => Some(key.clone()),
            _ => None,
        };
        let throttled = matched
            && actor
                .state
                .is_throttled(throttle_key.as_deref().unwrap_or_default(), run.now);
        let actions = if matched && !throttled {
            config
                .actions
                .iter()
                .map(|a| serde_json::json!({"action_type": a.action_type, "target_id": a.target_id, "extra_vars": crate::secrets::mask_secret_members(&a.extra_vars.to_value()), "description": a.description}))
                .collect()
        } else {
            Vec::new()
        };
        Ok(DryRunReport {
            conditions_matched: matched,
            condition_results,
            throttled,
            throttle_key,
            actions,
        })
    }
}

/// A condition and its result as the API shows them.
pub fn condition_json(expression: &str, result: &ConditionResult) -> serde_json::Value {
    let (value, error) = match result {
        ConditionResult::True => (serde_json::json!(true), None),
        ConditionResult::False => (serde_json::json!(false), None),
        ConditionResult::Error(e) => (serde_json::Value::Null, Some(e.clone())),
    };
    serde_json::json!({"expression": expression, "result": value, "error": error})
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Duplicate => "duplicate",
        Outcome::Unmatched => "unmatched",
        Outcome::Matched => "matched",
        Outcome::Throttled => "throttled",
        Outcome::Error => "error",
        Outcome::Fire => "fire",
    }
}

fn status_label(status: ActionStatus) -> &'static str {
    match status {
        ActionStatus::Fired => "fired",
        ActionStatus::Failed => "failed",
    }
}

/// How the rule would sleep: every round completes within its message, so a rule whose last
/// round did not fail has nothing in progress.
fn quiescent(actor: &RuleActorState) -> Option<Asleep> {
    (!actor.failed).then_some(Asleep {
        revision: actor.state.next_revision,
        wake_at: None,
    })
}

fn compile(state: &RuleState) -> Option<RuleProgram> {
    let config = state.config.as_ref()?;
    match config.program() {
        Ok(program) => Some(program),
        Err(e) => {
            tracing::error!(rule = state.id, error = %e, "rule conditions no longer compile");
            None
        }
    }
}

impl Actor for RuleActor {
    type Msg = RuleMsg;
    type State = RuleActorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let this = self.clone();
        let state = tokio::task::spawn_blocking(move || this.load()).await??;
        let program = compile(&state);
        Ok(RuleActorState {
            state,
            program,
            pump: None,
            unsaved: Writes::new(self.store.table()),
            horizon: None,
            rounds: 0,
            saved_at: std::time::Instant::now(),
            failed: false,
            swept_at: std::time::Instant::now(),
            expired: None,
            idle: Idle::start(self.idle_after, &myself, || RuleMsg::IdleCheck),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        actor: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Whatever the log holds undecided (or decided but not fired) is handled now.
        self.round(actor, Vec::new()).await?;
        let mut subscription = self
            .journal
            .subscribe_stream(&self.stream(), actor.state.next_revision);
        let id = self.id;
        actor.pump = Some(tokio::spawn(async move {
            loop {
                let batch = match subscription.next_batch(BATCH).await {
                    Ok(batch) => batch,
                    Err(JournalError::Closed(_)) => break,
                    Err(e) => {
                        tracing::error!(rule = id, error = %e, "rule cannot read its stream");
                        myself.stop(Some(format!("stream read failed: {e}")));
                        break;
                    }
                };
                if ractor::call!(myself, RuleMsg::Events, batch).is_err() {
                    break;
                }
            }
        }));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        actor: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if actor.idle.asleep {
            // Passivated: the manager is stopping this actor; the next one re-reads the stream.
            match msg {
                RuleMsg::Events(_, reply) => {
                    let _ = reply.send(());
                }
                // Dropping the reply tells the caller to look the actor up again.
                RuleMsg::DryRun(_, reply) => drop(reply),
                RuleMsg::IdleCheck | RuleMsg::Sleep => {}
            }
            return Ok(());
        }
        match msg {
            RuleMsg::Events(events, reply) => {
                actor.idle.worked();
                let result = self.round(actor, events).await;
                let _ = reply.send(());
                result?;
            }
            RuleMsg::DryRun(run, reply) => {
                actor.idle.worked();
                let _ = reply.send(self.dry_run(actor, run).await);
            }
            RuleMsg::IdleCheck => actor.idle.check(
                &self.registry,
                self.id,
                &myself,
                quiescent(actor),
                RuleMsg::Sleep,
            ),
            RuleMsg::Sleep => {
                let quiescent = quiescent(actor);
                actor.idle.sleep(&self.registry, self.id, quiescent).await
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        actor: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(pump) = actor.pump.take() {
            pump.abort();
        }
        actor.idle.stop();
        if actor.failed {
            return Ok(());
        }
        self.save(actor, true)
    }
}
