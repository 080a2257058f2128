//! The versioned envelope for domain events: a stable type name, a schema version and a
//! postcard body. Records written under an older schema decode into their old struct and are
//! upcast before the domain sees them, so domain code never branches on versions.
//!
//! postcard rather than bincode: see `docs/decisions/0001-postcard-codec.md`.

mod protected;
mod raw;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::protected::Protected;
pub use self::raw::{Digest, RawJson, Sealed};
use crate::journal::{Metadata, NewEvent, RecordedEvent};

/// Why an event's bytes could not be turned into its domain type.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The record holds a different event type.
    #[error("expected event type {expected}, found {found}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        found: String,
    },
    /// No upcaster knows this schema version.
    #[error("{event_type} has no decoder for schema version {version}")]
    UnknownVersion {
        /// The event type.
        event_type: &'static str,
        /// The stored version.
        version: u16,
    },
    /// The bytes do not decode.
    #[error("{event_type} v{version} does not decode: {source}")]
    Malformed {
        /// The event type.
        event_type: &'static str,
        /// The stored version.
        version: u16,
        /// The decoder's complaint.
        source: postcard::Error,
    },
}

/// A domain event with a stable name and schema version.
///
/// Bump `VERSION` when the struct changes shape, keep the previous shape as its own struct,
/// and decode it in [`EventBody::upcast`].
pub trait EventBody: Serialize + DeserializeOwned {
    /// Dotted, past-tense type name, stored with every record (never change it).
    const TYPE: &'static str;
    /// Current schema version.
    const VERSION: u16 = 1;

    /// Decodes bytes written under an older `version`.
    fn upcast(version: u16, _data: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::UnknownVersion {
            event_type: Self::TYPE,
            version,
        })
    }
}

/// Decodes postcard bytes as `T`, naming the event in the error.
pub fn decode_as<T: DeserializeOwned>(
    event_type: &'static str,
    version: u16,
    data: &[u8],
) -> Result<T, CodecError> {
    postcard::from_bytes(data).map_err(|source| CodecError::Malformed {
        event_type,
        version,
        source,
    })
}

/// Encodes an event body for appending.
pub fn encode<E: EventBody>(event: &E, metadata: Metadata) -> NewEvent {
    NewEvent {
        event_type: E::TYPE.to_owned(),
        schema_version: E::VERSION,
        metadata,
        data: postcard::to_stdvec(event).expect("encoding into a Vec cannot fail"),
    }
}

/// Decodes a recorded event as `E`, upcasting older schema versions.
pub fn decode<E: EventBody>(record: &RecordedEvent) -> Result<E, CodecError> {
    if record.event_type != E::TYPE {
        return Err(CodecError::WrongType {
            expected: E::TYPE,
            found: record.event_type.clone(),
        });
    }
    if record.schema_version == E::VERSION {
        decode_as(E::TYPE, E::VERSION, &record.data)
    } else {
        E::upcast(record.schema_version, &record.data)
    }
}
