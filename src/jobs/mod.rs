//! Running what rules launch: local commands, controller jobs, workflows, notifications.
//! The [`crate::actors::runner`] actor drives these; this module holds the I/O they need and
//! the runner's pure state.

pub mod command;
pub mod controller;
pub mod launch;
pub mod notify;
pub mod output;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use output::Tail;

/// The live output of running jobs, by job id (for `/api/v2/jobs/{id}/stdout/` while running).
pub type LiveOutput = Arc<Mutex<HashMap<u64, Arc<Mutex<Tail>>>>>;

/// Resolves once `cancel` turns true (or its sender is gone).
pub async fn canceled(cancel: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = cancel.wait_for(|c| *c).await;
}
