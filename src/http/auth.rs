//! Authentication: `Authorization: Bearer <token>` to a [`Principal`].

use warp::http::header;

use super::error::ApiError;
use super::request::Request;
use crate::app::App;
use crate::domain::access::Principal;
use crate::secrets::token_digest;
use crate::signing::constant_time_eq;

/// The caller of `req`, or 401 saying exactly what is wrong with the credentials.
pub fn authenticate(app: &App, req: &Request) -> Result<Principal, ApiError> {
    let Some(value) = req.headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "not_authenticated",
            "Authentication credentials were not provided.",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.contains(' '))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "malformed_authorization",
                "Malformed Authorization header; expected 'Bearer <token>'.",
            )
        })?;
    let digest = token_digest(token);
    if constant_time_eq(&digest, app.admin_token_digest()) {
        return Ok(Principal::bootstrap());
    }
    let tokens = app.views.tokens.read();
    let record = tokens.by_digest(&digest).ok_or_else(invalid_token)?;
    if let Some(org) = record.organization
        && app.views.organizations.read().get(org).is_none()
    {
        return Err(invalid_token());
    }
    Ok(Principal {
        token_id: Some(record.id),
        role: record.role,
        organization: record.organization,
    })
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized("invalid_token", "Invalid or revoked token.")
}

/// 403 unless the caller is a system admin.
pub fn require_system_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_system_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("This requires a system admin token."))
    }
}

/// 404 if the caller cannot see organization `org`'s resources.
pub fn require_read(principal: &Principal, org: u64) -> Result<(), ApiError> {
    if principal.can_read(org) {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

/// 404 if the caller cannot see organization `org`'s resources, 403 if it may only read them.
pub fn require_manage(principal: &Principal, org: u64) -> Result<(), ApiError> {
    require_read(principal, org)?;
    if principal.can_manage(org) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Your role may read this organization's resources but not change them.",
        ))
    }
}
