//! Compact in-memory forms of what the outbound folds keep per delivery. Hundreds of thousands
//! of pending retries must fit in little memory: ids hookforge generates take 16 bytes instead
//! of a heap string, event types are interned, inline events are boxed.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::delivery::{DeliverySource, EventRef, InlineEvent};
use crate::journal::{Position, Revision};

/// A `webhook-id` as held in memory: the 16 bytes of a generated `msg_<32 hex digits>` id, or
/// the text of any other form.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookId {
    /// `msg_` followed by these 16 bytes in lower-case hex.
    Msg([u8; 16]),
    /// Any other id, as is.
    Other(Box<str>),
}

impl WebhookId {
    /// The compact form of `text`.
    pub fn parse(text: &str) -> Self {
        let mut bytes = [0u8; 16];
        match text.strip_prefix("msg_") {
            Some(hex)
                if hex.len() == 32
                    && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                if hex::decode_to_slice(hex, &mut bytes).is_ok() {
                    return Self::Msg(bytes);
                }
                Self::Other(text.into())
            }
            _ => Self::Other(text.into()),
        }
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Msg(bytes) => write!(f, "msg_{}", hex::encode(bytes)),
            Self::Other(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Interned strings: each distinct value is stored once and referred to by a `u32`. Used for
/// event types and source streams (few distinct values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Box<str>>", into = "Vec<Box<str>>")]
pub struct Symbols {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl From<Vec<Box<str>>> for Symbols {
    fn from(names: Vec<Box<str>>) -> Self {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        Self { names, index }
    }
}

impl From<Symbols> for Vec<Box<str>> {
    fn from(symbols: Symbols) -> Self {
        symbols.names
    }
}

impl Symbols {
    /// The symbol of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.index.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct names");
        self.names.push(name.into());
        self.index.insert(name.into(), id);
        id
    }

    /// The name of symbol `id` (empty for an unknown symbol).
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }
}

/// Where a delivery's event is, compactly (see [`DeliverySource`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceRef {
    /// A journal event.
    Journal {
        /// Its global position.
        position: Position,
        /// Its stream (a symbol of the owner's [`Symbols`]).
        stream: u32,
        /// Its revision in the stream.
        revision: Revision,
    },
    /// An event carried in the delivery (test pings).
    Inline(Box<InlineEvent>),
}

impl SourceRef {
    /// The compact form of `source`, its stream interned in `symbols`.
    pub fn new(source: DeliverySource, symbols: &mut Symbols) -> Self {
        match source {
            DeliverySource::Journal(r) => Self::Journal {
                position: r.position,
                stream: symbols.intern(&r.stream),
                revision: r.revision,
            },
            DeliverySource::Inline(inline) => Self::Inline(Box::new(inline)),
        }
    }

    /// The full form, as events carry it; `symbols` is the table the stream was interned in.
    pub fn to_source(&self, symbols: &Symbols) -> DeliverySource {
        match self {
            Self::Journal {
                position,
                stream,
                revision,
            } => DeliverySource::Journal(EventRef {
                position: *position,
                stream: symbols.name(*stream).to_owned(),
                revision: *revision,
            }),
            Self::Inline(inline) => DeliverySource::Inline((**inline).clone()),
        }
    }

    /// The journal position of the source event, if it is one.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Journal { position, .. } => Some(*position),
            Self::Inline(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::new_webhook_id;

    #[test]
    fn generated_webhook_ids_are_16_bytes_and_print_back_identically() {
        let text = new_webhook_id();
        let id = WebhookId::parse(&text);
        assert!(matches!(id, WebhookId::Msg(_)));
        assert_eq!(id.to_string(), text);
        for other in [
            "msg_ABC",
            "msg_0123456789abcdef0123456789ABCDEF",
            "custom-id",
            "",
        ] {
            let id = WebhookId::parse(other);
            assert!(matches!(id, WebhookId::Other(_)), "{other}");
            assert_eq!(id.to_string(), other);
        }
        let back: WebhookId =
            postcard::from_bytes(&postcard::to_stdvec(&WebhookId::parse(&text)).unwrap()).unwrap();
        assert_eq!(back.to_string(), text);
    }

    #[test]
    fn symbols_intern_once_and_survive_a_round_trip() {
        let mut symbols = Symbols::default();
        let (a, b) = (symbols.intern("build.done"), symbols.intern("job.failed"));
        assert_eq!(symbols.intern("build.done"), a);
        assert_ne!(a, b);
        assert_eq!(
            (symbols.name(a), symbols.name(b), symbols.name(99)),
            ("build.done", "job.failed", "")
        );
        let back: Symbols = postcard::from_bytes(&postcard::to_stdvec(&symbols).unwrap()).unwrap();
        assert_eq!(back, symbols);
        let mut back = back;
        assert_eq!(back.intern("job.failed"), b);
    }

    #[test]
    fn sources_convert_both_ways() {
        let journal = DeliverySource::Journal(EventRef {
            position: 5,
            stream: "published-1".into(),
            revision: 2,
        });
        let mut symbols = Symbols::default();
        let compact = SourceRef::new(journal.clone(), &mut symbols);
        assert_eq!(
            (compact.to_source(&symbols), compact.position()),
            (journal, Some(5))
        );
        let inline = DeliverySource::Inline(InlineEvent {
            resource_type: "t".into(),
            resource_id: "1".into(),
            payload: crate::codec::RawJson(b"{}".to_vec()),
            occurred_at: 3,
        });
        let compact = SourceRef::new(inline.clone(), &mut symbols);
        assert_eq!(
            (compact.to_source(&symbols), compact.position()),
            (inline, None)
        );
    }
}
