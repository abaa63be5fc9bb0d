//! Reading action parameters with errors that name the parameter.

use serde_json::Value;

use crate::ActionError;

/// Why an action's parameters or its configuration section were refused;
/// each kind names the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidParams {
    /// A required parameter is absent.
    #[error("missing parameter `{0}`")]
    Missing(String),
    /// A required string parameter is empty.
    #[error("parameter `{0}` must not be empty")]
    Empty(String),
    /// A parameter has the wrong JSON type.
    #[error("parameter `{key}` must be {expected}, got {got}")]
    WrongType {
        /// The parameter.
        key: String,
        /// What it must be, e.g. "a string".
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// A parameter the action does not take.
    #[error("unknown parameter `{key}` (expected one of: {allowed})")]
    Unknown {
        /// The parameter.
        key: String,
        /// The ones it takes, comma-separated.
        allowed: String,
    },
    /// The parameters are not a JSON object.
    #[error("parameters must be an object, got {0}")]
    NotAnObject(String),
    /// A parameter's value is refused.
    #[error("parameter `{key}`: {reason}")]
    Value {
        /// The parameter.
        key: String,
        /// Why, in words.
        reason: String,
    },
    /// A key of the plugin's `[plugins.<name>]` section is refused.
    #[error("`{key}`: {reason}")]
    Config {
        /// The key.
        key: String,
        /// Why, in words.
        reason: String,
    },
    /// A dynamic plugin refused them; its own words.
    #[error("{0}")]
    Plugin(String),
}

impl InvalidParams {
    /// `key`'s value is refused because of `reason`.
    pub fn value(key: &str, reason: impl Into<String>) -> Self {
        Self::Value {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The section's `key` is refused because of `reason`.
    pub fn config(key: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// `key` must be `expected` but is `got`.
    pub fn wrong_type(key: &str, expected: &'static str, got: &Value) -> Self {
        Self::WrongType {
            key: key.into(),
            expected,
            got: got.to_string(),
        }
    }
}

/// The string parameter `key`, or an error naming it.
pub fn require_str<'a>(params: &'a Value, key: &str) -> Result<&'a str, InvalidParams> {
    match params.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(InvalidParams::Empty(key.into())),
        Some(other) => Err(InvalidParams::wrong_type(key, "a string", other)),
        None => Err(InvalidParams::Missing(key.into())),
    }
}

/// The optional string parameter `key`.
pub fn optional_str<'a>(params: &'a Value, key: &str) -> Result<Option<&'a str>, InvalidParams> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(InvalidParams::wrong_type(key, "a string", other)),
    }
}

/// Checks that `params` is an object holding only keys from `allowed`.
pub fn only_keys(params: &Value, allowed: &[&str]) -> Result<(), InvalidParams> {
    let map = params
        .as_object()
        .ok_or_else(|| InvalidParams::NotAnObject(params.to_string()))?;
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(InvalidParams::Unknown {
            key: unknown.clone(),
            allowed: allowed.join(", "),
        }),
        None => Ok(()),
    }
}

/// Turns refused parameters into a permanent [`ActionError`].
pub fn invalid(error: InvalidParams) -> ActionError {
    ActionError::permanent(format!("invalid parameters: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_name_the_parameter() {
        let p = json!({"simId": "", "n": 1});
        let message = |e: InvalidParams| e.to_string();
        assert!(message(require_str(&p, "simId").unwrap_err()).contains("`simId`"));
        assert!(message(require_str(&p, "n").unwrap_err()).contains("`n`"));
        assert_eq!(
            require_str(&p, "groupId").unwrap_err(),
            InvalidParams::Missing("groupId".into())
        );
        assert_eq!(optional_str(&json!({}), "x").unwrap(), None);
        assert!(message(only_keys(&p, &["simId"]).unwrap_err()).contains("`n`"));
    }
}
