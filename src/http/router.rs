//! Route table: path patterns (matched with or without a trailing slash) to handlers by method.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use warp::http::{HeaderValue, Method, StatusCode, header};

use super::error::ApiError;
use super::request::Request;
use super::response::Response;
use crate::app::App;

/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send>>;
/// A request handler.
pub type Handler = fn(Arc<App>, Request) -> HandlerFuture;

/// Turns an `async fn(Arc<App>, Request) -> Result<Response, ApiError>` into a [`Handler`].
#[macro_export]
macro_rules! handler {
    ($f:path) => {{
        fn boxed(
            app: std::sync::Arc<$crate::app::App>,
            req: $crate::http::Request,
        ) -> $crate::http::router::HandlerFuture {
            Box::pin($f(app, req))
        }
        boxed as $crate::http::router::Handler
    }};
}

struct Route {
    pattern: &'static str,
    methods: Vec<(Method, Handler)>,
}

/// The route table.
#[derive(Default)]
pub struct Router {
    matcher: matchit::Router<usize>,
    routes: Vec<Route>,
}

/// A matched route.
pub struct Matched {
    /// The pattern, used as the metrics label.
    pub pattern: &'static str,
    /// The handler.
    pub handler: Handler,
    /// Path parameters.
    pub params: Vec<(String, String)>,
}

impl Router {
    /// Adds `handler` for `method` on `pattern` (written without a trailing slash, `{id}` segments).
    pub fn add(mut self, method: Method, pattern: &'static str, handler: Handler) -> Self {
        if let Some(route) = self.routes.iter_mut().find(|r| r.pattern == pattern) {
            route.methods.push((method, handler));
            return self;
        }
        self.matcher
            .insert(pattern, self.routes.len())
            .expect("route patterns do not conflict");
        self.routes.push(Route {
            pattern,
            methods: vec![(method, handler)],
        });
        self
    }

    /// Finds the handler for a request: 404 for an unknown path, 405 for a known path.
    pub fn find(&self, method: &Method, path: &str) -> Result<Matched, ApiError> {
        let normalised = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let found = self
            .matcher
            .at(normalised)
            .map_err(|_| ApiError::not_found())?;
        let route = &self.routes[*found.value];
        let params = found
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let method = if *method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        match route.methods.iter().find(|(m, _)| m == method) {
            Some((_, handler)) => Ok(Matched {
                pattern: route.pattern,
                handler: *handler,
                params,
            }),
            None => {
                let allowed: Vec<&str> = route.methods.iter().map(|(m, _)| m.as_str()).collect();
                let mut error = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("Method {method} not allowed; use {}.", allowed.join(", ")),
                );
                error.detail.shrink_to_fit();
                Err(error)
            }
        }
    }

    /// The `Allow` header for a path, if it exists.
    pub fn allow(&self, path: &str) -> Option<HeaderValue> {
        let normalised = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let found = self.matcher.at(normalised).ok()?;
        let methods: Vec<&str> = self.routes[*found.value]
            .methods
            .iter()
            .map(|(m, _)| m.as_str())
            .collect();
        HeaderValue::from_str(&methods.join(", ")).ok()
    }
}

/// Adds the `Allow` header to a 405 response.
pub fn with_allow(mut response: Response, allow: Option<HeaderValue>) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allow
    {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}
