//! A request as handlers see it: method, path parameters, query, headers, the whole body.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::http::{HeaderMap, Method, StatusCode, header};

use super::error::ApiError;
use crate::domain::FieldErrors;

/// One HTTP request, body already read (within the size limit).
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Path as sent.
    pub path: String,
    /// Values of the route's `{name}` segments.
    pub params: Vec<(String, String)>,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// `X-Request-Id` if the client sent one, else generated; recorded on every event.
    pub correlation_id: String,
}

impl Request {
    /// A path parameter that must be an integer id; anything else cannot exist (404).
    pub fn id(&self, name: &str) -> Result<u64, ApiError> {
        self.param(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(ApiError::not_found)
    }

    /// A path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter parsed as `T`; a value that does not parse is a 400 naming it.
    pub fn query_parsed<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.query(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::invalid({
                    let mut f = FieldErrors::default();
                    f.add(name, format!("Expected {expected}, got {v:?}."));
                    f
                })
            }),
        }
    }

    /// A query parameter holding an RFC 3339 time, as microseconds since the epoch.
    pub fn query_time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.query_parsed::<chrono::DateTime<chrono::FixedOffset>>(
            name,
            "an RFC 3339 time such as 2026-01-31T12:00:00Z",
        )
        .map(|t| t.map(|t| t.timestamp_micros()))
    }

    /// A header's value as text.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body is declared as JSON.
    pub fn is_json(&self) -> bool {
        self.header(header::CONTENT_TYPE)
            .is_some_and(|ct| media_type(ct) == "application/json")
    }

    /// The body as a JSON value (415 unless JSON, 400 if malformed).
    pub fn json_value(&self) -> Result<serde_json::Value, ApiError> {
        if !self.is_json() {
            return Err(unsupported_media_type());
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request("malformed_json", format!("Malformed JSON: {e}.")))
    }

    /// The body as `T`: 415 unless JSON, 400 if malformed, 400 naming the field if it does not fit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let value = self.json_value()?;
        if !value.is_object() {
            return Err(ApiError::bad_request("invalid", "Expected a JSON object."));
        }
        from_json_value(value)
    }

    /// Like [`Self::json`], but an empty body means `T::default()`.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(T::default())
        } else {
            self.json()
        }
    }
}

/// Deserialises `value` as `T`, naming the offending field in the error.
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let mut fields = FieldErrors::default();
        if let Some(name) = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
        {
            // serde_path_to_error's path already ends with the unknown key itself.
            let field = if path == "." || path == name || path.ends_with(&format!(".{name}")) {
                if path == "." {
                    name.to_owned()
                } else {
                    path.clone()
                }
            } else {
                format!("{path}.{name}")
            };
            fields.add(field, "Unknown field.");
        } else if path == "." {
            fields.add("non_field_errors", capitalise(&message));
        } else {
            fields.add(path, capitalise(&message));
        }
        ApiError::invalid(fields)
    })
}

fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    let first = chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>())
        .unwrap_or_default();
    let text = format!("{first}{}", chars.as_str());
    if text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    }
}

/// The media type of a Content-Type value, lower-cased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// 415 for a body that is not JSON.
pub fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the body as JSON with Content-Type: application/json.",
    )
}
