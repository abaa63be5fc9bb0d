//! Normalizing incoming JSON into Kairo's [`Event`].
//!
//! Two shapes are accepted. An *envelope* carries a `payload` object next to
//! top-level identity fields (`id`, `eventType`, `imsi`, `simId`, `groupId`,
//! `operatorId`, `timestamp`). A *Flux-style* body has no `payload`: the whole
//! body is the payload, as with a SORACOM Flux incoming webhook. In both shapes
//! identity fields missing at the top level are also looked up in the payload.
//! Unknown fields are kept.

use serde_json::{Map, Value};

/// Why a JSON value could not become an [`Event`]; names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    /// Path of the offending field within the event, e.g. `payload` or `timestamp`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl EventError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A normalized event, ready for matching.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Idempotency key: the body's `id`, or a hash of its content.
    pub id: String,
    /// `eventType`, if given.
    pub event_type: Option<String>,
    /// `imsi`, if given.
    pub imsi: Option<String>,
    /// `simId`, if given.
    pub sim_id: Option<String>,
    /// `groupId`, if given.
    pub group_id: Option<String>,
    /// `operatorId`, if given.
    pub operator_id: Option<String>,
    /// `timestamp` in epoch milliseconds, if given.
    pub timestamp_ms: Option<i64>,
    body: Map<String, Value>,
    flux_style: bool,
}

const IDENTITY_FIELDS: [&str; 5] = ["eventType", "imsi", "simId", "groupId", "operatorId"];

impl Event {
    /// Normalizes one JSON value; it must be an object.
    pub fn from_value(value: Value) -> Result<Self, EventError> {
        match value {
            Value::Object(body) => Self::from_object(body),
            other => Err(EventError::new(
                "",
                format!("expected a JSON object, found {}", json_kind(&other)),
            )),
        }
    }

    /// Normalizes one JSON object.
    pub fn from_object(body: Map<String, Value>) -> Result<Self, EventError> {
        let flux_style = match body.get("payload") {
            None => true,
            Some(Value::Object(_)) => false,
            Some(other) => {
                return Err(EventError::new(
                    "payload",
                    format!("expected an object, found {}", json_kind(other)),
                ));
            }
        };
        let payload = if flux_style {
            None
        } else {
            body.get("payload").and_then(Value::as_object)
        };
        let mut identity: [Option<String>; 5] = Default::default();
        for (slot, field) in identity.iter_mut().zip(IDENTITY_FIELDS) {
            *slot = identity_field(&body, payload, field)?;
        }
        let [event_type, imsi, sim_id, group_id, operator_id] = identity;
        let timestamp_ms = match body.get("timestamp") {
            None | Some(Value::Null) => None,
            Some(value) => Some(parse_timestamp(value)?),
        };
        let id = match body.get("id") {
            None | Some(Value::Null) => content_id(&body),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(EventError::new("id", "expected a non-empty string"));
            }
            Some(value) => exact_text(value, "id", MAX_ID_CHARS)?,
        };
        Ok(Self {
            id,
            event_type,
            imsi,
            sim_id,
            group_id,
            operator_id,
            timestamp_ms,
            body,
            flux_style,
        })
    }

    /// Parses and normalizes a JSON document holding one event.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EventError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            EventError::new(
                "",
                format!(
                    "invalid JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        Self::from_value(value)
    }

    /// The body as received (without the normalized `id` when it was derived).
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// True when the body had no `payload` object and is itself the payload.
    pub fn is_flux_style(&self) -> bool {
        self.flux_style
    }

    /// The payload: the `payload` object, or the whole body when Flux-style.
    pub fn payload(&self) -> &Map<String, Value> {
        if self.flux_style {
            &self.body
        } else {
            self.body
                .get("payload")
                .and_then(Value::as_object)
                .expect("checked at construction")
        }
    }

    /// The event as JSON: the body with the normalized `id` filled in.
    pub fn to_value(&self) -> Value {
        let mut body = self.body.clone();
        body.insert("id".into(), Value::String(self.id.clone()));
        Value::Object(body)
    }

    /// Looks up a dotted path such as `payload.otaStatus` or `imsi` in [`Event::to_value`].
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        self.lookup_parts(path.split('.'))
    }

    /// [`Event::lookup`] for a path already split into its parts.
    pub fn lookup_parts<'p>(&self, parts: impl IntoIterator<Item = &'p str>) -> Option<&Value> {
        let mut parts = parts.into_iter().peekable();
        match *parts.peek()? {
            "payload" if self.flux_style => {
                parts.next();
                walk(&self.body, parts)
            }
            "id" => None,
            _ => walk(&self.body, parts),
        }
    }
}

/// Follows `parts` through nested objects starting at `map`.
pub fn walk<'a, 'p>(
    map: &'a Map<String, Value>,
    parts: impl IntoIterator<Item = &'p str>,
) -> Option<&'a Value> {
    let mut parts = parts.into_iter();
    let mut current = map.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn identity_field(
    body: &Map<String, Value>,
    payload: Option<&Map<String, Value>>,
    field: &str,
) -> Result<Option<String>, EventError> {
    let (value, path) = match body.get(field) {
        Some(v) if !v.is_null() => (v, field.to_string()),
        _ => match payload.and_then(|p| p.get(field)) {
            Some(v) if !v.is_null() => (v, format!("payload.{field}")),
            _ => return Ok(None),
        },
    };
    exact_text(value, &path, MAX_IDENTITY_CHARS).map(Some)
}

/// Longest identity field (`simId`, `imsi`, ...), in characters; SORACOM's are 15-36.
pub const MAX_IDENTITY_CHARS: usize = 128;
/// Longest event `id`, in characters.
pub const MAX_ID_CHARS: usize = 256;

/// A string, or an integer's exact digits, of at most `max` characters. A
/// number JSON can only give approximately (a 20-digit SIM id is beyond 64
/// bits and would become `8.9811e19`) is refused: it must be sent as a string.
fn exact_text(value: &Value, path: &str, max: usize) -> Result<String, EventError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => {
            return Err(EventError::new(
                path,
                format!("the number {n} is not an exact integer: send it as a string"),
            ));
        }
        other => {
            return Err(EventError::new(
                path,
                format!("expected a string, found {}", json_kind(other)),
            ));
        }
    };
    let chars = text.chars().count();
    if chars > max {
        return Err(EventError::new(
            path,
            format!("{chars} characters, longer than the limit of {max}"),
        ));
    }
    Ok(text)
}

fn parse_timestamp(value: &Value) -> Result<i64, EventError> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| EventError::new("timestamp", "expected integer epoch milliseconds")),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                EventError::new(
                    "timestamp",
                    format!("expected RFC 3339 or epoch milliseconds, got {s:?}: {e}"),
                )
            }),
        other => Err(EventError::new(
            "timestamp",
            format!(
                "expected RFC 3339 or epoch milliseconds, found {}",
                json_kind(other)
            ),
        )),
    }
}

/// A content-derived id: the same body always yields the same id.
fn content_id(body: &Map<String, Value>) -> String {
    // serde_json's Map is ordered by key, so serialization is canonical.
    let bytes = serde_json::to_vec(body).expect("a JSON map always serializes");
    let hash = blake3::hash(&bytes);
    format!("h-{}", &hash.to_hex()[..32])
}

/// Describes a JSON syntax error as `invalid JSON at line L column C: what`.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    format!(
        "invalid JSON at line {} column {}: {what}",
        error.line(),
        error.column()
    )
}

/// A human name for a JSON value's type, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_numbers_must_be_exact_and_identities_bounded() {
        let event = Event::from_slice(br#"{"simId": 8981100000000000001, "id": 7}"#).unwrap();
        assert_eq!(event.sim_id.as_deref(), Some("8981100000000000001"));
        assert_eq!(event.id, "7");
        let error = Event::from_slice(br#"{"simId": 89811000000000000123}"#).unwrap_err();
        assert_eq!(error.field, "simId");
        assert!(error.message.contains("send it as a string"), "{error}");
        let error = Event::from_slice(br#"{"payload": {"imsi": 4.4e14}}"#).unwrap_err();
        assert_eq!(error.field, "payload.imsi");
        let long = format!(r#"{{"simId": "{}"}}"#, "8".repeat(1_000_000));
        let error = Event::from_slice(long.as_bytes()).unwrap_err();
        assert_eq!(error.field, "simId");
        assert!(error.message.contains("limit of 128"), "{error}");
        let long = format!(r#"{{"id": "{}"}}"#, "e".repeat(300));
        assert_eq!(Event::from_slice(long.as_bytes()).unwrap_err().field, "id");
        assert_eq!(
            Event::from_slice(br#"{"id": ""}"#).unwrap_err().field,
            "id",
            "an empty id is refused"
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_fields_are_read() {
        let event = Event::from_value(json!({
            "id": "e1", "eventType": "SimSubscriptionStatus", "simId": "8981",
            "timestamp": "2025-05-01T00:03:12Z",
            "payload": {"otaStatus": "finished", "imsi": "4401"}
        }))
        .unwrap();
        assert_eq!(event.id, "e1");
        assert_eq!(event.sim_id.as_deref(), Some("8981"));
        assert_eq!(event.imsi.as_deref(), Some("4401"), "falls back to payload");
        assert_eq!(event.timestamp_ms, Some(1_746_057_792_000));
        assert!(!event.is_flux_style());
        assert_eq!(event.payload()["otaStatus"], "finished");
        assert_eq!(event.lookup("payload.otaStatus"), Some(&json!("finished")));
    }

    #[test]
    fn flux_body_is_its_own_payload() {
        let event = Event::from_value(json!({"simId": "8981", "otaStatus": "finished"})).unwrap();
        assert!(event.is_flux_style());
        assert_eq!(event.sim_id.as_deref(), Some("8981"));
        assert_eq!(event.payload()["otaStatus"], "finished");
        assert_eq!(event.lookup("payload.otaStatus"), Some(&json!("finished")));
        assert!(event.id.starts_with("h-"));
    }

    #[test]
    fn derived_id_depends_only_on_content() {
        let a = Event::from_value(json!({"a": 1, "b": 2})).unwrap();
        let b = Event::from_value(json!({"b": 2, "a": 1})).unwrap();
        let c = Event::from_value(json!({"a": 1, "b": 3})).unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn numeric_identity_fields_become_strings() {
        let event = Event::from_value(json!({"imsi": 440103000000000u64, "timestamp": 5})).unwrap();
        assert_eq!(event.imsi.as_deref(), Some("440103000000000"));
        assert_eq!(event.timestamp_ms, Some(5));
    }

    #[test]
    fn bad_fields_are_named() {
        let err = Event::from_value(json!({"payload": "x"})).unwrap_err();
        assert_eq!(err.field, "payload");
        let err = Event::from_value(json!({"simId": {"x": 1}})).unwrap_err();
        assert_eq!(err.field, "simId");
        let err = Event::from_value(json!({"payload": {"imsi": true}})).unwrap_err();
        assert_eq!(err.field, "payload.imsi");
        let err = Event::from_value(json!({"timestamp": "yesterday"})).unwrap_err();
        assert_eq!(err.field, "timestamp");
        let err = Event::from_value(json!([1])).unwrap_err();
        assert!(err.message.contains("an array"), "{err}");
    }

    #[test]
    fn invalid_json_says_where() {
        let err = Event::from_slice(b"{\n  \"a\": }").unwrap_err();
        assert!(err.message.contains("line 2 column"), "{err}");
    }

    #[test]
    fn to_value_fills_id() {
        let event = Event::from_value(json!({"x": 1})).unwrap();
        assert_eq!(event.to_value()["id"], json!(event.id));
    }
}
