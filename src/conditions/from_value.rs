//! An already parsed `serde_json::Value` → CEL value, converting only what a [`Need`] asks for.
//!
//! The same rules as [`super::from_bytes`]; strings are borrowed from the `Value`.

use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use serde_json::{Number, Value};

use super::needs::{ALL, Need};

/// Converts the parts of `value` that `need` asks for.
pub(crate) fn convert<'a>(value: &'a Value, need: &Need) -> Box<dyn Val + 'a> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => number(n),
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            let whole = need.whole_list();
            let items = items
                .iter()
                .enumerate()
                .map(|(i, item)| match (whole, need.element(i)) {
                    (true, _) => convert(item, &ALL),
                    (false, Some(element)) => convert(item, element),
                    (false, None) => Box::new(CelNull),
                })
                .collect::<Vec<_>>();
            Box::new(CelList::from(items))
        }
        Value::Object(members) => {
            let members = members
                .iter()
                .filter_map(|(key, value)| {
                    let need = need.member(key)?;
                    Some((CelMapKey::from(key.as_str()), convert(value, need)))
                })
                .collect::<HashMap<_, _>>();
            Box::new(CelMap::from(members))
        }
    }
}

/// JSON integers that fit `i64` are CEL `int`; larger ones `uint`; the rest `double`.
fn number(n: &Number) -> Box<dyn Val + 'static> {
    if let Some(i) = n.as_i64() {
        Box::new(CelInt::from(i))
    } else if let Some(u) = n.as_u64() {
        Box::new(CelUInt::from(u))
    } else {
        Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
    }
}
