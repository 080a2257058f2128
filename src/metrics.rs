//! Prometheus metrics: one registry, collectors grouped by subsystem.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
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
        Self {
            registry,
            journal,
            http_requests,
            http_seconds,
            actor_restarts,
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
