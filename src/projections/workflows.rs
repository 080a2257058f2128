//! Workflow job templates and workflow jobs.

use serde::{Deserialize, Serialize};

use super::View;
use super::catalog::{Catalog, Named, Template};
use crate::codec::{Protected, RawJson};
use crate::domain::Event;
use crate::domain::job::{JobStatus, LaunchedBy};
use crate::domain::workflow::{WorkflowConfig, WorkflowRun};
use crate::journal::{EventFilter, RecordedEvent};

/// A workflow job template as the API shows it.
pub type WorkflowTemplateRecord = Template<WorkflowConfig>;

impl Named for WorkflowConfig {
    fn name(&self) -> &str {
        &self.name
    }
}

/// A workflow job as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowJobRecord {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Template.
    pub template: u64,
    /// Its name at launch.
    pub template_name: String,
    /// Status.
    pub status: JobStatus,
    /// Who launched it.
    pub launched_by: LaunchedBy,
    /// Extra variables for every node, as launched (sealed under the organization's data key).
    pub extra_vars: Protected<RawJson>,
    /// Progress of each node.
    pub run: WorkflowRun,
    /// Start (µs).
    pub started: Option<i64>,
    /// Finish (µs).
    pub finished: Option<i64>,
    /// Run time.
    pub elapsed_ms: Option<u64>,
    /// Why it failed or was canceled.
    pub explanation: Option<String>,
    /// Launch (µs).
    pub created: i64,
    /// Last change (µs).
    pub modified: i64,
}

/// Workflow templates, and the highest workflow job id (the jobs themselves are on disk, in
/// [`super::WorkflowRunsView`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkflowsView {
    templates: Catalog<WorkflowTemplateRecord>,
    /// Highest workflow job id ever used.
    pub max_job_id: u64,
}

impl WorkflowsView {
    /// A template.
    pub fn template(&self, id: u64) -> Option<&WorkflowTemplateRecord> {
        self.templates.get(id)
    }

    /// The id the next template gets.
    pub fn next_template_id(&self) -> u64 {
        self.templates.next_id()
    }

    /// All templates.
    pub fn templates(&self) -> impl DoubleEndedIterator<Item = &WorkflowTemplateRecord> {
        self.templates.all()
    }

    /// Whether `organization` has a workflow template named `name`.
    pub fn name_taken(&self, organization: u64, name: &str) -> bool {
        self.templates.name_taken(organization, name)
    }
}

impl View for WorkflowsView {
    const NAME: &'static str = "workflows";

    fn filter() -> EventFilter {
        EventFilter::Categories(vec!["workflow_template".into(), "workflow_job".into()])
    }

    fn apply(&mut self, record: &RecordedEvent) {
        let Ok(Some(event)) = Event::decode(record) else {
            return;
        };
        let at = record.recorded_at;
        match event {
            Event::WorkflowTemplateCreated(e) => {
                self.templates.created(e.id, e.organization, e.config, at)
            }
            Event::WorkflowTemplateUpdated(e) => self.templates.updated(e.id, e.config, at),
            Event::WorkflowTemplateDeleted(e) => {
                self.templates.remove(e.id);
            }
            Event::WorkflowLaunched(e) => self.max_job_id = self.max_job_id.max(e.id),
            _ => {}
        }
    }
}
