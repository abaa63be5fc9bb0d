//! Reading action parameters with errors that name the parameter.

use serde_json::Value;

use crate::ActionError;

/// The string parameter `key`, or an error naming it.
pub fn require_str<'a>(params: &'a Value, key: &str) -> Result<&'a str, String> {
    match params.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("parameter `{key}` must not be empty")),
        Some(other) => Err(format!("parameter `{key}` must be a string, got {other}")),
        None => Err(format!("missing parameter `{key}`")),
    }
}

/// The optional string parameter `key`.
pub fn optional_str<'a>(params: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("parameter `{key}` must be a string, got {other}")),
    }
}

/// Checks that `params` is an object holding only keys from `allowed`.
pub fn only_keys(params: &Value, allowed: &[&str]) -> Result<(), String> {
    let map = params
        .as_object()
        .ok_or_else(|| format!("parameters must be an object, got {params}"))?;
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(format!(
            "unknown parameter `{unknown}` (expected one of: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// Turns a validation message into a permanent [`ActionError`].
pub fn invalid(message: String) -> ActionError {
    ActionError::permanent(format!("invalid parameters: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_name_the_parameter() {
        let p = json!({"simId": "", "n": 1});
        assert!(require_str(&p, "simId").unwrap_err().contains("`simId`"));
        assert!(require_str(&p, "n").unwrap_err().contains("`n`"));
        assert!(
            require_str(&p, "groupId")
                .unwrap_err()
                .contains("missing parameter `groupId`")
        );
        assert_eq!(optional_str(&json!({}), "x").unwrap(), None);
        assert!(only_keys(&p, &["simId"]).unwrap_err().contains("`n`"));
    }
}
