//! Every route the server answers.

use warp::http::Method;

use super::router::Router;
use super::{admin, health};
use crate::handler;

/// The route table.
pub fn table() -> Router {
    Router::default()
        .add(Method::GET, "/healthz", handler!(health::healthz))
        .add(Method::GET, "/readyz", handler!(health::readyz))
        .add(Method::GET, "/metrics", handler!(health::metrics))
        .add(Method::GET, "/api/v2", handler!(admin::root))
        .add(Method::GET, "/api/v2/me", handler!(admin::me))
        .add(Method::GET, "/api/v2/organizations", handler!(admin::organizations::list))
        .add(Method::POST, "/api/v2/organizations", handler!(admin::organizations::create))
        .add(Method::GET, "/api/v2/organizations/{id}", handler!(admin::organizations::detail))
        .add(Method::PATCH, "/api/v2/organizations/{id}", handler!(admin::organizations::update))
        .add(Method::DELETE, "/api/v2/organizations/{id}", handler!(admin::organizations::delete))
        .add(Method::GET, "/api/v2/tokens", handler!(admin::tokens::list))
        .add(Method::POST, "/api/v2/tokens", handler!(admin::tokens::create))
        .add(Method::GET, "/api/v2/tokens/{id}", handler!(admin::tokens::detail))
        .add(Method::DELETE, "/api/v2/tokens/{id}", handler!(admin::tokens::revoke))
        .add(Method::GET, "/api/v2/audit_events", handler!(admin::audit::list))
        .add(Method::GET, "/api/v2/outbound_webhooks", handler!(admin::outbound::list))
        .add(Method::POST, "/api/v2/outbound_webhooks", handler!(admin::outbound::create))
        .add(Method::GET, "/api/v2/outbound_webhooks/{id}", handler!(admin::outbound::detail))
        .add(Method::PATCH, "/api/v2/outbound_webhooks/{id}", handler!(admin::outbound::update))
        .add(Method::DELETE, "/api/v2/outbound_webhooks/{id}", handler!(admin::outbound::delete))
        .add(Method::GET, "/api/v2/outbound_webhooks/{id}/secret", handler!(admin::outbound::secret))
        .add(Method::POST, "/api/v2/outbound_webhooks/{id}/secret", handler!(admin::outbound::rotate_secret))
        .add(Method::POST, "/api/v2/outbound_webhooks/{id}/test", handler!(admin::outbound::test))
        .add(Method::POST, "/api/v2/outbound_webhooks/{id}/recover", handler!(admin::outbound::recover))
        .add(Method::POST, "/api/v2/outbound_webhooks/{id}/enable", handler!(admin::outbound::enable))
        .add(Method::GET, "/api/v2/outbound_webhooks/{id}/deliveries", handler!(admin::deliveries::list))
        .add(Method::GET, "/api/v2/deliveries/{id}", handler!(admin::deliveries::detail))
        .add(Method::POST, "/api/v2/deliveries/{id}/redeliver", handler!(admin::deliveries::redeliver))
        .add(Method::POST, "/api/v2/events", handler!(admin::events::publish))
        .add(Method::GET, "/api/v2/event_types", handler!(admin::events::event_types))
}
