//! The ingress's de-duplication index: per rule, each delivery id (and replay key: a digest of
//! what the signature covers) received within the rule's dedup window and the event log it
//! first created. A projection of the log (so it survives
//! restarts exactly), which the ingress also updates the moment its own append is durable.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::View;
use crate::codec::EventBody;
use crate::domain::Event;
use crate::domain::webhook::{WebhookMeta, WebhookReceived, WebhookRejected};
use crate::journal::{EventFilter, Position, RecordedEvent};

#[derive(Debug, Default, Serialize, Deserialize)]
struct RuleIndex {
    window_micros: i64,
    first: HashMap<String, (Position, i64)>,
    order: VecDeque<(i64, String)>,
}

impl RuleIndex {
    fn record(&mut self, guid: &str, position: Position, at: i64) {
        if self.window_micros == 0 {
            return;
        }
        if let Some((_, first_at)) = self.first.get(guid)
            && at - first_at < self.window_micros
        {
            return;
        }
        self.first.insert(guid.to_owned(), (position, at));
        self.order.push_back((at, guid.to_owned()));
        let horizon = at - self.window_micros;
        while self.order.front().is_some_and(|(t, _)| *t < horizon) {
            let (t, guid) = self.order.pop_front().expect("front exists");
            if self
                .first
                .get(&guid)
                .is_some_and(|(_, first_at)| *first_at == t)
            {
                self.first.remove(&guid);
            }
        }
    }
}

/// Delivery ids per rule within their dedup windows.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DedupView {
    rules: HashMap<u64, RuleIndex>,
}

impl DedupView {
    /// The event log first created by `guid` for `rule`, if that was less than the rule's dedup
    /// window before `now` (µs).
    pub fn original(&self, rule: u64, guid: &str, now: i64) -> Option<Position> {
        let index = self.rules.get(&rule)?;
        let (position, at) = index.first.get(guid)?;
        (now - at < index.window_micros).then_some(*position)
    }

    /// Records that `guid` created event log `position` at `at` (idempotent; the first wins).
    pub fn record(&mut self, rule: u64, guid: &str, position: Position, at: i64) {
        if let Some(index) = self.rules.get_mut(&rule) {
            index.record(guid, position, at);
        }
    }
}

impl View for DedupView {
    const NAME: &'static str = "ingress_dedup";

    fn filter() -> EventFilter {
        EventFilter::category("rule")
    }

    fn apply(&mut self, event: &RecordedEvent) {
        if event.event_type == WebhookRejected::TYPE {
            return;
        }
        if event.event_type == WebhookReceived::TYPE {
            if let Ok(e) = WebhookMeta::decode(event) {
                for key in e.event_guid.iter().chain(&e.replay_key) {
                    self.record(e.rule, key, event.position, event.recorded_at);
                }
            }
            return;
        }
        let Ok(Some(decoded)) = Event::decode(event) else {
            return;
        };
        match decoded {
            Event::RuleCreated(e) => {
                self.rules.entry(e.id).or_default().window_micros =
                    e.config.dedup_window_seconds as i64 * 1_000_000;
            }
            Event::RuleUpdated(e) => {
                self.rules.entry(e.id).or_default().window_micros =
                    e.config.dedup_window_seconds as i64 * 1_000_000;
            }
            Event::RuleDeleted(e) => {
                self.rules.remove(&e.id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_delivery_wins_within_the_window() {
        let mut view = DedupView::default();
        view.rules.entry(1).or_default().window_micros = 10;
        view.record(1, "g", 5, 100);
        view.record(1, "g", 9, 105);
        assert_eq!(view.original(1, "g", 106), Some(5));
        assert_eq!(view.original(1, "g", 111), None, "outside the window");
        view.record(1, "g", 12, 120);
        assert_eq!(view.original(1, "g", 121), Some(12));
        assert_eq!(view.original(2, "g", 121), None, "per rule");
        view.record(1, "other", 13, 200);
        assert!(
            !view.rules[&1].first.contains_key("g"),
            "expired entries are dropped"
        );
    }
}
