//! The request to perform one action, as a rule produced it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What a rule or handler in shadow has after its name or id, so it never
/// shares requests, state or numbers with its live twin.
pub const SHADOW_SUFFIX: &str = ".shadow";

/// `id`, followed by [`SHADOW_SUFFIX`] when `shadow`.
pub fn shadow_id(id: &str, shadow: bool) -> Cow<'_, str> {
    if shadow {
        Cow::Owned(format!("{id}{SHADOW_SUFFIX}"))
    } else {
        Cow::Borrowed(id)
    }
}

/// One action a rule asked for: which plugin action, with what parameters, and why.
///
/// `(event_id, rule, index)` identifies it uniquely, so retries and restarts can
/// recognise work already done (see [`ActionRequest::key`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    /// Name of the action plugin, e.g. `set_group` or `slack`.
    pub action: String,
    /// Parameters for the plugin, as JSON.
    pub params: serde_json::Value,
    /// Id of the event that triggered the rule.
    pub event_id: String,
    /// Name of the rule that asked for the action.
    pub rule: String,
    /// Position of this request among the requests the rule made for this event.
    pub index: u32,
    /// Earliest time to perform it, epoch milliseconds; `None` means now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// Asked for by a rule or handler in shadow: recorded, never performed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl ActionRequest {
    /// The stable idempotency key: `event_id/rule/index` (`event_id/rule.shadow/index`
    /// in shadow, so a shadow rule's requests never collide with its live twin's).
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.event_id, self.rule_id(), self.index)
    }

    /// The asking rule's id: its name, or `NAME.shadow` in shadow.
    pub fn rule_id(&self) -> Cow<'_, str> {
        shadow_id(&self.rule, self.shadow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_event_rule_index() {
        let request = ActionRequest {
            action: "slack".into(),
            params: serde_json::json!({"text": "hi"}),
            event_id: "ev1".into(),
            rule: "ota".into(),
            index: 2,
            not_before_ms: None,
            shadow: false,
        };
        assert_eq!(request.key(), "ev1/ota/2");
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["eventId"], "ev1");
        assert!(json.get("notBeforeMs").is_none());
    }
}
