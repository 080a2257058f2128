//! Byte fields that read as JSON: compact bytes in the journal, readable in replay output.
//!
//! Binary formats cannot carry `serde_json::Value`, so JSON payloads are kept as their exact
//! bytes (which also lets an auditor re-check a provider's signature years later). serde's
//! `is_human_readable` tells the two worlds apart.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Exact JSON bytes: `serde_bytes` in postcard, embedded JSON in human-readable formats.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RawJson(pub Vec<u8>);

impl RawJson {
    /// Serialises a value to JSON bytes.
    pub fn from_value<T: Serialize>(value: &T) -> Self {
        Self(serde_json::to_vec(value).expect("JSON serialisation of plain data cannot fail"))
    }

    /// Parses the bytes as JSON (`Null` if they are not valid JSON).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0).unwrap_or(serde_json::Value::Null)
    }

    /// The bytes as text, if they are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) if s.len() <= 200 => write!(f, "RawJson({s})"),
            _ => write!(f, "RawJson({} bytes)", self.0.len()),
        }
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.serialize_bytes(&self.0);
        }
        match self
            .as_str()
            .and_then(|s| serde_json::from_str::<&RawValue>(s).ok())
        {
            Some(raw) => raw.serialize(serializer),
            None => serializer.serialize_str(&String::from_utf8_lossy(&self.0)),
        }
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = Box::<RawValue>::deserialize(deserializer)?;
            Ok(Self(raw.get().as_bytes().to_vec()))
        } else {
            Ok(Self(
                serde_bytes::ByteBuf::deserialize(deserializer)?.into_vec(),
            ))
        }
    }
}

/// A secret encrypted under the master key: nonce followed by ciphertext.
///
/// Human-readable formats show it as `sealed:<base64>`, so replayed journals never reveal it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sealed(pub Vec<u8>);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&format!("sealed:{}", BASE64.encode(&self.0)))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let encoded = text
                .strip_prefix("sealed:")
                .ok_or_else(|| D::Error::custom("expected sealed:<base64>"))?;
            Ok(Self(BASE64.decode(encoded).map_err(D::Error::custom)?))
        } else {
            Ok(Self(
                serde_bytes::ByteBuf::deserialize(deserializer)?.into_vec(),
            ))
        }
    }
}

/// A SHA-256 digest: 32 bytes in the journal, hex in human-readable output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex::encode(self.0))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(self.0))
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let bytes = hex::decode(text).map_err(D::Error::custom)?;
            Ok(Self(
                bytes
                    .try_into()
                    .map_err(|_| D::Error::custom("expected 32 bytes"))?,
            ))
        } else {
            Ok(Self(<[u8; 32]>::deserialize(deserializer)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        payload: RawJson,
        secret: Sealed,
    }

    #[test]
    fn bytes_in_postcard_and_json_in_json() {
        let holder = Holder {
            payload: RawJson(br#"{"a": [1, 2]}"#.to_vec()),
            secret: Sealed(vec![1, 2, 3]),
        };
        let binary = postcard::to_stdvec(&holder).unwrap();
        assert_eq!(postcard::from_bytes::<Holder>(&binary).unwrap(), holder);
        let json = serde_json::to_string(&holder).unwrap();
        assert_eq!(json, r#"{"payload":{"a": [1, 2]},"secret":"sealed:AQID"}"#);
        assert_eq!(serde_json::from_str::<Holder>(&json).unwrap(), holder);
    }

    #[test]
    fn digests_are_hex_for_people_and_bytes_for_the_journal() {
        let digest = Digest([0xab; 32]);
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            format!("\"{}\"", "ab".repeat(32))
        );
        assert_eq!(postcard::to_stdvec(&digest).unwrap(), vec![0xab; 32]);
        assert_eq!(postcard::from_bytes::<Digest>(&[0xab; 32]).unwrap(), digest);
    }

    #[test]
    fn invalid_json_bytes_still_print() {
        let json = serde_json::to_string(&RawJson(b"not json".to_vec())).unwrap();
        assert_eq!(json, r#""not json""#);
    }
}
