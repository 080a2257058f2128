//! Building responses.

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};

/// The response type handlers return.
pub type Response = warp::reply::Response;

/// A JSON response.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("serialising API types cannot fail");
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 200 with a JSON body.
pub fn ok(value: &impl Serialize) -> Response {
    json(StatusCode::OK, value)
}

/// 201 with a JSON body.
pub fn created(value: &impl Serialize) -> Response {
    json(StatusCode::CREATED, value)
}

/// 204 without a body.
pub fn no_content() -> Response {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A plain-text response.
pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
