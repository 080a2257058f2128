//! What the job and workflow-job handlers share: their lists, lookups and the cancel guard.

use serde_json::{Value, json};

use crate::app::App;
use crate::codec::{Protected, RawJson};
use crate::domain::access::Principal;
use crate::domain::job::JobStatus;
use crate::http::auth::{authenticate, require_read};
use crate::http::pagination::{Page, paginate_found};
use crate::http::response::Response;
use crate::http::{ApiError, Request};
use crate::projections::{RunFilter, RunRow, Runs};
use crate::secrets::{Unreadable, mask_secret_members};

/// A run's extra variables (launched as event `kind`) as the API shows them: secret members
/// masked, `"erased"` once the organization's payloads were erased.
pub fn extra_vars(app: &App, organization: u64, kind: &str, vars: &Protected<RawJson>) -> Value {
    match app.data_keys.open(organization, kind, vars.clone()) {
        // Cut out of the journal by retention (`retention.payload_days`) before the view was built.
        Ok(vars) if vars.0.is_empty() => json!("compacted"),
        Ok(vars) => mask_secret_members(&vars.to_value()),
        Err(Unreadable::Erased) => json!("erased"),
        Err(e) => {
            tracing::error!(organization, error = %e, "a run's extra variables do not open");
            Value::Null
        }
    }
}

/// The page the request asks for of the `runs` matching `filter`, newest first, with its exact
/// count.
pub fn list<R: RunRow>(
    req: &Request,
    runs: &Runs<R>,
    filter: &RunFilter,
    render: impl Fn(&R) -> Value,
) -> Result<Response, ApiError> {
    let page = Page::from_request(req)?;
    let found = runs.list(filter, page.offset(), page.size)?;
    paginate_found(req, page, &found, render)
}

/// The caller and the run at the path's `id`, if the caller may read it (404 otherwise). `find`
/// looks the run up, so that its view is locked only for the lookup.
pub fn visible<R: RunRow>(
    app: &App,
    req: &Request,
    find: impl FnOnce(u64) -> Result<Option<R>, crate::store::StoreError>,
) -> Result<(Principal, R), ApiError> {
    let principal = authenticate(app, req)?;
    let run = find(req.id("id")?)?.ok_or_else(ApiError::not_found)?;
    require_read(&principal, run.organization())?;
    Ok((principal, run))
}

/// 409 unless the run can still be canceled.
pub fn unfinished(what: &str, id: u64, status: JobStatus) -> Result<(), ApiError> {
    if status.is_finished() {
        return Err(ApiError::conflict(format!(
            "{what} {id} already finished ({}).",
            status.as_str()
        )));
    }
    Ok(())
}
