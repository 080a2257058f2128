//! Request headers → the CEL map `headers` (lower-case name → value), keeping only the headers an
//! expression reads unless it reads the map as a whole.

use std::borrow::Cow;
use std::collections::HashMap;

use cel::common::types::{CelMap, CelMapKey, CelString};
use cel::common::value::Val;

use super::needs::Need;

/// Builds `headers` from `(name, value)` pairs; names may come in any case. A repeated name keeps
/// its last value.
pub(crate) fn convert<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    need: &Need,
) -> Box<dyn Val + 'a> {
    let whole = need.all || need.shape || need.each.is_some();
    let mut map = HashMap::new();
    for (name, value) in headers {
        if whole || need.fields.keys().any(|n| n.eq_ignore_ascii_case(name)) {
            map.insert(
                CelMapKey::String(CelString::from(lower_case(name))),
                Box::new(CelString::from(value)) as Box<dyn Val + 'a>,
            );
        }
    }
    Box::new(CelMap::from(map))
}

/// `name` in lower case, borrowed when it already is.
fn lower_case(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}
