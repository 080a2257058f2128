//! The create, detail, update and delete handlers that every organization-scoped template
//! shares (job templates, workflow job templates, notification templates). Each resource says
//! what differs through [`TemplateResource`]; its own file keeps its list filters and actions.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::common::target_organization;
use crate::app::App;
use crate::domain::access::Principal;
use crate::domain::event::Event;
use crate::domain::{DomainError, organization_unchanged};
use crate::http::auth::{authenticate, require_manage, require_read};
use crate::http::response::{Response, created, no_content, ok};
use crate::http::{ApiError, Request, metadata};
use crate::journal::{ExpectedRevision, Metadata};
use crate::projections::catalog::Catalogued;

/// The change a request asks of a template, for [`TemplateResource::authorize`].
pub enum Change<'a, R: TemplateResource> {
    /// `POST`: a new template from this input.
    Create(&'a R::Input),
    /// `PATCH`: the current settings and the input that changes them.
    Update(&'a R::Config, &'a R::Input),
    /// `DELETE`: the current settings.
    Delete(&'a R::Config),
}

/// What one template resource contributes to the shared handlers.
pub trait TemplateResource: Sized + 'static {
    /// The template as its read model holds it.
    type Record: Catalogued + Clone;
    /// Validated settings, as the journal stores them.
    type Config: Clone + PartialEq + Send + Sync;
    /// Client input for create and partial update.
    type Input: DeserializeOwned + Send;
    /// The resource in messages: "A job template".
    const WHAT: &'static str;

    /// The template with `id`, whoever owns it.
    fn find(app: &App, id: u64) -> Option<Self::Record>;
    /// A record's settings.
    fn config(record: &Self::Record) -> &Self::Config;
    /// The id a new template gets.
    fn next_id(app: &App) -> u64;
    /// The stream of template `id`.
    fn stream(id: u64) -> String;
    /// The organization the input names, if any.
    fn organization(input: &Self::Input) -> Option<u64>;
    /// The settings of template `id` in `organization` after `input`, from `current` (none on
    /// create); secrets are sealed and names checked here.
    fn configure(
        app: &App,
        id: u64,
        organization: u64,
        current: Option<Self::Config>,
        input: Self::Input,
    ) -> Result<Self::Config, DomainError>;
    /// The event for a new template.
    fn created(id: u64, organization: u64, config: Self::Config) -> Event;
    /// The event for changed settings.
    fn updated(id: u64, organization: u64, config: Self::Config) -> Event;
    /// The event for a deletion.
    fn deleted(id: u64, organization: u64, config: &Self::Config) -> Event;
    /// The template as the API shows it.
    fn render(app: &App, template: &Self::Record) -> Value;
    /// Checks beyond organization roles (command job templates need a system admin).
    fn authorize(
        _app: &App,
        _principal: &Principal,
        _change: Change<'_, Self>,
    ) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Implements [`TemplateResource`]'s `created`, `updated` and `deleted` with a resource's three
/// event types, which carry `id`, `organization`, and the settings (or the deleted name).
macro_rules! template_events {
    ($created:ident, $updated:ident, $deleted:ident) => {
        fn created(id: u64, organization: u64, config: Self::Config) -> Event {
            let event = $created {
                id,
                organization,
                config,
            };
            event.into()
        }
        fn updated(id: u64, organization: u64, config: Self::Config) -> Event {
            let event = $updated {
                id,
                organization,
                config,
            };
            event.into()
        }
        fn deleted(id: u64, organization: u64, config: &Self::Config) -> Event {
            let name = config.name.clone();
            let event = $deleted {
                id,
                organization,
                name,
            };
            event.into()
        }
    };
}
pub(crate) use template_events;

/// The template with `id` if the caller may read it (404 otherwise, another tenant's included).
pub fn visible<R: TemplateResource>(
    app: &App,
    principal: &Principal,
    id: u64,
) -> Result<R::Record, ApiError> {
    let template = R::find(app, id).ok_or_else(ApiError::not_found)?;
    require_read(principal, template.organization())?;
    Ok(template)
}

/// Appends `event` to template `id`'s stream, once durable and shown by the read models.
async fn record<R: TemplateResource>(
    app: &App,
    metadata: &Metadata,
    id: u64,
    expected: ExpectedRevision,
    event: Event,
) -> Result<(), ApiError> {
    app.commit(metadata, R::stream(id), expected, vec![event])
        .await?;
    Ok(())
}

/// `POST`: 201 with the new template.
pub async fn create<R: TemplateResource>(
    app: Arc<App>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let input: R::Input = req.json()?;
    // Under the command lock, so the organization cannot be deleted before the template is
    // created.
    let _serial = app.commands.lock().await;
    let organization = target_organization(&app, &principal, R::organization(&input))?;
    R::authorize(&app, &principal, Change::Create(&input))?;
    let id = R::next_id(&app);
    let config = R::configure(&app, id, organization, None, input)?;
    let event = R::created(id, organization, config);
    let metadata = metadata(&principal, &req);
    record::<R>(&app, &metadata, id, ExpectedRevision::NoStream, event).await?;
    Ok(created(&R::render(
        &app,
        &visible::<R>(&app, &principal, id)?,
    )))
}

/// `GET /{id}`.
pub async fn detail<R: TemplateResource>(
    app: Arc<App>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let template = visible::<R>(&app, &principal, req.id("id")?)?;
    Ok(ok(&R::render(&app, &template)))
}

/// `PATCH /{id}`: a partial update; a change to nothing appends nothing.
pub async fn update<R: TemplateResource>(
    app: Arc<App>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    // The new settings are computed from the current ones: read them under the command lock, so
    // a concurrent update is built upon, not overwritten.
    let _serial = app.commands.lock().await;
    let current = visible::<R>(&app, &principal, id)?;
    let (organization, current) = (current.organization(), R::config(&current).clone());
    require_manage(&principal, organization)?;
    let input: R::Input = req.json()?;
    R::authorize(&app, &principal, Change::Update(&current, &input))?;
    organization_unchanged(R::WHAT, organization, R::organization(&input)).into_result()?;
    let config = R::configure(&app, id, organization, Some(current.clone()), input)?;
    if config != current {
        let event = R::updated(id, organization, config);
        let metadata = metadata(&principal, &req);
        record::<R>(&app, &metadata, id, ExpectedRevision::StreamExists, event).await?;
    }
    Ok(ok(&R::render(&app, &visible::<R>(&app, &principal, id)?)))
}

/// `DELETE /{id}`: 204; what the template ran (jobs, sends) remains.
pub async fn delete<R: TemplateResource>(
    app: Arc<App>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let current = visible::<R>(&app, &principal, id)?;
    require_manage(&principal, current.organization())?;
    R::authorize(&app, &principal, Change::Delete(R::config(&current)))?;
    let _serial = app.commands.lock().await;
    let event = R::deleted(id, current.organization(), R::config(&current));
    let metadata = metadata(&principal, &req);
    record::<R>(&app, &metadata, id, ExpectedRevision::StreamExists, event).await?;
    Ok(no_content())
}
