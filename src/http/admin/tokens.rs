//! `/api/v2/tokens/`: API tokens, shown in full only in the response that creates them.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::app::App;
use crate::codec::Digest;
use crate::domain::access::{Principal, Role};
use crate::domain::rfc3339;
use crate::domain::token::{self, TokenInput, TokenRevoked};
use crate::http::auth::authenticate;
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, created, no_content, ok};
use crate::http::{ApiError, Request, metadata};
use crate::journal::ExpectedRevision;
use crate::projections::TokenRecord;
use crate::secrets::{self, mask, token_digest};

fn render(token: &TokenRecord) -> Value {
    json!({
        "id": token.id,
        "type": "token",
        "url": format!("/api/v2/tokens/{}/", token.id),
        "organization": token.organization,
        "role": token.role,
        "description": token.description,
        "token": token.hint,
        "created": rfc3339(token.created),
        "created_by": token.created_by,
    })
}

fn visible(principal: &Principal, token: &TokenRecord) -> bool {
    match token.organization {
        Some(org) => principal.can_read(org),
        None => principal.is_system_admin(),
    }
}

/// `GET`: the caller's organization's tokens (all for system admins), newest first, masked.
pub async fn list(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let organization = req.query_parsed::<u64>("organization", "an organization id")?;
    let role = req.query("role");
    let view = app.views.tokens.read();
    let items = view
        .all()
        .rev()
        .filter(|t| visible(&principal, t))
        .filter(|t| organization.is_none_or(|o| t.organization == Some(o)))
        .filter(|t| role.is_none_or(|r| serde_json::to_value(t.role).is_ok_and(|v| v == r)))
        .map(render);
    paginate_iter(&req, items)
}

/// `POST`: issue a token; the response is the only time it is shown.
pub async fn create(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let input: TokenInput = req.json()?;
    let secret = secrets::generate_token();
    let _serial = app.commands.lock().await;
    let event = {
        let orgs = app.views.organizations.read();
        let id = app.views.tokens.read().max_id + 1;
        token::create(
            &principal,
            id,
            input,
            Digest(token_digest(&secret)),
            mask(&secret),
            |org| orgs.get(org).is_some(),
        )?
    };
    let id = event.id;
    app.commit(
        &metadata(&principal, &req),
        token::stream(id),
        ExpectedRevision::NoStream,
        vec![event.into()],
    )
    .await?;
    let mut body = {
        let view = app.views.tokens.read();
        render(
            view.get(id)
                .ok_or_else(|| ApiError::internal("token missing after commit", id))?,
        )
    };
    body["token"] = json!(secret);
    Ok(created(&body))
}

/// `GET /{id}`.
pub async fn detail(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let view = app.views.tokens.read();
    let token = view
        .get(id)
        .filter(|t| visible(&principal, t))
        .ok_or_else(ApiError::not_found)?;
    Ok(ok(&render(token)))
}

/// `DELETE /{id}`: revoke at once.
pub async fn revoke(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let id = req.id("id")?;
    let _serial = app.commands.lock().await;
    let organization = {
        let view = app.views.tokens.read();
        let token = view
            .get(id)
            .filter(|t| visible(&principal, t))
            .ok_or_else(ApiError::not_found)?;
        let allowed = match token.organization {
            Some(org) => principal.can_manage(org),
            None => principal.role == Role::SystemAdmin,
        };
        if !allowed {
            return Err(ApiError::forbidden(
                "Only an organization admin can revoke tokens.",
            ));
        }
        token.organization
    };
    let event = TokenRevoked { id, organization };
    app.commit(
        &metadata(&principal, &req),
        token::stream(id),
        ExpectedRevision::StreamExists,
        vec![event.into()],
    )
    .await?;
    Ok(no_content())
}
