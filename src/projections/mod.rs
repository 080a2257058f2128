//! Read models: pure folds over the journal, shared with the HTTP layer.
//!
//! A [`View`] is a plain struct with `apply`; the projector actor feeds it from a subscription
//! and advances a checkpoint, which command handlers wait on to read their own writes.

mod audit;
pub mod catalog;
pub mod compact;
mod deliveries;
pub mod dispatch_index;
pub mod endpoint_state;
mod event_logs;
mod job_runs;
mod jobs;
mod notifications;
mod organizations;
pub mod outbound;
#[cfg(test)]
mod outbound_log;
mod publications;
mod rules;
mod runs;
mod tokens;
mod workflow_runs;
mod workflows;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use self::audit::{AuditEntry, AuditFilter, AuditView};
pub use self::deliveries::{
    AttemptRecord, DeliveriesView, DeliveryFilter, DeliveryRecord, DeliveryStatus,
};
pub use self::event_logs::{EventLogEntry, EventLogFilter, EventLogsView, Status};
pub use self::job_runs::JobRunsView;
pub use self::jobs::{JobRecord, JobTemplateRecord, JobsView};
pub use self::notifications::{NotificationRecord, NotificationsView};
pub use self::organizations::{Organization, OrganizationsView};
pub use self::outbound::OutboundView;
pub use self::publications::{PublicationsView, PublishedRecord};
pub use self::rules::{RuleRecord, RulesView};
pub use self::runs::{RunFilter, RunRow, Runs};
pub use self::tokens::{TokenRecord, TokensView};
pub use self::workflow_runs::WorkflowRunsView;
pub use self::workflows::{WorkflowJobRecord, WorkflowTemplateRecord, WorkflowsView};
use crate::journal::{EventFilter, Position, RecordedEvent};
use crate::store::{Store, StoreError, Table, Writes};

/// A read model: a pure fold over recorded events.
pub trait View: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name, used for its snapshot.
    const NAME: &'static str;

    /// Which events the view needs (others are skipped without decoding).
    fn filter() -> EventFilter {
        EventFilter::All
    }

    /// Folds one event into the view. Must be deterministic: replays give the same state.
    fn apply(&mut self, event: &RecordedEvent);
}

/// A view shared between its projector (the only writer) and readers, with its checkpoint.
pub struct Projection<V> {
    view: Arc<RwLock<V>>,
    checkpoint: Arc<watch::Sender<Position>>,
}

impl<V> Clone for Projection<V> {
    fn clone(&self) -> Self {
        Self {
            view: self.view.clone(),
            checkpoint: self.checkpoint.clone(),
        }
    }
}

impl<V: View> Default for Projection<V> {
    fn default() -> Self {
        Self {
            view: Arc::default(),
            checkpoint: Arc::new(watch::channel(0).0),
        }
    }
}

impl<V: View> Projection<V> {
    /// Reads the view. Do not hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, V> {
        self.view.read().expect("view lock poisoned")
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, V> {
        self.view.write().expect("view lock poisoned")
    }

    /// Every event below this position is reflected in the view.
    pub fn checkpoint(&self) -> Position {
        *self.checkpoint.borrow()
    }

    pub(crate) fn advance(&self, next: Position) {
        self.checkpoint.send_if_modified(|c| {
            let moved = next > *c;
            *c = (*c).max(next);
            moved
        });
    }

    /// Replaces the view wholesale (on start or restart of its projector) and sets its checkpoint.
    pub(crate) fn reset(&self, view: V, next: Position) {
        *self.write() = view;
        self.checkpoint.send_replace(next);
    }

    /// Waits until the view reflects every event up to and including `position`.
    pub async fn wait_for(&self, position: Position) {
        let mut rx = self.checkpoint.subscribe();
        let _ = rx.wait_for(|next| *next > position).await;
    }
}

/// A read model whose rows live on disk (see [`crate::store`]), so that its memory does not grow
/// with history. The projector folds each batch of records into a [`Writes`] overlay of the
/// view's table and commits it with the checkpoint in one atomic batch.
pub trait StoredView: Send + Sync + 'static {
    /// Stable name: the table is `NAME@SCHEMA`.
    const NAME: &'static str;
    /// Bumped when rows change shape: the old table is dropped and the view rebuilt.
    const SCHEMA: u32;

    /// Which events the view needs.
    fn filter() -> EventFilter;

    /// Opens the view over `table`, loading whatever small state it caches.
    fn open(table: Table) -> Result<Self, StoreError>
    where
        Self: Sized;

    /// The view's table.
    fn table(&self) -> &Table;

    /// Folds one event into `writes`. Must be deterministic: replays give the same rows.
    fn apply(&mut self, event: &RecordedEvent, writes: &mut Writes) -> Result<(), StoreError>;
}

/// Opens `V` in `store`, dropping tables of its older schemas.
pub fn open_stored<V: StoredView>(store: &Store) -> Result<V, StoreError> {
    let name = format!("{}@{}", V::NAME, V::SCHEMA);
    for old in 0..V::SCHEMA {
        store.drop_table(&format!("{}@{old}", V::NAME))?;
    }
    V::open(store.table(&name)?)
}

/// A stored view shared between its projector (the only writer) and readers, with its
/// checkpoint: the same contract as [`Projection`].
pub struct Stored<V> {
    view: Arc<RwLock<V>>,
    checkpoint: Arc<watch::Sender<Position>>,
}

impl<V> Clone for Stored<V> {
    fn clone(&self) -> Self {
        Self {
            view: self.view.clone(),
            checkpoint: self.checkpoint.clone(),
        }
    }
}

impl<V: StoredView> Stored<V> {
    /// Shares `view`, folded up to its table's checkpoint.
    pub fn new(view: V) -> Result<Self, StoreError> {
        let checkpoint = view.table().checkpoint()?;
        Ok(Self {
            view: Arc::new(RwLock::new(view)),
            checkpoint: Arc::new(watch::channel(checkpoint).0),
        })
    }

    /// Reads the view. Do not hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, V> {
        self.view.read().expect("view lock poisoned")
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, V> {
        self.view.write().expect("view lock poisoned")
    }

    /// Every event below this position is reflected in the view.
    pub fn checkpoint(&self) -> Position {
        *self.checkpoint.borrow()
    }

    pub(crate) fn advance(&self, next: Position) {
        self.checkpoint.send_if_modified(|c| {
            let moved = next > *c;
            *c = (*c).max(next);
            moved
        });
    }

    /// Waits until the view reflects every event up to and including `position`.
    pub async fn wait_for(&self, position: Position) {
        let mut rx = self.checkpoint.subscribe();
        let _ = rx.wait_for(|next| *next > position).await;
    }
}
