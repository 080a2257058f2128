//! Read models: pure folds over the journal, shared with the HTTP layer.
//!
//! A [`View`] is a plain struct with `apply`; the projector actor feeds it from a subscription
//! and advances a checkpoint, which command handlers wait on to read their own writes.

mod audit;
pub mod catalog;
pub mod compact;
mod dedup;
pub mod dispatch_index;
pub mod endpoint_state;
mod event_logs;
mod jobs;
mod notifications;
mod organizations;
pub mod outbound;
mod rules;
mod tokens;
mod workflows;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use self::audit::{AuditEntry, AuditView};
pub use self::dedup::DedupView;
pub use self::event_logs::{EventLogEntry, EventLogsView, Status};
pub use self::jobs::{JobRecord, JobTemplateRecord, JobsView};
pub use self::notifications::{NotificationRecord, NotificationsView};
pub use self::organizations::{Organization, OrganizationsView};
pub use self::outbound::OutboundView;
pub use self::rules::{RuleRecord, RulesView};
pub use self::tokens::{TokenRecord, TokensView};
pub use self::workflows::{WorkflowJobRecord, WorkflowTemplateRecord, WorkflowsView};
use crate::journal::{EventFilter, Position, RecordedEvent};

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
