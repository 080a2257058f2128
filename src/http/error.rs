//! The one place errors become HTTP statuses: `{"detail", "code", "fields"}` for every failure.

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};

use super::response::{Response, json};
use crate::domain::{DomainError, FieldErrors};
use crate::journal::{AppendError, JournalError};

/// An error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable, snake_case machine code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub detail: String,
    /// Per-field messages for validation errors.
    pub fields: FieldErrors,
    /// Seconds a client should wait before retrying (503, 429).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    detail: &'a str,
    code: &'a str,
    fields: &'a FieldErrors,
}

impl ApiError {
    /// An error with a status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            fields: FieldErrors::default(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 400 with per-field messages.
    pub fn invalid(fields: FieldErrors) -> Self {
        let detail = format!("Invalid input: {fields}");
        Self {
            fields,
            ..Self::bad_request("invalid", detail)
        }
    }

    /// 400 naming one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let mut fields = FieldErrors::default();
        fields.add(name, message);
        Self::invalid(fields)
    }

    /// 401: no or bad credentials.
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    /// 403: the caller's role is too low.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", detail)
    }

    /// 404: unknown, or another tenant's.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found.")
    }

    /// 409: conflicts with current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
        }
    }

    /// 500: a bug or an unexpected failure (details go to the log, not the client).
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error; see the server log.",
        )
    }

    /// The JSON response.
    pub fn into_response(self) -> Response {
        let mut response = json(
            self.status,
            &Body {
                detail: &self.detail,
                code: self.code,
                fields: &self.fields,
            },
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(fields) => ApiError::invalid(fields),
            DomainError::Conflict(detail) => ApiError::conflict(detail),
            DomainError::NotFound => ApiError::not_found(),
            DomainError::Forbidden(detail) => ApiError::forbidden(detail),
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::WrongExpectedRevision { .. } => {
                ApiError::conflict("The resource was changed by a concurrent request; retry.")
            }
            AppendError::Invalid(detail) => ApiError::internal("invalid append", detail),
            AppendError::Unavailable(reason) => {
                tracing::warn!(%reason, "journal refused an append");
                ApiError::unavailable(
                    "The journal cannot accept writes right now; retry later.",
                    5,
                )
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal("read-model store", e)
    }
}

impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Closed(_) => {
                ApiError::unavailable("The server is shutting down; retry later.", 5)
            }
            other => ApiError::internal("journal read failed", other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_that_cannot_take_writes_is_a_503_with_retry_after() {
        let response = ApiError::from(AppendError::Unavailable("disk full".into())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let closed = ApiError::from(JournalError::Closed("shutting down".into())).into_response();
        assert_eq!(closed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(closed.headers().contains_key(header::RETRY_AFTER));
        let unauthorized = ApiError::unauthorized("invalid_token", "no").into_response();
        assert_eq!(unauthorized.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
