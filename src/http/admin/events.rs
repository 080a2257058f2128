//! `/api/v2/events/` (publish a custom event) and `/api/v2/event_types/` (what endpoints can
//! subscribe to).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::codec::EventBody;
use warp::http::StatusCode;

use super::common::target_organization;
use crate::app::App;
use crate::domain::published::{self, BUILTIN_TYPES, EventPublished, PublishInput};
use crate::domain::rfc3339;
use crate::http::auth::authenticate;
use crate::http::pagination::paginate_iter;
use crate::http::response::{Response, json};
use crate::http::{ApiError, Request, metadata};
use crate::journal::ExpectedRevision;

/// How long `POST /api/v2/events/` waits for the dispatcher to count the matching endpoints.
const MATCH_WAIT: Duration = Duration::from_secs(10);

fn accepted(id: u64, event_type: &str, deliveries: Option<u32>) -> Response {
    json(
        StatusCode::ACCEPTED,
        &json!({"id": id, "event_type": event_type, "deliveries_scheduled": deliveries}),
    )
}

/// `POST`: appends the event and answers 202 once it is durable, with the number of endpoints it
/// was matched to (`null` if the dispatcher is too far behind to say within 10 s; the
/// deliveries happen regardless). The append is submitted before the first suspension point,
/// so a client that hangs up cannot cancel an accepted event. With `idempotency_key`, a repeat
/// within 24 hours returns the first answer and appends nothing.
pub async fn publish(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let input: PublishInput = req.json()?;
    // An event defaults to the caller's organization.
    let organization = target_organization(
        &app,
        &principal,
        input.organization.or(principal.organization),
    )?;
    let mut event = published::publish(organization, input)?;
    event.payload = app
        .data_keys
        .protect(organization, EventPublished::TYPE, event.payload)
        .map_err(|e| ApiError::internal("data key", e))?;
    let event_type = event.event_type.clone();
    let key = event.idempotency_key.clone().map(|k| (organization, k));
    let _guard = match &key {
        Some(key) => Some(app.outbound.publish_locks.lock(key).await),
        None => None,
    };
    if let Some((org, key)) = &key {
        let first =
            app.views
                .publications
                .read()
                .idempotent(*org, key, app.outbound.clock.now())?;
        if let Some(first) = first {
            let counted = app
                .outbound
                .progress
                .matched(first.id, Duration::ZERO)
                .await;
            let mut response = accepted(
                first.id,
                &first.event_type,
                Some(counted.unwrap_or(first.deliveries)),
            );
            response.headers_mut().insert(
                "idempotent-replayed",
                warp::http::HeaderValue::from_static("true"),
            );
            return Ok(response);
        }
    }
    let appended = app
        .commit(
            &metadata(&principal, &req),
            published::stream(organization),
            ExpectedRevision::Any,
            vec![event.into()],
        )
        .await?;
    let id = appended.first_position;
    let deliveries = app.outbound.progress.matched(id, MATCH_WAIT).await;
    Ok(accepted(id, &event_type, deliveries))
}

/// `GET /api/v2/event_types/`: the built-in types (with a description and an example payload),
/// then the custom types the caller's organizations have published. Filter: `name`.
pub async fn event_types(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let principal = authenticate(&app, &req)?;
    let name = req.query("name").filter(|n| !n.is_empty());
    let view = app.views.outbound.read();
    let builtin = BUILTIN_TYPES
        .iter()
        .chain(crate::domain::lifecycle::BUILTIN_TYPES)
        .map(|t| {
            json!({
                "name": t.name,
                "builtin": true,
                "description": t.description,
                "example_payload": serde_json::from_str::<Value>(t.example).unwrap_or(Value::Null),
                "organization": null,
            })
        });
    let custom = view
        .custom_types()
        .filter(|t| principal.can_read(t.organization))
        .map(|t| {
            json!({
                "name": t.name,
                "builtin": false,
                "description": "Published through POST /api/v2/events/.",
                "example_payload": null,
                "organization": t.organization,
                "first_seen": rfc3339(t.first_seen),
                "last_seen": rfc3339(t.last_seen),
                "count": t.count,
            })
        });
    let items = builtin
        .chain(custom)
        .filter(|t| name.is_none_or(|n| t["name"] == n));
    paginate_iter(&req, items)
}
