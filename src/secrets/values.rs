//! Secrets inside configuration values: `extra_vars` members and environment variables whose
//! names say they are secrets (password, secret, token, key, credential... as AWX decides), and
//! every notification header value.
//!
//! They are sealed where they are stored (the journal never holds them in clear), shown as
//! `$encrypted$` in every response and audit entry, and opened only where they are used: the
//! job's environment and variables file, the controller launch, the notification request.
//! A sealed JSON value is `{"$sealed": "<base64>"}`; a sealed string is `$sealed:<base64>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::{MasterKey, SecretError};
use crate::codec::Sealed;

/// How a secret is shown in responses, audit entries and logs.
pub const MASK: &str = "$encrypted$";

const SEALED_KEY: &str = "$sealed";
const SEALED_PREFIX: &str = "$sealed:";
/// What sealed values are bound to: they open only as configuration secrets.
const FIELD: &str = "hookforge/configuration-secret";

/// Whether a variable, member or header named `name` holds a secret: one of its words (split at
/// `_`, `-`, `.` and lower-to-upper case changes) is a secret word, or it contains one.
pub fn is_secret_name(name: &str) -> bool {
    const CONTAINED: [&str; 6] = [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "apikey",
    ];
    const WORDS: [&str; 5] = ["key", "pwd", "pass", "auth", "authorization"];
    let lower = name.to_ascii_lowercase();
    if CONTAINED.iter().any(|c| lower.contains(c)) || lower.contains("private_key") {
        return true;
    }
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.' | ' ') {
            words.push(std::mem::take(&mut current));
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    words.push(current);
    words.iter().any(|w| WORDS.contains(&w.as_str()))
}

impl MasterKey {
    /// `value` with the value of every secret-named member (at any depth) sealed. Idempotent:
    /// sealed values stay as they are.
    pub fn seal_secret_members(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) if !is_sealed(value) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = if is_secret_name(k) && !v.is_null() && !is_sealed(v) {
                            self.seal_value(v)
                        } else {
                            self.seal_secret_members(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.seal_secret_members(v)).collect())
            }
            other => other.clone(),
        }
    }

    /// [`MasterKey::seal_secret_members`] for a configuration change: a secret member sent back
    /// as [`MASK`] (a client saving what it read) keeps the value `current` has at that place.
    pub fn seal_secret_members_over(&self, value: &Value, current: Option<&Value>) -> Value {
        match value {
            Value::Object(map) if !is_sealed(value) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let before = current.and_then(|c| c.get(k));
                        let v = match (v.as_str(), before) {
                            (Some(MASK), Some(before)) if is_secret_name(k) => before.clone(),
                            _ if is_secret_name(k) && !v.is_null() && !is_sealed(v) => {
                                self.seal_value(v)
                            }
                            _ => self.seal_secret_members_over(v, before),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            other => self.seal_secret_members(other),
        }
    }

    /// Seals the values of `texts` (environment variables, headers) whose names name secrets,
    /// or all of them with `all`; a value sent back as [`MASK`] keeps its `current` value.
    pub fn seal_texts(
        &self,
        texts: &mut std::collections::BTreeMap<String, String>,
        current: Option<&std::collections::BTreeMap<String, String>>,
        all: bool,
    ) {
        for (name, value) in texts.iter_mut() {
            if !all && !is_secret_name(name) {
                continue;
            }
            match current.and_then(|c| c.get(name)) {
                Some(before) if value == MASK => value.clone_from(before),
                _ => *value = self.seal_text(value),
            }
        }
    }

    /// `value` with every sealed value opened, for the job or request that uses it.
    pub fn open_secret_members(&self, value: &Value) -> Result<Value, SecretError> {
        if let Some(sealed) = sealed_of(value) {
            let bytes = self.open(FIELD, &sealed)?;
            return serde_json::from_slice(&bytes).map_err(|_| SecretError::Unseal);
        }
        Ok(match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.open_secret_members(v)?)))
                    .collect::<Result<Map<_, _>, SecretError>>()?,
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.open_secret_members(v))
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }

    fn seal_value(&self, value: &Value) -> Value {
        let bytes = serde_json::to_vec(value).expect("JSON values serialize");
        let sealed = self.seal(FIELD, &bytes);
        let mut map = Map::new();
        map.insert(SEALED_KEY.into(), Value::String(BASE64.encode(sealed.0)));
        Value::Object(map)
    }

    /// `text` sealed as `$sealed:<base64>` (unchanged if it already is).
    pub fn seal_text(&self, text: &str) -> String {
        if text.starts_with(SEALED_PREFIX) {
            return text.to_owned();
        }
        let sealed = self.seal(FIELD, text.as_bytes());
        format!("{SEALED_PREFIX}{}", BASE64.encode(sealed.0))
    }

    /// The clear text of a value [`MasterKey::seal_text`] made (other text is returned as is).
    pub fn open_text(&self, text: &str) -> Result<String, SecretError> {
        match text.strip_prefix(SEALED_PREFIX) {
            None => Ok(text.to_owned()),
            Some(encoded) => {
                let bytes = BASE64.decode(encoded).map_err(|_| SecretError::Unseal)?;
                String::from_utf8(self.open(FIELD, &Sealed(bytes))?)
                    .map_err(|_| SecretError::Unseal)
            }
        }
    }
}

fn is_sealed(value: &Value) -> bool {
    sealed_of(value).is_some()
}

fn sealed_of(value: &Value) -> Option<Sealed> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let encoded = map.get(SEALED_KEY)?.as_str()?;
    BASE64.decode(encoded).ok().map(Sealed)
}

/// `value` as responses show it: secret-named members and sealed values are [`MASK`].
pub fn mask_secret_members(value: &Value) -> Value {
    if is_sealed(value) {
        return Value::String(MASK.into());
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_name(k) && !v.is_null() {
                        Value::String(MASK.into())
                    } else {
                        mask_secret_members(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_secret_members).collect()),
        other => other.clone(),
    }
}

/// A string as responses show it: [`MASK`] if it is sealed.
pub fn mask_text(text: &str) -> &str {
    if text.starts_with(SEALED_PREFIX) {
        MASK
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> MasterKey {
        MasterKey::from_base64(&BASE64.encode([9u8; 32])).unwrap()
    }

    #[test]
    fn secret_names_follow_awx() {
        for name in [
            "password",
            "DEPLOY_PASSWORD",
            "db_passwd",
            "client_secret",
            "API_TOKEN",
            "apiKey",
            "ssh_key",
            "private_key",
            "aws_credentials",
            "key",
            "Authorization",
            "x-auth-token",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "user",
            "monkey",
            "keyboard",
            "region",
            "tokenizer_model_x",
            "HOME",
        ] {
            assert_eq!(is_secret_name(name), name.contains("token"), "{name}");
        }
    }

    #[test]
    fn secret_members_are_sealed_opened_and_masked_at_any_depth() {
        let key = key();
        let vars = json!({"db_password": "hunter2", "nested": {"API_TOKEN": "t0k", "list": [{"client_secret": {"a": 1}}]}, "user": "bob", "token_hint": null});
        let sealed = key.seal_secret_members(&vars);
        let text = sealed.to_string();
        assert!(!text.contains("hunter2") && !text.contains("t0k"), "{text}");
        assert_eq!(sealed["user"], "bob");
        assert_eq!(key.seal_secret_members(&sealed), sealed, "idempotent");
        assert_eq!(key.open_secret_members(&sealed).unwrap(), vars);
        let masked = mask_secret_members(&sealed);
        assert_eq!(masked["db_password"], MASK);
        assert_eq!(masked["nested"]["list"][0]["client_secret"], MASK);
        assert_eq!(masked["token_hint"], Value::Null);
        // Values stored in clear by an older version are masked by name all the same.
        assert_eq!(mask_secret_members(&vars)["db_password"], MASK);
    }

    #[test]
    fn a_mask_sent_back_keeps_the_current_secret() {
        let key = key();
        let current = key.seal_secret_members(&json!({"password": "old", "user": "a"}));
        let next =
            key.seal_secret_members_over(&json!({"password": MASK, "user": "b"}), Some(&current));
        assert_eq!(next["password"], current["password"]);
        assert_eq!(next["user"], "b");
        let mut env = std::collections::BTreeMap::from([
            ("DB_PASSWORD".to_owned(), "s3".to_owned()),
            ("MODE".to_owned(), "x".to_owned()),
        ]);
        key.seal_texts(&mut env, None, false);
        assert!(env["DB_PASSWORD"].starts_with("$sealed:"));
        assert_eq!(env["MODE"], "x");
        let before = env.clone();
        let mut patched =
            std::collections::BTreeMap::from([("DB_PASSWORD".to_owned(), MASK.to_owned())]);
        key.seal_texts(&mut patched, Some(&before), false);
        assert_eq!(patched["DB_PASSWORD"], before["DB_PASSWORD"]);
    }

    #[test]
    fn sealed_text_round_trips_and_masks() {
        let key = key();
        let sealed = key.seal_text("Bearer abc");
        assert!(sealed.starts_with("$sealed:") && !sealed.contains("abc"));
        assert_eq!(key.seal_text(&sealed), sealed);
        assert_eq!(key.open_text(&sealed).unwrap(), "Bearer abc");
        assert_eq!(key.open_text("plain").unwrap(), "plain");
        assert_eq!(mask_text(&sealed), MASK);
        assert_eq!(mask_text("plain"), "plain");
    }
}
