//! The journal's vocabulary, borrowed from EventStoreDB clients: streams, revisions, positions.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A global, gap-free position in the journal, starting at 0.
pub type Position = u64;

/// A per-stream, gap-free revision, starting at 0.
pub type Revision = u64;

/// What the appender believes about the stream it appends to; a mismatch is a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// Append whatever the stream's state.
    Any,
    /// The stream must not exist yet (creation).
    NoStream,
    /// The stream must already hold at least one event.
    StreamExists,
    /// The stream's last revision must be exactly this one.
    Exact(Revision),
}

impl ExpectedRevision {
    /// Whether a stream whose last revision is `current` satisfies the expectation.
    pub fn admits(self, current: Option<Revision>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current.is_none(),
            Self::StreamExists => current.is_some(),
            Self::Exact(n) => current == Some(n),
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(n) => write!(f, "revision {n}"),
        }
    }
}

/// Who caused an event and under which request; carried by every event for audit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The principal: `token:<id>`, `admin` (bootstrap token), `system` or `webhook`.
    pub actor: String,
    /// Groups every event caused by one request or one decision.
    pub correlation_id: String,
}

impl Metadata {
    /// Metadata for events the system records on its own behalf.
    pub fn system(correlation_id: impl Into<String>) -> Self {
        Self {
            actor: "system".into(),
            correlation_id: correlation_id.into(),
        }
    }
}

/// An event to append: its type, schema version, metadata and encoded data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Dotted, past-tense name such as `organization.created`.
    pub event_type: String,
    /// Version of the data's schema; older versions are upcast when read.
    pub schema_version: u16,
    /// Actor and correlation id.
    pub metadata: Metadata,
    /// The encoded event body (postcard); JSON payloads inside stay raw bytes.
    pub data: Vec<u8>,
}

/// An event as stored: everything appended plus where and when it landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Global position.
    pub position: Position,
    /// The stream it belongs to.
    pub stream: String,
    /// Its revision within the stream.
    pub revision: Revision,
    /// Dotted event type.
    pub event_type: String,
    /// Schema version of `data`.
    pub schema_version: u16,
    /// Commit time in microseconds since the Unix epoch.
    pub recorded_at: i64,
    /// Actor and correlation id.
    pub metadata: Metadata,
    /// The encoded event body.
    pub data: Bytes,
    /// Whether retention compacted the record: `data` is then a cut-down version of the
    /// original (its payload removed), which the chain's digest no longer covers.
    pub compacted: bool,
}

impl RecordedEvent {
    /// The stream's category: the part of its id before the first `-` (`rule-7` → `rule`).
    pub fn category(&self) -> &str {
        category_of(&self.stream)
    }

    /// The commit time as a UTC timestamp.
    pub fn recorded_time(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_micros(self.recorded_at).unwrap_or_default()
    }
}

/// The category of a stream id: the part before the first `-`.
pub fn category_of(stream: &str) -> &str {
    stream
        .split_once('-')
        .map_or(stream, |(category, _)| category)
}

/// What a successful append reports once it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Position of the first appended event.
    pub first_position: Position,
    /// Position of the last appended event.
    pub last_position: Position,
    /// The stream's last revision after the append.
    pub last_revision: Revision,
}

/// Which events a subscription to the whole journal delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EventFilter {
    /// Every event.
    #[default]
    All,
    /// Events whose stream belongs to one of these categories.
    Categories(Vec<String>),
}

impl EventFilter {
    /// A filter for a single category such as `rule`.
    pub fn category(category: &str) -> Self {
        Self::Categories(vec![category.to_owned()])
    }

    /// Whether the filter lets events of `stream` through.
    pub fn admits(&self, stream: &str) -> bool {
        match self {
            Self::All => true,
            Self::Categories(list) => {
                let category = category_of(stream);
                list.iter().any(|c| c == category)
            }
        }
    }
}

/// Aggregate facts about a journal, as `hookforge journal stats` prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    /// Number of events.
    pub events: u64,
    /// Number of distinct streams.
    pub streams: u64,
    /// Bytes of segment files (their length).
    pub segment_bytes: u64,
    /// Bytes the segment files occupy on disk (compacted payloads are holes).
    pub segment_bytes_allocated: u64,
    /// Records whose payload was compacted out.
    pub compacted_records: u64,
    /// Payload bytes that have expired but are still in the segments (the next compaction
    /// frees them, unless they are in the active segment).
    pub reclaimable_bytes: u64,
    /// Bytes of the index (sled), when known.
    pub index_bytes: u64,
    /// Commit time of the first event (RFC 3339).
    pub first_recorded_at: Option<String>,
    /// Commit time of the last event (RFC 3339).
    pub last_recorded_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_revision_admits_only_matching_states() {
        assert!(ExpectedRevision::Any.admits(None));
        assert!(ExpectedRevision::Any.admits(Some(3)));
        assert!(ExpectedRevision::NoStream.admits(None));
        assert!(!ExpectedRevision::NoStream.admits(Some(0)));
        assert!(ExpectedRevision::StreamExists.admits(Some(0)));
        assert!(!ExpectedRevision::StreamExists.admits(None));
        assert!(ExpectedRevision::Exact(2).admits(Some(2)));
        assert!(!ExpectedRevision::Exact(2).admits(Some(1)));
        assert!(!ExpectedRevision::Exact(0).admits(None));
    }

    #[test]
    fn categories_are_the_prefix_before_the_first_dash() {
        assert_eq!(category_of("rule-7"), "rule");
        assert_eq!(category_of("endpoint-3-x"), "endpoint");
        assert_eq!(category_of("plain"), "plain");
        let filter = EventFilter::Categories(vec!["rule".into(), "job".into()]);
        assert!(filter.admits("rule-1"));
        assert!(filter.admits("job-9"));
        assert!(!filter.admits("rules-1"));
        assert!(!filter.admits("organization-1"));
        assert!(EventFilter::All.admits("anything"));
    }
}

/// A record a consumer could not process, set aside so that everything else goes on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Parked {
    /// Who could not process it: `view:event_logs`, `rule:7`, `endpoint:3`, `dispatcher`,
    /// `runner`.
    pub consumer: String,
    /// The record's position.
    pub position: Position,
    /// Why (a decode error, a panic message).
    pub reason: String,
    /// When it was parked (µs since the epoch).
    pub parked_at: i64,
}
