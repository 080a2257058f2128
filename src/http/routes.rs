//! Every route the server answers, one per line.

use warp::http::Method;

use super::router::Router;
use super::{admin, health, ingress};
use crate::handler;

/// The route table.
#[rustfmt::skip]
pub fn table() -> Router {
    use Method as M;
    Router::default()
        .add(M::GET, "/healthz", handler!(health::healthz))
        .add(M::GET, "/readyz", handler!(health::readyz))
        .add(M::GET, "/metrics", handler!(health::metrics))
        .add(M::GET, "/api/v2", handler!(admin::root))
        .add(M::GET, "/api/v2/me", handler!(admin::me))
        // Tenants, tokens, audit.
        .add(M::GET, "/api/v2/organizations", handler!(admin::organizations::list))
        .add(M::POST, "/api/v2/organizations", handler!(admin::organizations::create))
        .add(M::GET, "/api/v2/organizations/{id}", handler!(admin::organizations::detail))
        .add(M::PATCH, "/api/v2/organizations/{id}", handler!(admin::organizations::update))
        .add(M::DELETE, "/api/v2/organizations/{id}", handler!(admin::organizations::delete))
        .add(M::GET, "/api/v2/tokens", handler!(admin::tokens::list))
        .add(M::POST, "/api/v2/tokens", handler!(admin::tokens::create))
        .add(M::GET, "/api/v2/tokens/{id}", handler!(admin::tokens::detail))
        .add(M::DELETE, "/api/v2/tokens/{id}", handler!(admin::tokens::revoke))
        .add(M::GET, "/api/v2/audit_events", handler!(admin::audit::list))
        // Inbound: rules, event logs, and the ingress itself.
        .add(M::GET, "/api/v2/event_rules", handler!(admin::rules::list))
        .add(M::POST, "/api/v2/event_rules", handler!(admin::rules::create))
        .add(M::GET, "/api/v2/event_rules/{id}", handler!(admin::rules::detail))
        .add(M::PATCH, "/api/v2/event_rules/{id}", handler!(admin::rules::update))
        .add(M::DELETE, "/api/v2/event_rules/{id}", handler!(admin::rules::delete))
        .add(M::POST, "/api/v2/event_rules/{id}/enable", handler!(admin::rules::enable))
        .add(M::POST, "/api/v2/event_rules/{id}/disable", handler!(admin::rules::disable))
        .add(M::GET, "/api/v2/event_rules/{id}/webhook_key", handler!(admin::rules::reveal_key))
        .add(M::POST, "/api/v2/event_rules/{id}/webhook_key", handler!(admin::rules::rotate_key))
        .add(M::GET, "/api/v2/event_rules/{id}/event_logs", handler!(admin::rules::event_logs))
        .add(M::POST, "/api/v2/event_rules/{id}/test", handler!(admin::rules::test))
        .add(M::GET, "/api/v2/event_logs", handler!(admin::event_logs::list))
        .add(M::GET, "/api/v2/event_logs/{id}", handler!(admin::event_logs::detail))
        .add(M::POST, "/api/v2/eda_webhooks/{path}", handler!(ingress::receive))
}
