//! Forwarding SORACOM's own event detection to Kairo: SORACOM event handlers
//! whose ExecuteWebRequestAction posts each kind of event to Kairo's webhook
//! in the shapes of docs/events.md. Created or updated by name (every name
//! starts with [`NAME_PREFIX`]); the account's other handlers are left alone.
//!
//! What SORACOM cannot forward this way: traffic and the month's charge (its
//! traffic and charge rules only fire past a limit, never per report).

use reqwest::Method;
use serde_json::{Value, json};

use crate::{SoracomClient, SoracomError};

/// The start of every forwarding handler's name.
pub const NAME_PREFIX: &str = "kairo-forward: ";

/// Which SIMs the forwarding handlers watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// Every SIM of the operator (the id is filled in from the session).
    Operator,
    /// The SIMs of one group.
    Group(String),
    /// One SIM.
    Sim(String),
}

/// A target that is not `operator`, `group:ID` or `sim:ID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected operator, group:ID or sim:ID")]
pub struct BadTarget(String);

impl std::str::FromStr for ForwardTarget {
    type Err = BadTarget;

    /// `operator`, `group:ID` or `sim:ID`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            None if text == "operator" => Ok(Self::Operator),
            Some(("group", id)) if !id.is_empty() => Ok(Self::Group(id.into())),
            Some(("sim", id)) if !id.is_empty() => Ok(Self::Sim(id.into())),
            _ => Err(BadTarget(text.to_string())),
        }
    }
}

/// One forwarded kind: the handler's name suffix, rule and the event body.
struct Kind {
    name: &'static str,
    rule: &'static str,
    properties: Value,
    body: String,
}

fn kinds() -> Vec<Kind> {
    let sim = r#""imsi":"${imsi}","simId":"${simId}","operatorId":"${operatorId}""#;
    let event = |kind: &str, payload: &str| {
        format!(r#"{{"eventType":"{kind}",{sim},"payload":{{{payload}}}}}"#)
    };
    let immediately = || json!({"inactiveTimeoutDateConst": "IMMEDIATELY"});
    let session = |status: &'static str| Kind {
        name: if status == "Created" {
            "SessionStatus Created"
        } else {
            "SessionStatus Deleted"
        },
        rule: "SubscriberSessionStatusRule",
        properties: json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "sessionStatus": status}),
        body: event("SessionStatus", &format!(r#""sessionStatus":"{status}""#)),
    };
    let ota = |status: &'static str| Kind {
        name: if status == "started" {
            "SubscriptionStatus started"
        } else {
            "SubscriptionStatus finished"
        },
        rule: "SimSubscriptionStatusRule",
        // IMMEDIATELY is not allowed for this rule: once a day per SIM.
        properties: json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "targetOtaStatus": status}),
        body: event(
            "SubscriptionStatus",
            r#""otaStatus":"${otaStatus}","subscription":"${subscription}","primaryImsi":"${primaryImsi}""#,
        ),
    };
    vec![
        Kind {
            name: "StatusChanged",
            rule: "SimStatusAttributeRule",
            properties: immediately(),
            body: event(
                "StatusChanged",
                r#""oldStatus":"${oldStatus}","newStatus":"${newStatus}""#,
            ),
        },
        Kind {
            name: "SpeedClassChanged",
            rule: "SimSpeedClassAttributeRule",
            properties: immediately(),
            body: event(
                "SpeedClassChanged",
                r#""oldSpeedClass":"${oldSpeedClass}","newSpeedClass":"${newSpeedClass}""#,
            ),
        },
        Kind {
            name: "Expired",
            rule: "SimExpiredRule",
            properties: immediately(),
            body: event("Expired", ""),
        },
        Kind {
            name: "ImeiMismatched",
            rule: "SimImeiMismatchedRule",
            properties: immediately(),
            body: event("ImeiMismatched", ""),
        },
        session("Created"),
        session("Deleted"),
        ota("started"),
        ota("finished"),
    ]
}

/// The forwarding handlers for `target` (`operator_id` fills an operator
/// target), posting to `url` with `Authorization: Bearer token` when given.
pub fn forward_handlers(
    url: &str,
    token: Option<&str>,
    target: &ForwardTarget,
    operator_id: &str,
) -> Vec<Value> {
    let (field, id) = match target {
        ForwardTarget::Operator => ("targetOperatorId", operator_id),
        ForwardTarget::Group(id) => ("targetGroupId", id.as_str()),
        ForwardTarget::Sim(id) => ("targetSimId", id.as_str()),
    };
    let mut headers = serde_json::Map::new();
    if let Some(token) = token {
        headers.insert(
            "Authorization".into(),
            Value::String(format!("Bearer {token}")),
        );
    }
    kinds()
        .into_iter()
        .map(|kind| {
            let mut handler = json!({
                "name": format!("{NAME_PREFIX}{}", kind.name),
                "description": "Forwards this event to Kairo (created by `kairo soracom forward`).",
                "status": "active",
                "ruleConfig": {"type": kind.rule, "properties": kind.properties},
                "actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {
                    "executionDateTimeConst": "IMMEDIATELY",
                    "url": url,
                    "httpMethod": "POST",
                    "contentType": "application/json",
                    // SORACOM reads headers as a JSON object in a string.
                    "headers": Value::Object(headers.clone()).to_string(),
                    "body": kind.body,
                }}],
            });
            handler[field] = Value::String(id.to_string());
            handler
        })
        .collect()
}

/// What applying a forwarding handler did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It did not exist and was created.
    Created,
    /// It existed with other settings and was replaced.
    Updated,
    /// It existed as wanted.
    Unchanged,
}

/// Creates or updates `handlers` in the account, matching by name; returns
/// each name with what was done.
pub async fn apply(
    client: &SoracomClient,
    handlers: &[Value],
) -> Result<Vec<(String, Applied)>, SoracomError> {
    let existing = client.call(Method::GET, "/v1/event_handlers", None).await?;
    let existing = existing.as_array().cloned().unwrap_or_default();
    let mut done = Vec::new();
    for wanted in handlers {
        let name = wanted["name"].as_str().unwrap_or_default().to_string();
        let found = existing.iter().find(|h| h["name"] == wanted["name"]);
        let applied = match found {
            None => {
                client
                    .call(Method::POST, "/v1/event_handlers", Some(wanted.clone()))
                    .await?;
                Applied::Created
            }
            Some(current) if same(current, wanted) => Applied::Unchanged,
            Some(current) => {
                let id = current["handlerId"].as_str().unwrap_or_default();
                let path = format!("/v1/event_handlers/{id}");
                client
                    .call(Method::PUT, &path, Some(wanted.clone()))
                    .await?;
                Applied::Updated
            }
        };
        done.push((name, applied));
    }
    Ok(done)
}

/// True when `current` already has every field `wanted` sets.
fn same(current: &Value, wanted: &Value) -> bool {
    let Some(wanted) = wanted.as_object() else {
        return false;
    };
    wanted
        .iter()
        .all(|(key, value)| current.get(key) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_every_handler_names_its_target() {
        assert_eq!("group:g1".parse(), Ok(ForwardTarget::Group("g1".into())));
        assert!("group:".parse::<ForwardTarget>().is_err());
        let handlers = forward_handlers(
            "https://k/v1/events",
            Some("t"),
            &ForwardTarget::Operator,
            "OP1",
        );
        assert_eq!(handlers.len(), 8);
        for handler in &handlers {
            assert_eq!(handler["targetOperatorId"], "OP1");
            let action = &handler["actionConfigList"][0]["properties"];
            assert_eq!(action["headers"], r#"{"Authorization":"Bearer t"}"#);
            assert!(handler["name"].as_str().unwrap().starts_with(NAME_PREFIX));
        }
    }
}
