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
        .add(M::POST, "/api/v2/organizations/{id}/erase", handler!(admin::organizations::erase))
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
        // Actions: job templates, jobs, workflows, notifications.
        .add(M::GET, "/api/v2/job_templates", handler!(admin::job_templates::list))
        .add(M::POST, "/api/v2/job_templates", handler!(admin::templates::create::<admin::job_templates::JobTemplates>))
        .add(M::GET, "/api/v2/job_templates/{id}", handler!(admin::templates::detail::<admin::job_templates::JobTemplates>))
        .add(M::PATCH, "/api/v2/job_templates/{id}", handler!(admin::templates::update::<admin::job_templates::JobTemplates>))
        .add(M::DELETE, "/api/v2/job_templates/{id}", handler!(admin::templates::delete::<admin::job_templates::JobTemplates>))
        .add(M::POST, "/api/v2/job_templates/{id}/launch", handler!(admin::job_templates::launch))
        .add(M::GET, "/api/v2/jobs", handler!(admin::jobs::list))
        .add(M::GET, "/api/v2/jobs/{id}", handler!(admin::jobs::detail))
        .add(M::GET, "/api/v2/jobs/{id}/stdout", handler!(admin::jobs::stdout))
        .add(M::POST, "/api/v2/jobs/{id}/cancel", handler!(admin::jobs::cancel))
        .add(M::GET, "/api/v2/workflow_job_templates", handler!(admin::workflows::list_templates))
        .add(M::POST, "/api/v2/workflow_job_templates", handler!(admin::templates::create::<admin::workflows::WorkflowTemplates>))
        .add(M::GET, "/api/v2/workflow_job_templates/{id}", handler!(admin::templates::detail::<admin::workflows::WorkflowTemplates>))
        .add(M::PATCH, "/api/v2/workflow_job_templates/{id}", handler!(admin::templates::update::<admin::workflows::WorkflowTemplates>))
        .add(M::DELETE, "/api/v2/workflow_job_templates/{id}", handler!(admin::templates::delete::<admin::workflows::WorkflowTemplates>))
        .add(M::POST, "/api/v2/workflow_job_templates/{id}/launch", handler!(admin::workflows::launch))
        .add(M::GET, "/api/v2/workflow_jobs", handler!(admin::workflows::list_jobs))
        .add(M::GET, "/api/v2/workflow_jobs/{id}", handler!(admin::workflows::job_detail))
        .add(M::POST, "/api/v2/workflow_jobs/{id}/cancel", handler!(admin::workflows::cancel))
        .add(M::GET, "/api/v2/notification_templates", handler!(admin::notifications::list))
        .add(M::POST, "/api/v2/notification_templates", handler!(admin::templates::create::<admin::notifications::NotificationTemplates>))
        .add(M::GET, "/api/v2/notification_templates/{id}", handler!(admin::templates::detail::<admin::notifications::NotificationTemplates>))
        .add(M::PATCH, "/api/v2/notification_templates/{id}", handler!(admin::templates::update::<admin::notifications::NotificationTemplates>))
        .add(M::DELETE, "/api/v2/notification_templates/{id}", handler!(admin::templates::delete::<admin::notifications::NotificationTemplates>))
        .add(M::POST, "/api/v2/notification_templates/{id}/test", handler!(admin::notifications::test))
        // Outbound: endpoints, deliveries, published events.
        .add(M::GET, "/api/v2/outbound_webhooks", handler!(admin::outbound::list))
        .add(M::POST, "/api/v2/outbound_webhooks", handler!(admin::outbound::create))
        .add(M::GET, "/api/v2/outbound_webhooks/{id}", handler!(admin::outbound::detail))
        .add(M::PATCH, "/api/v2/outbound_webhooks/{id}", handler!(admin::outbound::update))
        .add(M::DELETE, "/api/v2/outbound_webhooks/{id}", handler!(admin::outbound::delete))
        .add(M::GET, "/api/v2/outbound_webhooks/{id}/secret", handler!(admin::outbound::secret))
        .add(M::POST, "/api/v2/outbound_webhooks/{id}/secret", handler!(admin::outbound::rotate_secret))
        .add(M::POST, "/api/v2/outbound_webhooks/{id}/test", handler!(admin::outbound::test))
        .add(M::POST, "/api/v2/outbound_webhooks/{id}/recover", handler!(admin::outbound::recover))
        .add(M::POST, "/api/v2/outbound_webhooks/{id}/enable", handler!(admin::outbound::enable))
        .add(M::GET, "/api/v2/outbound_webhooks/{id}/deliveries", handler!(admin::deliveries::list))
        .add(M::GET, "/api/v2/deliveries/{id}", handler!(admin::deliveries::detail))
        .add(M::POST, "/api/v2/deliveries/{id}/redeliver", handler!(admin::deliveries::redeliver))
        .add(M::POST, "/api/v2/events", handler!(admin::events::publish))
        .add(M::GET, "/api/v2/event_types", handler!(admin::events::event_types))
}
