//! A CEL value rendered as a throttle key string.

use std::fmt::Write;

use cel::Value;
use cel::objects::Key;

use super::error::ConditionError;
use super::expression::type_name;

/// What a throttle key may evaluate to, for the error message.
const KEY_TYPES: &str = "a string, number, bool, null, timestamp, list or map";

/// Renders a throttle key: a string as itself, a scalar as its literal text, a timestamp in
/// RFC 3339, and a list or map (a composite key such as `[event.repo, event.ref]`) as compact
/// JSON with map keys sorted, so the same value always gives the same key.
pub(crate) fn throttle_key(value: &Value) -> Result<String, ConditionError> {
    match value {
        Value::String(s) => Ok(s.as_str().to_owned()),
        other => {
            let mut out = String::new();
            json(other, &mut out)?;
            Ok(out)
        }
    }
}

fn json(value: &Value, out: &mut String) -> Result<(), ConditionError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => write_display(out, b),
        Value::Int(i) => write_display(out, i),
        Value::UInt(u) => write_display(out, u),
        Value::Float(f) => write_display(out, f),
        Value::String(s) => quote(s, out),
        Value::Timestamp(t) => quote(&t.to_rfc3339(), out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(item, out)?;
            }
            out.push(']');
        }
        Value::Map(map) => {
            let mut members = map
                .map
                .iter()
                .map(|(k, v)| (key_text(k), v))
                .collect::<Vec<_>>();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (key, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quote(&key, out);
                out.push(':');
                json(member, out)?;
            }
            out.push('}');
        }
        other => {
            return Err(ConditionError::UnexpectedType {
                what: "throttle key",
                found: type_name(other),
                expected: KEY_TYPES,
            });
        }
    }
    Ok(())
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => s.as_str().to_owned(),
    }
}

fn write_display(out: &mut String, value: impl std::fmt::Display) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{value}");
}

fn quote(s: &str, out: &mut String) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn scalars_render_as_their_text() {
        assert_eq!(throttle_key(&Value::from("HighCPU")).unwrap(), "HighCPU");
        assert_eq!(throttle_key(&Value::Int(-7)).unwrap(), "-7");
        assert_eq!(throttle_key(&Value::UInt(7)).unwrap(), "7");
        assert_eq!(throttle_key(&Value::Float(1.5)).unwrap(), "1.5");
        assert_eq!(throttle_key(&Value::Bool(true)).unwrap(), "true");
        assert_eq!(throttle_key(&Value::Null).unwrap(), "null");
    }

    #[test]
    fn composites_render_as_canonical_json() {
        let list = Value::from(vec![Value::from("octo/repo"), Value::Int(3)]);
        assert_eq!(throttle_key(&list).unwrap(), r#"["octo/repo",3]"#);
        let map = Value::from(HashMap::from([("b", 2i64), ("a", 1i64)]));
        assert_eq!(throttle_key(&map).unwrap(), r#"{"a":1,"b":2}"#);
    }

    #[test]
    fn bytes_are_not_a_key() {
        let err = throttle_key(&Value::Bytes(vec![1u8].into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "throttle key evaluated to bytes, expected a string, number, bool, null, timestamp, \
             list or map"
        );
    }
}
