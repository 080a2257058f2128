//! AWX-style pagination: `{"count", "next", "previous", "results"}` with `page` and `page_size`.

use serde::Serialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::request::Request;
use super::response::{Response, ok};
use crate::domain::FieldErrors;
use crate::store::QueryPage;

/// Default page size.
pub const DEFAULT_PAGE_SIZE: usize = 25;
/// Largest page size a client may ask for.
pub const MAX_PAGE_SIZE: usize = 200;

/// Which page a list request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number.
    pub number: usize,
    /// Items per page.
    pub size: usize,
}

impl Page {
    /// Reads `page` and `page_size` (400 naming the parameter when invalid).
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let mut errors = FieldErrors::default();
        let number = match req.query("page") {
            None | Some("") => 1,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    errors.add("page", "A page number must be a positive integer.");
                    1
                }
            },
        };
        let size = match req.query("page_size") {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    errors.add(
                        "page_size",
                        format!("page_size must be an integer from 1 to {MAX_PAGE_SIZE}."),
                    );
                    DEFAULT_PAGE_SIZE
                }
            },
        };
        errors.into_result()?;
        Ok(Self { number, size })
    }

    /// Index of the first item on this page.
    pub fn offset(&self) -> usize {
        (self.number - 1) * self.size
    }
}

/// Renders one page of `items` (already filtered and ordered), which hold `count` in all.
/// A page past the end is a 404, as in AWX.
pub fn paginate<T: Serialize>(
    req: &Request,
    page: Page,
    count: usize,
    items: Vec<T>,
) -> Result<Response, ApiError> {
    if page.number > 1 && page.offset() >= count {
        return Err(ApiError::new(
            warp::http::StatusCode::NOT_FOUND,
            "invalid_page",
            "Invalid page.",
        ));
    }
    let link = |number: usize| {
        let mut query: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| k != "page")
            .cloned()
            .collect();
        query.push(("page".into(), number.to_string()));
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        format!("{}?{encoded}", req.path)
    };
    let next = (page.offset() + page.size < count).then(|| link(page.number + 1));
    let previous = (page.number > 1).then(|| link(page.number - 1));
    Ok(ok(
        &json!({"count": count, "next": next, "previous": previous, "results": items}),
    ))
}

/// Renders a page read from an index on disk: its rows, as `render` shows them, and its exact
/// count.
pub fn paginate_found<R>(
    req: &Request,
    page: Page,
    found: &QueryPage<R>,
    render: impl Fn(&R) -> Value,
) -> Result<Response, ApiError> {
    let rendered: Vec<Value> = found.rows.iter().map(render).collect();
    let count = usize::try_from(found.count).unwrap_or(usize::MAX);
    paginate(req, page, count, rendered)
}

/// Pages through an iterator that yields matching items in display order.
pub fn paginate_iter<T: Serialize>(
    req: &Request,
    items: impl Iterator<Item = T>,
) -> Result<Response, ApiError> {
    let page = Page::from_request(req)?;
    let mut count = 0;
    let mut results = Vec::with_capacity(page.size);
    for item in items {
        if count >= page.offset() && results.len() < page.size {
            results.push(item);
        }
        count += 1;
    }
    paginate(req, page, count, results)
}
