//! The registry of every domain event type: decoding by type name, encoding, JSON rendering for
//! replay and audit. Adding an event type means adding one line to `event_registry!` below.

use serde::Serialize;

use crate::codec::{self, CodecError, EventBody};
use crate::journal::{Metadata, NewEvent, RecordedEvent};

use super::delivery::{
    AttemptFailed, AttemptSucceeded, DeliveryDeadLettered, DeliveryFilterFailed, DeliveryScheduled,
};
use super::endpoint::{
    EndpointCreated, EndpointDeleted, EndpointDisabled, EndpointEnabled, EndpointSecretRotated,
    EndpointUpdated,
};
use super::job::{JobCancelRequested, JobDurationExceeded, JobFinished, JobLaunched, JobStarted};
use super::job_template::{JobTemplateCreated, JobTemplateDeleted, JobTemplateUpdated};
use super::notification::{
    NotificationRequested, NotificationSent, NotificationTemplateCreated,
    NotificationTemplateDeleted, NotificationTemplateUpdated,
};
use super::organization::{
    OrganizationCreated, OrganizationDeleted, OrganizationErased, OrganizationUpdated,
};
use super::published::EventPublished;
use super::retention::{OrganizationRetentionSet, RetentionExpired};
use super::rule::{RuleCreated, RuleDeleted, RuleEnabledChanged, RuleKeyRotated, RuleUpdated};
use super::token::{TokenCreated, TokenRevoked};
use super::webhook::{
    ActionsFired, EventEvaluated, WebhookParked, WebhookReceived, WebhookRejected,
    WebhookRetryRequested,
};
use super::workflow::{
    WorkflowCancelRequested, WorkflowDurationExceeded, WorkflowFinished, WorkflowLaunched,
    WorkflowNodeCompleted, WorkflowNodeLaunched, WorkflowStarted, WorkflowTemplateCreated,
    WorkflowTemplateDeleted, WorkflowTemplateUpdated,
};

/// What the audit trail shows about a state change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditInfo {
    /// The organization the change belongs to (none for system-wide changes).
    pub organization: Option<u64>,
    /// The kind of resource changed, e.g. `organization`.
    pub resource_type: &'static str,
    /// Its id.
    pub resource_id: String,
    /// A summary of the change, with secrets masked or omitted.
    pub details: serde_json::Value,
}

/// Events that are state changes worth an audit entry say what changed.
pub trait Audited {
    /// The audit view of this event, or `None` if it is not an audited state change.
    fn audit(&self) -> Option<AuditInfo>;
}

macro_rules! event_registry {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// Every domain event hookforge records.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $(
                #[doc = concat!("A `", stringify!($ty), "`.")]
                $variant($ty),
            )*
        }

        impl Event {
            /// Decodes a recorded event; `Ok(None)` for a type this build does not know.
            pub fn decode(record: &RecordedEvent) -> Result<Option<Event>, CodecError> {
                let event_type = record.event_type.as_str();
                $(
                    if event_type == <$ty as EventBody>::TYPE {
                        return codec::decode::<$ty>(record).map(|e| Some(Event::$variant(e)));
                    }
                )*
                Ok(None)
            }

            /// The stored type name.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => <$ty as EventBody>::TYPE,)*
                }
            }

            /// Encodes the event for appending.
            pub fn encode(&self, metadata: Metadata) -> NewEvent {
                match self {
                    $(Event::$variant(e) => codec::encode(e, metadata),)*
                }
            }

            /// The event's data as JSON (sealed secrets stay sealed).
            pub fn data_json(&self) -> serde_json::Value {
                match self {
                    $(Event::$variant(e) => serde_json::to_value(e).unwrap_or_default(),)*
                }
            }

            /// The audit view of this event, if it is an audited state change.
            pub fn audit(&self) -> Option<AuditInfo> {
                match self {
                    $(Event::$variant(e) => e.audit(),)*
                }
            }

            /// Every registered type name.
            pub const TYPES: &'static [&'static str] = &[$(<$ty as EventBody>::TYPE,)*];
        }

        $(
            impl From<$ty> for Event {
                fn from(event: $ty) -> Self {
                    Event::$variant(event)
                }
            }
        )*
    };
}

event_registry! {
    OrganizationCreated(OrganizationCreated),
    OrganizationUpdated(OrganizationUpdated),
    OrganizationDeleted(OrganizationDeleted),
    OrganizationErased(OrganizationErased),
    TokenCreated(TokenCreated),
    TokenRevoked(TokenRevoked),
    RuleCreated(RuleCreated),
    RuleUpdated(RuleUpdated),
    RuleEnabledChanged(RuleEnabledChanged),
    RuleKeyRotated(RuleKeyRotated),
    RuleDeleted(RuleDeleted),
    WebhookReceived(WebhookReceived),
    WebhookRejected(WebhookRejected),
    EventEvaluated(EventEvaluated),
    ActionsFired(ActionsFired),
    JobTemplateCreated(JobTemplateCreated),
    JobTemplateUpdated(JobTemplateUpdated),
    JobTemplateDeleted(JobTemplateDeleted),
    JobLaunched(JobLaunched),
    JobStarted(JobStarted),
    JobFinished(JobFinished),
    JobCancelRequested(JobCancelRequested),
    JobDurationExceeded(JobDurationExceeded),
    WorkflowTemplateCreated(WorkflowTemplateCreated),
    WorkflowTemplateUpdated(WorkflowTemplateUpdated),
    WorkflowTemplateDeleted(WorkflowTemplateDeleted),
    WorkflowLaunched(WorkflowLaunched),
    WorkflowStarted(WorkflowStarted),
    WorkflowNodeLaunched(WorkflowNodeLaunched),
    WorkflowNodeCompleted(WorkflowNodeCompleted),
    WorkflowFinished(WorkflowFinished),
    WorkflowCancelRequested(WorkflowCancelRequested),
    WorkflowDurationExceeded(WorkflowDurationExceeded),
    NotificationTemplateCreated(NotificationTemplateCreated),
    NotificationTemplateUpdated(NotificationTemplateUpdated),
    NotificationTemplateDeleted(NotificationTemplateDeleted),
    NotificationRequested(NotificationRequested),
    NotificationSent(NotificationSent),
    EndpointCreated(EndpointCreated),
    EndpointUpdated(EndpointUpdated),
    EndpointDeleted(EndpointDeleted),
    EndpointEnabled(EndpointEnabled),
    EndpointDisabled(EndpointDisabled),
    EndpointSecretRotated(EndpointSecretRotated),
    EventPublished(EventPublished),
    DeliveryScheduled(DeliveryScheduled),
    AttemptSucceeded(AttemptSucceeded),
    AttemptFailed(AttemptFailed),
    DeliveryDeadLettered(DeliveryDeadLettered),
    DeliveryFilterFailed(DeliveryFilterFailed),
    WebhookParked(WebhookParked),
    WebhookRetryRequested(WebhookRetryRequested),
    OrganizationRetentionSet(OrganizationRetentionSet),
    RetentionExpired(RetentionExpired),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_unique() {
        let mut names = Event::TYPES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Event::TYPES.len());
    }
}
