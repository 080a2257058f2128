//! Raw JSON bytes → CEL value, in one pass, converting only what a [`Need`] asks for.
//!
//! Members nobody reads are skipped by the parser (`IgnoredAny`: scanned and validated, never
//! allocated); strings without escapes are borrowed from the input rather than copied.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::ConditionError;
use super::needs::Need;

/// Parses `bytes` as one JSON document and converts the parts `need` asks for.
pub(crate) fn convert<'a>(
    bytes: &'a [u8],
    need: &Need,
) -> Result<Box<dyn Val + 'a>, ConditionError> {
    // Validating UTF-8 up front (~0.5 µs for 7 KiB) makes skipped strings as strictly checked as
    // converted ones, and lets the parser borrow `&str` without re-checking.
    let text =
        std::str::from_utf8(bytes).map_err(|e| ConditionError::InvalidJson(e.to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Pruned(need)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| ConditionError::InvalidJson(e.to_string()))?;
    Ok(value)
}

/// The seed and visitor converting one JSON value under a need.
struct Pruned<'n>(&'n Need);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Box<dyn Val + 'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Box<dyn Val + 'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Box::new(CelBool::from(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Box::new(CelInt::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        // JSON has one number type: integers that fit are CEL `int`, so `event.count > 5` works.
        Ok(match i64::try_from(v) {
            Ok(i) => Box::new(CelInt::from(i)),
            Err(_) => Box::new(CelUInt::from(v)),
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Box::new(CelDouble::from(v)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Box::new(CelString::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Box::new(CelString::from(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Box::new(CelString::from(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Box::new(CelNull))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let need = self.0;
        let whole = need.whole_list();
        let mut items: Vec<Box<dyn Val + 'de>> = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let element = match (whole, need.element(items.len())) {
                (true, _) => seq.next_element_seed(Pruned(&super::needs::ALL))?,
                (false, Some(element)) => seq.next_element_seed(Pruned(element))?,
                // Nothing reads this element: keep its place so the list keeps its length.
                (false, None) => seq
                    .next_element::<IgnoredAny>()?
                    .map(|_| Box::new(CelNull) as Box<dyn Val + 'de>),
            };
            match element {
                Some(element) => items.push(element),
                None => break,
            }
        }
        Ok(Box::new(CelList::from(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = HashMap::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.0.member(&key) {
                Some(need) => {
                    let value = map.next_value_seed(Pruned(need))?;
                    members.insert(CelMapKey::String(CelString::from(key)), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Box::new(CelMap::from(members)))
    }
}

/// An object member's name, borrowed from the input unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}
