//! Checks shared by the organization-scoped resources.

use serde_json::{Value, json};

use crate::app::App;
use crate::domain::access::Principal;
use crate::http::auth::require_manage;
use crate::http::request::from_json_value;
use crate::http::{ApiError, Request};

/// The organization a new resource goes into: required, must exist for the caller (else 400
/// naming the field, as for a missing one), and the caller must manage it (403).
pub fn target_organization(
    app: &App,
    principal: &Principal,
    organization: Option<u64>,
) -> Result<u64, ApiError> {
    let field_error = |message: String| ApiError::field("organization", message);
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

/// The `extra_vars` of a launch request (`{}` for an empty body or none given).
pub fn launch_overrides(req: &Request) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Launch {
        extra_vars: Option<Value>,
    }
    let input: Launch = if req.body.iter().all(u8::is_ascii_whitespace) {
        Launch::default()
    } else {
        from_json_value(req.json_value()?)?
    };
    match input.extra_vars {
        None | Some(Value::Null) => Ok(json!({})),
        // A secret sent back as `$encrypted$` means "the template's value".
        Some(Value::Object(mut members)) => {
            members.retain(|_, v| v.as_str() != Some(crate::secrets::MASK));
            Ok(Value::Object(members))
        }
        Some(_) => Err(ApiError::field(
            "extra_vars",
            "Extra variables must be a JSON object.",
        )),
    }
}

/// A query parameter that must be one of a fixed set of names (400 naming it otherwise).
pub fn choice<T>(
    req: &Request,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    names: &str,
) -> Result<Option<T>, ApiError> {
    match req.query(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .ok_or_else(|| ApiError::field(name, format!("\"{v}\" is not one of {names}."))),
    }
}
