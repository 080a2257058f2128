//! A journal of outbound events folded into both outbound views, for their unit tests.

use super::outbound::OutboundView;
use super::{DeliveriesView, PublicationsView, StoredView, View, open_stored};
use crate::codec::Sealed;
use crate::domain::Event;
use crate::domain::delivery::{
    AttemptFailed, DeliveryKind, DeliveryScheduled, DeliverySource, EventRef,
};
use crate::domain::endpoint::{EndpointCreated, EndpointSettings};
use crate::journal::{Metadata, RecordedEvent};
use crate::store::{Store, Writes};

/// Events appended at `position`, `at`, each folded into both views at once.
pub struct Log {
    pub outbound: OutboundView,
    pub deliveries: DeliveriesView,
    pub publications: PublicationsView,
    pub position: u64,
    pub at: i64,
    _store: Store,
}

impl Log {
    /// A log holding endpoint 1 of organization 1, enabled.
    pub fn new() -> Self {
        let store = Store::temporary().unwrap();
        let mut log = Self {
            outbound: OutboundView::default(),
            deliveries: open_stored(&store).unwrap(),
            publications: open_stored(&store).unwrap(),
            position: 10,
            at: 1_000,
            _store: store,
        };
        let settings = EndpointSettings {
            name: "ci".into(),
            url: "https://example.com".into(),
            events: vec!["*".into()],
            ..EndpointSettings::default()
        };
        log.push(
            EndpointCreated {
                id: 1,
                organization: 1,
                settings,
                enabled: true,
                secret: Sealed::default(),
            }
            .into(),
        );
        log
    }

    /// Appends `event`; returns its position.
    pub fn push(&mut self, event: Event) -> u64 {
        let new = event.encode(Metadata::default());
        let position = self.position;
        let record = RecordedEvent {
            position,
            stream: "endpoint-1".into(),
            revision: 0,
            event_type: new.event_type,
            schema_version: new.schema_version,
            recorded_at: self.at,
            metadata: new.metadata,
            data: new.data.into(),
            compacted: false,
        };
        self.outbound.apply(&record);
        fold(&mut self.deliveries, &record);
        fold(&mut self.publications, &record);
        self.position += 1;
        position
    }

    /// Dispatches the event at `source` to endpoint 1.
    pub fn schedule(&mut self, source: u64) -> u64 {
        self.push(
            DeliveryScheduled {
                endpoint: 1,
                organization: 1,
                webhook_id: format!("msg_{source}"),
                event_type: "build.done".into(),
                kind: DeliveryKind::Dispatched,
                source: DeliverySource::Journal(EventRef {
                    position: source,
                    stream: "published-1".into(),
                    revision: 0,
                }),
            }
            .into(),
        )
    }

    /// Attempt `attempt` of `delivery` failed with a 503; `next` is its retry.
    pub fn fail(&mut self, delivery: u64, attempt: u32, next: Option<i64>) {
        self.push(
            AttemptFailed {
                endpoint: 1,
                delivery,
                attempt,
                at: 50,
                status: Some(503),
                duration_ms: 7,
                snippet: "busy".into(),
                error: "HTTP 503".into(),
                error_kind: "http_status".into(),
                next_attempt_at: next,
            }
            .into(),
        );
    }
}

fn fold(view: &mut impl StoredView, record: &RecordedEvent) {
    let mut writes = Writes::new(view.table());
    view.apply(record, &mut writes).unwrap();
    writes.commit(record.position + 1).unwrap();
}
