//! `/api/v2/organizations/`: tenants (system admins only).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::app::App;
use crate::domain::Event;
use crate::domain::organization::{self, EraseInput, OrganizationDeleted, OrganizationInput};
use crate::domain::retention::{OrganizationRetentionSet, Retention};
use crate::domain::rfc3339;
use crate::http::auth::{authenticate, require_read, require_system_admin};
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, created, no_content, ok};
use crate::http::{ApiError, Request, metadata};
use crate::journal::ExpectedRevision;
use crate::projections::Organization;

fn render(app: &App, org: &Organization) -> Value {
    json!({
        "id": org.id,
        "type": "organization",
        "url": format!("/api/v2/organizations/{}/", org.id),
        "name": org.name,
        "description": org.description,
        "retention": org.retention.effective(&app.config.retention.defaults()),
        "erased_at": org.erased.map(|e| rfc3339(e.at)),
        "created": rfc3339(org.created),
        "modified": rfc3339(org.modified),
    })
}

fn find(app: &App, id: u64) -> Result<Value, ApiError> {
    app.views
        .organizations
        .read()
        .get(id)
        .map(|o| render(app, o))
        .ok_or_else(ApiError::not_found)
}

/// `GET`: newest first; `?name=` filters by exact name.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    require_system_admin(&authenticate(&app, &req)?)?;
    let name = req.query("name");
    let view = app.views.organizations.read();
    paginate_iter(
        &req,
        view.all()
            .rev()
            .filter(|o| name.is_none_or(|n| o.name == n))
            .map(|o| render(&app, o)),
    )
}

/// `POST`: create.
pub async fn create(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    require_system_admin(&principal)?;
    let input: OrganizationInput = req.json()?;
    let retention = input
        .retention
        .as_ref()
        .map(|r| Retention::default().patched(r))
        .transpose()?;
    let _serial = app.commands.lock().await;
    let event = {
        let view = app.views.organizations.read();
        organization::create(view.max_id + 1, input, |name| view.name_taken(name))?
    };
    let id = event.id;
    let mut events = vec![event.into()];
    if let Some(retention) = retention.filter(|r| *r != Retention::default()) {
        events.push(OrganizationRetentionSet { id, retention }.into());
    }
    app.commit(
        &metadata(&principal, &req),
        organization::stream(id),
        ExpectedRevision::NoStream,
        events,
    )
    .await?;
    Ok(created(&find(&app, id)?))
}

/// `GET /{id}`.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    require_system_admin(&authenticate(&app, &req)?)?;
    Ok(ok(&find(&app, req.id("id")?)?))
}

/// `PATCH /{id}`: change name or description.
pub async fn update(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    require_system_admin(&principal)?;
    let id = req.id("id")?;
    let input: OrganizationInput = req.json()?;
    let _serial = app.commands.lock().await;
    let events: Vec<Event> = {
        let view = app.views.organizations.read();
        let current = view.get(id).ok_or_else(ApiError::not_found)?;
        let retention = input
            .retention
            .as_ref()
            .map(|r| current.retention.patched(r))
            .transpose()?
            .filter(|r| *r != current.retention)
            .map(|retention| OrganizationRetentionSet { id, retention }.into());
        let renamed =
            organization::update(id, (&current.name, &current.description), input, |name| {
                view.name_taken(name)
            })?
            .map(Event::from);
        renamed.into_iter().chain(retention).collect()
    };
    if !events.is_empty() {
        app.commit(
            &metadata(&principal, &req),
            organization::stream(id),
            ExpectedRevision::StreamExists,
            events,
        )
        .await?;
    }
    Ok(ok(&find(&app, id)?))
}

/// What organization `id` still owns, as (noun, count).
fn owned_resources(app: &App, id: u64) -> [(&'static str, usize); 5] {
    let owned =
        |organizations: &mut dyn Iterator<Item = u64>| organizations.filter(|&o| o == id).count();
    let jobs = app.views.jobs.read();
    let workflows = app.views.workflows.read();
    let notifications = app.views.notifications.read();
    let outbound = app.views.outbound.read();
    [
        ("event rule", app.views.rules.read().count_in(id)),
        (
            "job template",
            owned(&mut jobs.templates().map(|t| t.organization)),
        ),
        (
            "workflow job template",
            owned(&mut workflows.templates().map(|t| t.organization)),
        ),
        (
            "notification template",
            owned(&mut notifications.all().map(|t| t.organization)),
        ),
        (
            "outbound webhook",
            owned(&mut outbound.endpoints().map(|e| e.organization)),
        ),
    ]
}

/// `DELETE /{id}`: refused (409) while it owns resources; once deleted, its tokens stop
/// working at once.
pub async fn delete(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    require_system_admin(&principal)?;
    let id = req.id("id")?;
    let _serial = app.commands.lock().await;
    find(&app, id)?;
    organization::check_deletable(&owned_resources(&app, id))?;
    let event = OrganizationDeleted { id };
    app.commit(
        &metadata(&principal, &req),
        organization::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    Ok(no_content())
}

/// `POST /{id}/erase/ {"confirm": "<name>"}`: destroys the organization's data keys, so every
/// payload sealed under them (event logs, job extra vars, published events and the deliveries
/// that carry them, in the journal and its backups) reads `"erased"` from then on. The erasure
/// itself is journaled first (the audit trail keeps who erased what), then the keys go; a
/// start finishes an erasure a crash interrupted.
pub async fn erase(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    require_read(&principal, id)?;
    require_system_admin(&principal)?;
    let input: EraseInput = req.json_or_default()?;
    let _serial = app.commands.lock().await;
    let event = {
        let view = app.views.organizations.read();
        let org = view.get(id).ok_or_else(ApiError::not_found)?;
        let live = app
            .data_keys
            .live_generation(id)
            .map_err(|e| ApiError::internal("data keys", e))?;
        organization::erase(id, &org.name, input, org.erased.is_some(), live)?
    };
    let through = event.through_generation;
    app.commit(
        &metadata(&principal, &req),
        organization::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    app.data_keys
        .erase_through(id, through)
        .map_err(|e| ApiError::internal("data keys", e))?;
    let erased = app
        .views
        .organizations
        .read()
        .get(id)
        .and_then(|o| o.erased);
    Ok(ok(&json!({
        "id": id,
        "type": "organization_erasure",
        "organization": format!("/api/v2/organizations/{id}/"),
        "erased": "payloads",
        "erased_at": erased.map(|e| rfc3339(e.at)),
        "through_generation": through,
    })))
}
