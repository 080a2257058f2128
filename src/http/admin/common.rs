//! Checks shared by the organization-scoped resources.

use crate::app::App;
use crate::domain::FieldErrors;
use crate::domain::access::Principal;
use crate::http::ApiError;
use crate::http::auth::require_manage;

/// The organization a new resource goes into: required, must exist for the caller (else 400
/// naming the field, as for a missing one), and the caller must manage it (403).
pub fn target_organization(
    app: &App,
    principal: &Principal,
    organization: Option<u64>,
) -> Result<u64, ApiError> {
    let field_error = |message: String| {
        let mut errors = FieldErrors::default();
        errors.add("organization", message);
        ApiError::invalid(errors)
    };
    let organization = organization.ok_or_else(|| field_error("This field is required.".into()))?;
    let exists = app.views.organizations.read().get(organization).is_some();
    if !exists || !principal.can_read(organization) {
        return Err(field_error(format!(
            "Organization {organization} does not exist."
        )));
    }
    require_manage(principal, organization)?;
    Ok(organization)
}

/// The outbound network policy for a URL a user configures (SSRF guard for literal addresses;
/// host names are checked again at connect time).
pub fn url_policy(app: &App) -> impl Fn(&str) -> Result<(), String> + '_ {
    move |url| {
        let parsed = url::Url::parse(url).map_err(|e| format!("Enter a valid URL ({e})."))?;
        crate::delivery::ssrf::check_url(&parsed, app.config.outbound.allow_private_networks)
            .map_err(|e| e.to_string())
    }
}

/// A time in µs as RFC 3339, or null.
pub fn time(micros: Option<i64>) -> serde_json::Value {
    micros.map_or(serde_json::Value::Null, |m| {
        serde_json::Value::String(crate::domain::rfc3339(m))
    })
}
