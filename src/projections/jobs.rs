//! Job templates and jobs.

use serde::{Deserialize, Serialize};

use super::View;
use super::catalog::{Catalog, Named, Template};
use crate::codec::{Protected, RawJson};
use crate::domain::Event;
use crate::domain::job::{JobStatus, LaunchedBy};
use crate::domain::job_template::JobTemplateConfig;
use crate::journal::{EventFilter, RecordedEvent};

/// A job template as the API shows it.
pub type JobTemplateRecord = Template<JobTemplateConfig>;

impl Named for JobTemplateConfig {
    fn name(&self) -> &str {
        &self.name
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Template.
    pub template: u64,
    /// Template name at launch.
    pub template_name: String,
    /// `command` or `controller`.
    pub kind: String,
    /// Status.
    pub status: JobStatus,
    /// Who launched it.
    pub launched_by: LaunchedBy,
    /// Merged extra variables, as launched (sealed under the organization's data key).
    pub extra_vars: Protected<RawJson>,
    /// Start time (µs).
    pub started: Option<i64>,
    /// Finish time (µs).
    pub finished: Option<i64>,
    /// Run time in milliseconds.
    pub elapsed_ms: Option<u64>,
    /// Exit code of a command.
    pub exit_code: Option<i32>,
    /// Why it failed, errored or was canceled.
    pub explanation: Option<String>,
    /// The last few KiB of output.
    pub stdout_tail: String,
    /// The controller's job id.
    pub remote_job_id: Option<u64>,
    /// Whether `job.duration_exceeded` was published.
    pub duration_exceeded: bool,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// Its revision of `job.finished` in its stream (for the full output).
    pub finished_revision: Option<u64>,
    /// Launch time (µs).
    pub created: i64,
    /// Last change (µs).
    pub modified: i64,
}

/// Job templates, and the highest job id (the jobs themselves are on disk, in
/// [`super::JobRunsView`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JobsView {
    templates: Catalog<JobTemplateRecord>,
    /// Highest job id ever used.
    pub max_job_id: u64,
}

impl JobsView {
    /// A template.
    pub fn template(&self, id: u64) -> Option<&JobTemplateRecord> {
        self.templates.get(id)
    }

    /// The id the next template gets.
    pub fn next_template_id(&self) -> u64 {
        self.templates.next_id()
    }

    /// All templates, ascending.
    pub fn templates(&self) -> impl DoubleEndedIterator<Item = &JobTemplateRecord> {
        self.templates.all()
    }

    /// Whether `organization` has a template named `name`.
    pub fn name_taken(&self, organization: u64, name: &str) -> bool {
        self.templates.name_taken(organization, name)
    }
}

impl View for JobsView {
    const NAME: &'static str = "jobs";

    fn filter() -> EventFilter {
        EventFilter::Categories(vec!["job_template".into(), "job".into()])
    }

    fn apply(&mut self, record: &RecordedEvent) {
        let Ok(Some(event)) = Event::decode(record) else {
            return;
        };
        let at = record.recorded_at;
        match event {
            Event::JobTemplateCreated(e) => {
                self.templates.created(e.id, e.organization, e.config, at)
            }
            Event::JobTemplateUpdated(e) => self.templates.updated(e.id, e.config, at),
            Event::JobTemplateDeleted(e) => {
                self.templates.remove(e.id);
            }
            Event::JobLaunched(e) => self.max_job_id = self.max_job_id.max(e.id),
            _ => {}
        }
    }
}
