//! What jobs and workflow jobs share on disk: rows indexed by organization and by template,
//! newest first, and the filters of their lists.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::job::{JobStatus, LaunchedBy};
use crate::store::{
    IndexKey, Indexed, Key, Query, QueryPage, StoreError, Table, TimeRange, Writes,
};

/// A run of a template: a job or a workflow job.
pub trait RunRow: Serialize + DeserializeOwned {
    /// Its organization.
    fn organization(&self) -> u64;
    /// Its template.
    fn template(&self) -> u64;
    /// Where it stands.
    fn status(&self) -> JobStatus;
    /// Who launched it.
    fn launched_by(&self) -> &LaunchedBy;
    /// Records a change at `at` (µs).
    fn touch(&mut self, at: i64);
    /// When it was launched (µs): the order of its lists.
    fn created(&self) -> i64;
}

/// Implements [`RunRow`] for a record with the fields every run has.
macro_rules! run_row {
    ($record:ty) => {
        impl $crate::projections::runs::RunRow for $record {
            fn organization(&self) -> u64 {
                self.organization
            }
            fn template(&self) -> u64 {
                self.template
            }
            fn status(&self) -> $crate::domain::job::JobStatus {
                self.status
            }
            fn launched_by(&self) -> &$crate::domain::job::LaunchedBy {
                &self.launched_by
            }
            fn touch(&mut self, at: i64) {
                self.modified = at;
            }
            fn created(&self) -> i64 {
                self.created
            }
        }
    };
}
pub(crate) use run_row;

/// Every run of one kind on disk; each kind says in its own module which events fold into it.
pub struct Runs<R> {
    rows: Indexed<R>,
}

impl<R: RunRow> Runs<R> {
    /// The runs stored in `table`.
    pub fn new(table: Table) -> Self {
        Self {
            rows: Indexed::new(table, indexes::<R>, R::created),
        }
    }

    /// The run with `id`.
    pub fn get(&self, id: u64) -> Result<Option<R>, StoreError> {
        self.rows.get(id)
    }

    /// The page `offset..offset + limit` of the runs matching `filter`, newest first.
    pub fn list(
        &self,
        filter: &RunFilter,
        offset: usize,
        limit: usize,
    ) -> Result<QueryPage<R>, StoreError> {
        list(&self.rows, filter, offset, limit)
    }

    /// The rows, for folding.
    pub fn rows(&self) -> &Indexed<R> {
        &self.rows
    }
}

/// The filters of a run list, as the API names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this organization's runs (the caller's scope).
    pub organization: Option<u64>,
    /// `job_template` / `workflow_job_template`.
    pub template: Option<u64>,
    /// `status`.
    pub status: Option<JobStatus>,
    /// `launched_by`: `event_log:<id>`, `token:<id>`, `admin` or `workflow_job:<id>`.
    pub launched_by: Option<String>,
    /// `since` on creation.
    pub since: Option<i64>,
}

fn launched_by_matches(by: &LaunchedBy, filter: &str) -> bool {
    match by {
        LaunchedBy::EventLog(id) => filter == format!("event_log:{id}"),
        LaunchedBy::User(actor) => filter == actor,
        LaunchedBy::Workflow { workflow_job, .. } => {
            filter == format!("workflow_job:{workflow_job}")
        }
    }
}

/// A run's indexes: by organization and by template.
fn indexes<R: RunRow>(run: &R) -> Vec<IndexKey> {
    vec![
        Key::new(b'O').u64(run.organization()),
        Key::new(b'T').u64(run.template()),
    ]
}

/// The page `offset..offset + limit` of the runs matching `filter`, newest first, with their
/// count. A template implies its organization; status and origin are checked per row.
fn list<R: RunRow>(
    rows: &Indexed<R>,
    filter: &RunFilter,
    offset: usize,
    limit: usize,
) -> Result<QueryPage<R>, StoreError> {
    let index = match (filter.template, filter.organization) {
        (Some(template), _) => Key::new(b'T').u64(template),
        (None, Some(org)) => Key::new(b'O').u64(org),
        (None, None) => Key::new(Indexed::<R>::ALL),
    };
    let rest = |r: &R| {
        filter.organization.is_none_or(|o| r.organization() == o)
            && filter.status.is_none_or(|s| r.status() == s)
            && filter
                .launched_by
                .as_deref()
                .is_none_or(|f| launched_by_matches(r.launched_by(), f))
    };
    // The index alone answers when the only filters are the one it is on (and a time range).
    let exact = filter.status.is_none()
        && filter.launched_by.is_none()
        && (filter.organization.is_none() || filter.template.is_none());
    rows.query(&Query {
        index,
        range: TimeRange {
            since: filter.since,
            until: None,
        },
        filter: if exact { None } else { Some(&rest) },
        offset,
        limit,
    })
}

/// Changes run `id` with `change` at `at` (nothing if it does not exist).
pub fn update<R: RunRow>(
    rows: &Indexed<R>,
    writes: &mut Writes,
    id: u64,
    at: i64,
    change: impl FnOnce(&mut R),
) -> Result<(), StoreError> {
    rows.update(writes, id, |run| {
        change(run);
        run.touch(at);
    })
}
