//! Prometheus metrics: one registry, collectors grouped by subsystem.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::journal::JournalMetrics;

/// Every collector the server exposes at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    /// The registry behind `/metrics`; features register their own collectors here.
    pub registry: Registry,
    /// Journal commits, sizes and flush latency.
    pub journal: JournalMetrics,
    /// HTTP requests by route pattern, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP latency by route pattern.
    pub http_seconds: HistogramVec,
    /// Supervised actor restarts by kind.
    pub actor_restarts: IntCounterVec,
    /// Passivation of idle rule and endpoint actors.
    pub passivation: PassivationMetrics,
    /// Inbound webhooks and rule decisions.
    pub inbound: InboundMetrics,
    /// Outbound delivery.
    pub outbound: OutboundMetrics,
    /// Records set aside because a consumer could not process them, by consumer kind.
    pub parked: IntCounterVec,
    /// Records parked now (from the journal's parked index at start, plus new ones).
    pub parked_now: IntGauge,
    /// The retention sweeper's progress.
    pub retention: RetentionMetrics,
}

/// Passivation collectors, by actor kind (`rule`, `endpoint`).
#[derive(Clone)]
pub struct PassivationMetrics {
    /// Actors asleep now (defined resources whose actor is stopped until its next message).
    pub asleep: IntGaugeVec,
    /// Actors passivated after their idle time.
    pub passivated: IntCounterVec,
    /// Asleep actors woken by a message, an event of their stream or a due timer.
    pub woken: IntCounterVec,
}

impl PassivationMetrics {
    fn new(registry: &Registry) -> Self {
        let asleep = IntGaugeVec::new(
            Opts::new(
                "hookforge_actors_asleep",
                "Rule and endpoint actors passivated now, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let passivated = IntCounterVec::new(
            Opts::new(
                "hookforge_actor_passivations_total",
                "Idle actors passivated, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let woken = IntCounterVec::new(
            Opts::new(
                "hookforge_actor_wakes_total",
                "Asleep actors woken, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(asleep.clone()))
            .expect("registers once");
        registry
            .register(Box::new(passivated.clone()))
            .expect("registers once");
        registry
            .register(Box::new(woken.clone()))
            .expect("registers once");
        for kind in ["rule", "endpoint"] {
            asleep.with_label_values(&[kind]);
            passivated.with_label_values(&[kind]);
            woken.with_label_values(&[kind]);
        }
        Self {
            asleep,
            passivated,
            woken,
        }
    }
}

/// Retention sweeper collectors.
#[derive(Clone)]
pub struct RetentionMetrics {
    /// Rows expired, by kind (`event_logs`, `deliveries`, `audit`).
    pub expired: IntCounterVec,
    /// Sweeps completed.
    pub sweeps: IntCounter,
    /// When the last sweep finished (seconds since the epoch).
    pub last_sweep: IntGauge,
    /// Journal records whose payload compaction cut.
    pub compacted: IntCounter,
    /// Closed segments compaction rewrote.
    pub segments_compacted: IntCounter,
    /// Disk space compaction freed, in bytes.
    pub reclaimed: IntCounter,
}

impl RetentionMetrics {
    fn new(registry: &Registry) -> Self {
        let expired = IntCounterVec::new(
            Opts::new(
                "hookforge_retention_expired_total",
                "Rows expired by the retention sweeper, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let sweeps = IntCounter::new(
            "hookforge_retention_sweeps_total",
            "Retention sweeps completed",
        )
        .expect("valid metric");
        let last_sweep = IntGauge::new(
            "hookforge_retention_last_sweep_timestamp_seconds",
            "When the last retention sweep finished",
        )
        .expect("valid metric");
        registry
            .register(Box::new(expired.clone()))
            .expect("registers once");
        registry
            .register(Box::new(sweeps.clone()))
            .expect("registers once");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registers once");
            c
        };
        let compacted = counter(
            "hookforge_retention_compacted_records_total",
            "Journal records whose expired payload compaction cut out",
        );
        let segments_compacted = counter(
            "hookforge_retention_compacted_segments_total",
            "Closed journal segments rewritten by compaction",
        );
        let reclaimed = counter(
            "hookforge_retention_reclaimed_bytes_total",
            "Disk space compaction freed, in bytes",
        );
        registry
            .register(Box::new(last_sweep.clone()))
            .expect("registers once");
        for kind in crate::domain::retention::Expiring::ALL {
            expired.with_label_values(&[kind.name()]);
        }
        Self {
            expired,
            sweeps,
            last_sweep,
            compacted,
            segments_compacted,
            reclaimed,
        }
    }
}

/// Outbound delivery collectors.
#[derive(Clone)]
pub struct OutboundMetrics {
    /// Delivery attempts started.
    pub attempted: IntCounter,
    /// Attempts answered with a 2xx.
    pub succeeded: IntCounter,
    /// Attempts that failed.
    pub failed: IntCounter,
    /// Deliveries dead-lettered.
    pub dead_lettered: IntCounter,
    /// Endpoints disabled by delivery outcomes.
    pub endpoints_disabled: IntCounter,
    /// Duration of one attempt.
    pub attempt_seconds: Histogram,
    /// From the event's commit to its successful delivery.
    pub publish_to_delivery_seconds: Histogram,
    /// Deliveries waiting for an attempt or a retry.
    pub pending: IntGauge,
    /// Deliverable events the dispatcher matched.
    pub dispatched_events: IntCounter,
    /// Index lookups the dispatcher made (constant per event, whatever the number of endpoints).
    pub index_lookups: IntCounter,
    /// Endpoints those lookups returned, before filters.
    pub index_candidates: IntCounter,
    /// Deliveries endpoint actors recorded for dispatched events (filters passed).
    pub matched: IntCounter,
    /// Dispatched events recorded as `filter_error` (filter over budget or failed).
    pub filter_errors: IntCounter,
}

impl OutboundMetrics {
    fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registers once");
            c
        };
        let histogram = |name: &str, help: &str| {
            let buckets = vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registers once");
            h
        };
        let pending = IntGauge::new(
            "hookforge_outbound_pending_deliveries",
            "Deliveries waiting for an attempt or a retry",
        )
        .expect("valid metric");
        registry
            .register(Box::new(pending.clone()))
            .expect("registers once");
        Self {
            attempted: counter(
                "hookforge_outbound_attempts_total",
                "Outbound delivery attempts started",
            ),
            succeeded: counter(
                "hookforge_outbound_attempts_succeeded_total",
                "Outbound attempts answered with a 2xx",
            ),
            failed: counter(
                "hookforge_outbound_attempts_failed_total",
                "Outbound attempts that failed",
            ),
            dead_lettered: counter(
                "hookforge_outbound_dead_lettered_total",
                "Outbound deliveries dead-lettered",
            ),
            endpoints_disabled: counter(
                "hookforge_outbound_endpoints_disabled_total",
                "Endpoints disabled by delivery outcomes",
            ),
            attempt_seconds: histogram(
                "hookforge_outbound_attempt_seconds",
                "Duration of one outbound attempt",
            ),
            publish_to_delivery_seconds: histogram(
                "hookforge_outbound_publish_to_delivery_seconds",
                "From an event's commit to its successful delivery",
            ),
            pending,
            dispatched_events: counter(
                "hookforge_outbound_dispatched_events_total",
                "Deliverable events the dispatcher matched",
            ),
            index_lookups: counter(
                "hookforge_outbound_index_lookups_total",
                "Dispatcher index lookups",
            ),
            index_candidates: counter(
                "hookforge_outbound_index_candidates_total",
                "Endpoints returned by dispatcher index lookups",
            ),
            matched: counter(
                "hookforge_outbound_matched_total",
                "Deliveries endpoint actors recorded for dispatched events",
            ),
            filter_errors: counter(
                "hookforge_outbound_filter_errors_total",
                "Dispatched events recorded as filter_error (over budget or failed filters)",
            ),
        }
    }
}

/// Inbound webhook counters.
#[derive(Clone)]
pub struct InboundMetrics {
    /// Webhooks by source type and ingress result (`accepted`, `duplicate`, `rejected`).
    pub webhooks: IntCounterVec,
    /// Rule decisions by outcome.
    pub decisions: IntCounterVec,
    /// Conditions evaluated.
    pub conditions_evaluated: prometheus::IntCounter,
    /// Fired actions by type and status.
    pub actions: IntCounterVec,
    /// Webhooks refused at ingress (failed verification) by source type, and whether their
    /// rejection was journaled (`logged`) or only counted (over the per-rule rate).
    pub rejected: IntCounterVec,
}

impl InboundMetrics {
    fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registers once");
            c
        };
        let conditions_evaluated = prometheus::IntCounter::new(
            "hookforge_conditions_evaluated_total",
            "CEL conditions evaluated",
        )
        .expect("valid metric");
        registry
            .register(Box::new(conditions_evaluated.clone()))
            .expect("registers once");
        Self {
            webhooks: counter(
                "hookforge_webhooks_total",
                "Inbound webhooks by source type and result",
                &["source_type", "result"],
            ),
            decisions: counter(
                "hookforge_rule_decisions_total",
                "Rule decisions by outcome",
                &["outcome"],
            ),
            conditions_evaluated,
            actions: counter(
                "hookforge_actions_total",
                "Fired actions by type and status",
                &["action_type", "status"],
            ),
            rejected: counter(
                "hookforge_ingress_rejected_total",
                "Webhooks refused at ingress, by source type and whether the rejection was journaled",
                &["source_type", "logged"],
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the collectors.
    pub fn new() -> Self {
        let registry = Registry::new();
        let journal = JournalMetrics::new();
        journal
            .register(&registry)
            .expect("journal metrics register once");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "hookforge_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hookforge_http_request_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let actor_restarts = IntCounterVec::new(
            Opts::new(
                "hookforge_actor_restarts_total",
                "Supervised actor restarts by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_requests.clone()))
            .expect("registers once");
        registry
            .register(Box::new(http_seconds.clone()))
            .expect("registers once");
        registry
            .register(Box::new(actor_restarts.clone()))
            .expect("registers once");
        // Export zeros from the start, so a dashboard sees the series before the first restart.
        for kind in ["projector", "rule", "endpoint", "dispatcher"] {
            actor_restarts.with_label_values(&[kind]);
        }
        let parked = IntCounterVec::new(
            Opts::new(
                "hookforge_parked_total",
                "Records parked because a consumer could not process them, by consumer kind",
            ),
            &["consumer"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(parked.clone()))
            .expect("registers once");
        for kind in ["view", "rule", "endpoint", "dispatcher", "runner"] {
            parked.with_label_values(&[kind]);
        }
        let parked_now = IntGauge::new(
            "hookforge_parked_records",
            "Records parked now, awaiting `hookforge parked retry`",
        )
        .expect("valid metric");
        registry
            .register(Box::new(parked_now.clone()))
            .expect("registers once");
        let inbound = InboundMetrics::new(&registry);
        let outbound = OutboundMetrics::new(&registry);
        let retention = RetentionMetrics::new(&registry);
        let passivation = PassivationMetrics::new(&registry);
        Self {
            passivation,
            registry,
            journal,
            http_requests,
            http_seconds,
            actor_restarts,
            inbound,
            outbound,
            parked,
            parked_now,
            retention,
        }
    }

    /// The Prometheus text exposition of every registered collector.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
