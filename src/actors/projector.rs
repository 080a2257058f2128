//! The projector: runs a [`View`] fold from a journal subscription, with snapshots.
//!
//! On (re)start it loads the view's snapshot if one exists and still decodes, or starts empty,
//! then follows the log from there. A pump task reads batches and hands them to the actor with
//! a call, so at most one batch is in flight: memory stays bounded however far behind it is.
//! Batches of only filtered-out records mostly move the checkpoint without the actor.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;

use super::Parking;
use crate::journal::{Journal, JournalError, Position, RecordedEvent, Subscription};
use crate::projections::{Projection, Stored, StoredView, View};
use crate::store::Writes;

/// Events applied between snapshots (at most; also on a clean stop).
const SNAPSHOT_EVERY_EVENTS: u64 = 50_000;
/// Journal positions read between snapshots, even if the view applied none of them: a view that
/// filters most of the journal out must not have to rescan it all after a crash.
const SNAPSHOT_EVERY_POSITIONS: u64 = 100_000;
/// Minimum time between snapshots.
const SNAPSHOT_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Whether a snapshot is due: enough events applied or enough journal read past the last one,
/// and not too soon after it.
pub(super) fn snapshot_due(applied: u64, positions: u64, since_last: Duration) -> bool {
    (applied >= SNAPSHOT_EVERY_EVENTS || positions >= SNAPSHOT_EVERY_POSITIONS)
        && since_last >= SNAPSHOT_MIN_INTERVAL
}
/// Events per batch from the subscription.
const BATCH: usize = 1024;

/// Journal positions a stored view may read past its saved checkpoint while the batches it reads
/// write nothing: a restart then re-reads at most this many records it filters out.
const CHECKPOINT_EVERY_POSITIONS: u64 = 100_000;
/// Longest time a stored view's checkpoint goes unsaved while it reads such batches.
const CHECKPOINT_MAX_AGE: Duration = Duration::from_secs(30);

/// Whether a stored view commits a batch: it wrote rows, or its saved checkpoint is too far
/// behind or too old. Committing only the checkpoint of a batch that wrote nothing would cost a
/// sled write per journal commit per stored view, most of which follow other streams.
pub(super) fn checkpoint_due(wrote: bool, unsaved_positions: u64, since_saved: Duration) -> bool {
    wrote || unsaved_positions >= CHECKPOINT_EVERY_POSITIONS || since_saved >= CHECKPOINT_MAX_AGE
}

/// Journal positions a pump may read past what it last handed its actor while it reads only
/// records the view filters out: meanwhile it advances the view's checkpoint itself (an empty
/// batch changes nothing), sparing an actor round trip per journal commit per view.
const HAND_OVER_EVERY_POSITIONS: u64 = 10_000;
/// Longest time a pump goes without handing its actor a batch while journal commits arrive: so
/// that snapshots and saved checkpoints still follow the journal.
const HAND_OVER_EVERY: Duration = Duration::from_secs(5);

/// Whether a pump hands a batch to its actor (else it only advances the checkpoint).
fn hand_over(empty: bool, unhanded_positions: u64, since_handed: Duration) -> bool {
    !empty || unhanded_positions >= HAND_OVER_EVERY_POSITIONS || since_handed >= HAND_OVER_EVERY
}

/// Reads `subscription` in batches and hands them to the projector actor `myself`, one call at a
/// time, so at most one batch is in flight; `advance` moves the view's checkpoint over batches
/// it need not see.
fn spawn_pump(
    mut subscription: Subscription,
    myself: ActorRef<ProjectorMsg>,
    view: &'static str,
    advance: impl Fn(Position) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (mut handed, mut handed_at) = (subscription.position(), Instant::now());
        loop {
            let batch = match subscription.next_batch(BATCH).await {
                Ok(batch) => batch,
                Err(JournalError::Closed(_)) => break,
                Err(e) => {
                    tracing::error!(view, error = %e, "projection cannot read the journal");
                    myself.stop(Some(format!("journal read failed: {e}")));
                    break;
                }
            };
            let next = subscription.position();
            if !hand_over(
                batch.is_empty(),
                next.saturating_sub(handed),
                handed_at.elapsed(),
            ) {
                advance(next);
                continue;
            }
            (handed, handed_at) = (next, Instant::now());
            if ractor::call!(myself, ProjectorMsg::Apply, batch, next).is_err() {
                break;
            }
        }
    })
}

/// Snapshots are only trusted by the build that wrote them: a changed view struct must rebuild.
fn snapshot_tag<V: View>() -> String {
    format!("{}@{}", V::NAME, env!("CARGO_PKG_VERSION"))
}

/// The projector actor for view `V`.
pub struct Projector<V: View> {
    /// The journal to follow.
    pub journal: Journal,
    /// The shared view it maintains.
    pub projection: Projection<V>,
    /// Where records the view cannot fold are set aside.
    pub parking: Parking,
}

/// Messages from the pump.
pub enum ProjectorMsg {
    /// Apply these events; the subscription has read everything below `next`.
    Apply(Vec<RecordedEvent>, Position, RpcReplyPort<()>),
}

/// Running state: the pump and the snapshot bookkeeping.
pub struct ProjectorState {
    pump: JoinHandle<()>,
    applied_since_snapshot: u64,
    snapshot_position: Position,
    last_snapshot: Instant,
}

impl<V: View> Projector<V> {
    fn load_snapshot(&self) -> (V, Position) {
        match self.journal.load_snapshot(&snapshot_tag::<V>()) {
            Ok(Some((position, bytes))) => match postcard::from_bytes::<V>(&bytes) {
                Ok(view) => return (view, position),
                Err(e) => {
                    tracing::warn!(view = V::NAME, error = %e, "snapshot does not decode; rebuilding from the log")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(view = V::NAME, error = %e, "snapshot unreadable; rebuilding from the log")
            }
        }
        (V::default(), 0)
    }

    fn save_snapshot(&self) {
        let position = self.projection.checkpoint();
        let bytes = match postcard::to_stdvec(&*self.projection.read()) {
            Ok(bytes) => bytes,
            Err(e) => return tracing::warn!(view = V::NAME, error = %e, "snapshot encoding failed"),
        };
        if let Err(e) = self
            .journal
            .save_snapshot(&snapshot_tag::<V>(), position, &bytes)
        {
            tracing::warn!(view = V::NAME, error = %e, "snapshot not saved");
        }
    }
}

impl<V: View> Actor for Projector<V> {
    type Msg = ProjectorMsg;
    type State = ProjectorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let (view, next) = self.load_snapshot();
        let snapshot_position = next;
        self.projection.reset(view, next);
        let subscription = self.journal.subscribe(next, V::filter());
        let projection = self.projection.clone();
        let pump = spawn_pump(subscription, myself, V::NAME, move |p| {
            projection.advance(p)
        });
        Ok(ProjectorState {
            pump,
            applied_since_snapshot: 0,
            snapshot_position,
            last_snapshot: Instant::now(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ProjectorMsg::Apply(events, next, reply) = msg;
        {
            let mut view = self.projection.write();
            let consumer = format!("view:{}", V::NAME);
            for event in &events {
                // A record this build cannot fold is parked; the view goes on with the next.
                self.parking.guard(&consumer, event, || view.apply(event));
            }
        }
        self.projection.advance(next);
        state.applied_since_snapshot += events.len() as u64;
        if snapshot_due(
            state.applied_since_snapshot,
            next.saturating_sub(state.snapshot_position),
            state.last_snapshot.elapsed(),
        ) {
            self.save_snapshot();
            state.applied_since_snapshot = 0;
            state.snapshot_position = next;
            state.last_snapshot = Instant::now();
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
        if state.applied_since_snapshot > 0
            || self.projection.checkpoint() > state.snapshot_position
        {
            self.save_snapshot();
        }
        Ok(())
    }
}

/// The projector of a stored view: folds each batch into one atomic write of the view's table,
/// checkpoint included. It resumes from the table's checkpoint: no snapshot, no replay of what
/// the table already holds.
pub struct StoredProjector<V: StoredView> {
    /// The journal to follow.
    pub journal: Journal,
    /// The view it maintains.
    pub projection: Stored<V>,
    /// Where records the view cannot fold are set aside.
    pub parking: Parking,
}

/// The stored projector's running state: its pump and what its table's checkpoint says.
pub struct StoredProjectorState {
    pump: JoinHandle<()>,
    saved: Position,
    saved_at: Instant,
}

impl<V: StoredView> Actor for StoredProjector<V> {
    type Msg = ProjectorMsg;
    type State = StoredProjectorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let next = self.projection.read().table().checkpoint()?;
        self.projection.advance(next);
        let subscription = self.journal.subscribe(next, V::filter());
        let projection = self.projection.clone();
        let pump = spawn_pump(subscription, myself, V::NAME, move |p| {
            projection.advance(p)
        });
        Ok(StoredProjectorState {
            pump,
            saved: next,
            saved_at: Instant::now(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ProjectorMsg::Apply(events, next, reply) = msg;
        {
            let mut view = self.projection.write();
            let table = view.table().clone();
            let mut writes = Writes::new(&table);
            let consumer = format!("view:{}", V::NAME);
            for event in &events {
                let folded = self
                    .parking
                    .guard(&consumer, event, || view.apply(event, &mut writes));
                if let Some(Err(e)) = folded {
                    // The store itself failed: crash and resume from the checkpoint.
                    return Err(e.into());
                }
            }
            let unsaved = next.saturating_sub(state.saved);
            if checkpoint_due(!writes.is_empty(), unsaved, state.saved_at.elapsed()) {
                writes.commit(next)?;
                state.saved = next;
                state.saved_at = Instant::now();
            }
        }
        self.projection.advance(next);
        let _ = reply.send(());
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.pump.abort();
        let next = self.projection.checkpoint();
        if next > state.saved {
            let table = self.projection.read().table().clone();
            if let Err(e) = Writes::new(&table).commit(next) {
                tracing::warn!(view = V::NAME, error = %e, "checkpoint not saved at stop; the view re-reads from the last one");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pump_hands_over_batches_with_events_and_empty_ones_only_now_and_then() {
        let now = Duration::ZERO;
        assert!(hand_over(false, 1, now));
        assert!(!hand_over(true, HAND_OVER_EVERY_POSITIONS - 1, now));
        assert!(hand_over(true, HAND_OVER_EVERY_POSITIONS, now));
        assert!(hand_over(true, 1, HAND_OVER_EVERY));
    }

    #[test]
    fn a_stored_view_saves_its_checkpoint_with_rows_or_when_it_lags_too_far_or_too_long() {
        let now = Duration::ZERO;
        assert!(checkpoint_due(true, 1, now));
        assert!(!checkpoint_due(false, CHECKPOINT_EVERY_POSITIONS - 1, now));
        assert!(checkpoint_due(false, CHECKPOINT_EVERY_POSITIONS, now));
        assert!(checkpoint_due(false, 1, CHECKPOINT_MAX_AGE));
    }

    #[test]
    fn snapshots_follow_applied_events_or_journal_progress_but_not_too_often() {
        let later = SNAPSHOT_MIN_INTERVAL;
        assert!(!snapshot_due(10, 10, later));
        assert!(snapshot_due(SNAPSHOT_EVERY_EVENTS, 0, later));
        assert!(
            snapshot_due(0, SNAPSHOT_EVERY_POSITIONS, later),
            "a view that skips everything"
        );
        assert!(!snapshot_due(
            SNAPSHOT_EVERY_EVENTS,
            SNAPSHOT_EVERY_POSITIONS,
            Duration::from_secs(1)
        ));
    }
}
