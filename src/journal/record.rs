//! The on-disk record: a framed, checksummed, hash-chained encoding of one event.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload`.
//! Payload: `postcard(header) | postcard(data bytes) | hash: [u8; 32]`, where
//! `hash = sha256(previous hash | postcard(header))` and the header carries `sha256(data)`.
//! Chaining a digest of the data rather than the data itself keeps the chain verifiable when
//! compaction cuts a record's data down.
//!
//! A compacted frame sets [`COMPACTED`] in its length field and ends its payload with
//! `span: u32 LE`, the bytes the frame occupies (today always its own length; a reader skips
//! to the end of the span, so a later format may leave holes). The header and hash are the
//! original ones and the data is the cut-down version.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::types::{Metadata, NewEvent, Position, RecordedEvent, Revision};

/// Bytes before each payload: length and CRC32.
pub(crate) const FRAME_HEADER_LEN: usize = 8;

/// The largest payload a frame may carry; anything bigger is corruption, not data.
pub(crate) const MAX_PAYLOAD_LEN: usize = 64 * 1024 * 1024;

/// The length-field bit that marks a compacted frame.
pub(crate) const COMPACTED: u32 = 1 << 31;

/// Bytes of a compacted frame's span trailer.
const SPAN_LEN: usize = 4;

/// A SHA-256 chain link.
pub(crate) type Hash = [u8; 32];

/// The hash that precedes position 0.
pub(crate) const GENESIS_HASH: Hash = [0; 32];

#[derive(Debug, Serialize, Deserialize)]
struct Header<'a> {
    position: u64,
    revision: u64,
    recorded_at: i64,
    schema_version: u16,
    stream: &'a str,
    event_type: &'a str,
    actor: &'a str,
    correlation_id: &'a str,
    data_digest: Hash,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes end before the frame does (a torn write at the tail).
    #[error("incomplete frame")]
    Incomplete,
    /// The frame is complete but its checksum, length or encoding is wrong.
    #[error("corrupt frame: {0}")]
    Corrupt(String),
}

/// A decoded record, borrowing from the frame's bytes.
#[derive(Debug)]
pub(crate) struct RecordView<'a> {
    header: Header<'a>,
    header_bytes: &'a [u8],
    data: &'a [u8],
    hash: Hash,
    compacted: bool,
}

impl<'a> RecordView<'a> {
    pub(crate) fn position(&self) -> Position {
        self.header.position
    }

    pub(crate) fn revision(&self) -> Revision {
        self.header.revision
    }

    pub(crate) fn stream(&self) -> &'a str {
        self.header.stream
    }

    pub(crate) fn recorded_at(&self) -> i64 {
        self.header.recorded_at
    }

    pub(crate) fn hash(&self) -> Hash {
        self.hash
    }

    /// The hash this record must carry if `prev` is its predecessor's.
    pub(crate) fn expected_hash(&self, prev: &Hash) -> Hash {
        chain_hash(prev, self.header_bytes)
    }

    /// Whether compaction cut this record's data down (its digest is then the original's).
    pub(crate) fn compacted(&self) -> bool {
        self.compacted
    }

    /// Whether the data still matches the digest the chain covers.
    pub(crate) fn data_matches_digest(&self) -> bool {
        Sha256::digest(self.data).as_slice() == self.header.data_digest
    }

    /// Converts to an owned event; `owner` must be the buffer the view borrows from.
    pub(crate) fn to_event(&self, owner: &Bytes) -> RecordedEvent {
        RecordedEvent {
            position: self.header.position,
            stream: self.header.stream.to_owned(),
            revision: self.header.revision,
            event_type: self.header.event_type.to_owned(),
            schema_version: self.header.schema_version,
            recorded_at: self.header.recorded_at,
            metadata: Metadata {
                actor: self.header.actor.to_owned(),
                correlation_id: self.header.correlation_id.to_owned(),
            },
            data: owner.slice_ref(self.data),
            compacted: self.compacted,
        }
    }
}

fn chain_hash(prev: &Hash, header_bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(header_bytes);
    hasher.finalize().into()
}

/// Appends one framed record to `buf` and returns its chain hash.
pub(crate) fn encode_frame(
    buf: &mut Vec<u8>,
    prev: &Hash,
    position: Position,
    stream: &str,
    revision: Revision,
    recorded_at: i64,
    event: &NewEvent,
) -> Hash {
    let header = Header {
        position,
        revision,
        recorded_at,
        schema_version: event.schema_version,
        stream,
        event_type: &event.event_type,
        actor: &event.metadata.actor,
        correlation_id: &event.metadata.correlation_id,
        data_digest: Sha256::digest(&event.data).into(),
    };
    let frame_start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    let payload_start = buf.len();
    postcard::to_io(&header, &mut *buf).expect("encoding into a Vec cannot fail");
    let hash = chain_hash(prev, &buf[payload_start..]);
    postcard::to_io(serde_bytes::Bytes::new(&event.data), &mut *buf)
        .expect("encoding into a Vec cannot fail");
    buf.extend_from_slice(&hash);
    let payload = &buf[payload_start..];
    let len = u32::try_from(payload.len()).expect("payload length checked by the writer");
    let crc = crc32fast::hash(payload);
    buf[frame_start..frame_start + 4].copy_from_slice(&len.to_le_bytes());
    buf[frame_start + 4..payload_start].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// A frame's leading eight bytes, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Bytes of payload that follow.
    pub len: usize,
    /// CRC32 of the payload.
    pub crc: u32,
    /// Whether the payload ends with a span trailer (see the module docs).
    pub compacted: bool,
}

impl FrameHeader {
    /// The eight bytes that start a frame with this header.
    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let flag = if self.compacted { COMPACTED } else { 0 };
        let len = u32::try_from(self.len).expect("payload length checked") | flag;
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[0..4].copy_from_slice(&len.to_le_bytes());
        out[4..8].copy_from_slice(&self.crc.to_le_bytes());
        out
    }
}

/// Reads the frame header at the start of `bytes`.
pub(crate) fn frame_header(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Incomplete);
    }
    let raw = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let compacted = raw & COMPACTED != 0;
    let len = (raw & !COMPACTED) as usize;
    if len == 0 || len > MAX_PAYLOAD_LEN || (compacted && len <= SPAN_LEN) {
        return Err(FrameError::Corrupt(format!(
            "implausible payload length {len}"
        )));
    }
    Ok(FrameHeader {
        len,
        crc,
        compacted,
    })
}

/// The bytes a compacted frame occupies, from its payload's span trailer.
pub(crate) fn compacted_span(payload: &[u8]) -> usize {
    let at = payload.len().saturating_sub(SPAN_LEN);
    payload
        .get(at..)
        .and_then(|t| t.try_into().ok())
        .map_or(0, |t| u32::from_le_bytes(t) as usize)
}

/// The compacted frame of `view` with `data` instead of its own, if that is smaller than
/// `original` bytes (the frame it replaces).
pub(crate) fn compact_frame(view: &RecordView<'_>, data: &[u8], original: u32) -> Option<Vec<u8>> {
    let mut buf = vec![0; FRAME_HEADER_LEN];
    buf.extend_from_slice(view.header_bytes);
    postcard::to_io(serde_bytes::Bytes::new(data), &mut buf).ok()?;
    buf.extend_from_slice(&view.hash);
    let span = u32::try_from(buf.len() + SPAN_LEN).ok()?;
    if span >= original {
        return None;
    }
    buf.extend_from_slice(&span.to_le_bytes());
    let payload = &buf[FRAME_HEADER_LEN..];
    let header = FrameHeader {
        len: payload.len(),
        crc: crc32fast::hash(payload),
        compacted: true,
    };
    buf[..FRAME_HEADER_LEN].copy_from_slice(&header.to_bytes());
    Some(buf)
}

/// Checks a payload against its crc and decodes it.
pub(crate) fn decode_payload(payload: &[u8], crc: u32) -> Result<RecordView<'_>, FrameError> {
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Corrupt("checksum mismatch".into()));
    }
    let corrupt = |what: &str, e: postcard::Error| FrameError::Corrupt(format!("{what}: {e}"));
    let (header, rest) =
        postcard::take_from_bytes::<Header>(payload).map_err(|e| corrupt("header", e))?;
    let header_bytes = &payload[..payload.len() - rest.len()];
    let (data, rest) = postcard::take_from_bytes::<&[u8]>(rest).map_err(|e| corrupt("data", e))?;
    let compacted = rest.len() == 32 + SPAN_LEN;
    let hash: Hash = rest[..rest.len().min(32)].try_into().map_err(|_| {
        FrameError::Corrupt(format!("trailer of {} bytes, expected 32", rest.len()))
    })?;
    if rest.len() != 32 && !compacted {
        return Err(FrameError::Corrupt(format!(
            "trailer of {} bytes, expected 32",
            rest.len()
        )));
    }
    Ok(RecordView {
        header,
        header_bytes,
        data,
        hash,
        compacted,
    })
}

/// Splits one frame off the front of `bytes`: its payload, crc and total length (for a
/// compacted frame, its span).
pub(crate) fn split_frame(bytes: &[u8]) -> Result<(&[u8], u32, usize), FrameError> {
    let header = frame_header(bytes)?;
    let end = FRAME_HEADER_LEN + header.len;
    if bytes.len() < end {
        return Err(FrameError::Incomplete);
    }
    let payload = &bytes[FRAME_HEADER_LEN..end];
    let total = if header.compacted {
        compacted_span(payload)
    } else {
        end
    };
    if total < end {
        return Err(FrameError::Corrupt(format!(
            "compacted frame spans {total} bytes but holds {end}"
        )));
    }
    Ok((payload, header.crc, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &[u8]) -> NewEvent {
        NewEvent {
            event_type: "thing.happened".into(),
            schema_version: 2,
            metadata: Metadata {
                actor: "token:1".into(),
                correlation_id: "c-1".into(),
            },
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_frame_round_trips_and_chains() {
        let mut buf = Vec::new();
        let h0 = encode_frame(&mut buf, &GENESIS_HASH, 0, "org-1", 0, 42, &event(b"hello"));
        let first_len = buf.len();
        let h1 = encode_frame(&mut buf, &h0, 1, "org-1", 1, 43, &event(b"world"));

        let owner = Bytes::from(buf);
        let (payload, crc, len) = split_frame(&owner).unwrap();
        assert_eq!(len, first_len);
        let view = decode_payload(payload, crc).unwrap();
        assert_eq!(view.hash(), h0);
        assert_eq!(view.expected_hash(&GENESIS_HASH), h0);
        assert!(view.data_matches_digest());
        let recorded = view.to_event(&owner);
        assert_eq!(recorded.stream, "org-1");
        assert_eq!(recorded.event_type, "thing.happened");
        assert_eq!(recorded.schema_version, 2);
        assert_eq!(recorded.metadata.actor, "token:1");
        assert_eq!(&recorded.data[..], b"hello");

        let (payload, crc, _) = split_frame(&owner[first_len..]).unwrap();
        let second = decode_payload(payload, crc).unwrap();
        assert_eq!(second.expected_hash(&h0), h1);
        assert_ne!(second.expected_hash(&GENESIS_HASH), h1);
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &GENESIS_HASH, 0, "s-1", 0, 1, &event(b"payload"));
        assert_eq!(
            split_frame(&buf[..buf.len() - 1]).unwrap_err(),
            FrameError::Incomplete
        );
        assert_eq!(split_frame(&buf[..3]).unwrap_err(), FrameError::Incomplete);

        let mut flipped = buf.clone();
        let last = flipped.len() - 40;
        flipped[last] ^= 1;
        let (payload, crc, _) = split_frame(&flipped).unwrap();
        assert!(matches!(
            decode_payload(payload, crc),
            Err(FrameError::Corrupt(_))
        ));

        let zeros = vec![0u8; 64];
        assert!(matches!(split_frame(&zeros), Err(FrameError::Corrupt(_))));
    }
}
