//! Recorded events as JSON lines: what `GET /v1/events` and `kairo events
//! export` write and `kairo replay` reads. One line per event:
//! `{"receivedAt": "2026-03-31T10:00:00.000Z", "receivedAtMs": ..., "source": "webhook", "event": {...}}`.
//! Replay also reads lines holding a bare event, which then arrives at its
//! `timestamp` (or a second after the previous one).

use kairo_core::Event;
use kairo_store::StoredEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One recorded event, as a JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedLine {
    /// When Kairo received it, RFC 3339 UTC (for people; `receivedAtMs` rules).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub received_at: String,
    /// When Kairo received it, epoch milliseconds.
    pub received_at_ms: i64,
    /// Where it came from, e.g. `webhook` or `nats:soracom.events`.
    #[serde(default)]
    pub source: String,
    /// The event as accepted.
    pub event: Value,
}

impl RecordedLine {
    /// The line for a stored event.
    pub fn of(stored: &StoredEvent) -> Self {
        Self {
            received_at: rfc3339(stored.received_at_ms),
            received_at_ms: stored.received_at_ms,
            source: stored.source.clone(),
            event: stored.event.clone(),
        }
    }
}

/// `ms` as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// An RFC 3339 time as epoch milliseconds.
pub fn parse_time(text: &str) -> Result<i64, TimeError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|source| TimeError {
            text: text.to_string(),
            source,
        })
}

/// A time that is not RFC 3339.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 time such as 2026-03-01T00:00:00Z")]
pub struct TimeError {
    text: String,
    source: chrono::ParseError,
}

/// Why a line of an events file could not be read; names the line.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON.
    #[error("line {line}: not JSON")]
    Json {
        /// 1-based line number.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// JSON, but not an event.
    #[error("line {line}: {source}")]
    Event {
        /// 1-based line number.
        line: usize,
        /// The field at fault.
        source: kairo_core::EventError,
    },
}

/// Reads JSON lines of recorded (or bare) events into events with the time
/// each arrives; blank lines are skipped.
pub fn read_lines(text: &str) -> Result<Vec<(Event, i64)>, LineError> {
    let mut events = Vec::new();
    let mut previous: Option<i64> = None;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|source| LineError::Json {
            line: line_no,
            source,
        })?;
        let (body, at) = match serde_json::from_value::<RecordedLine>(value.clone()) {
            Ok(recorded) => (recorded.event, Some(recorded.received_at_ms)),
            Err(_) => (value, None),
        };
        let event = Event::from_value(body).map_err(|source| LineError::Event {
            line: line_no,
            source,
        })?;
        let at = at
            .or(event.timestamp_ms)
            .unwrap_or_else(|| previous.map_or(0, |p| p + 1_000));
        previous = Some(at);
        events.push((event, at));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recorded_and_bare_lines_read_back_with_their_times() {
        let stored = StoredEvent {
            event: json!({"id": "e1", "eventType": "X"}),
            received_at_ms: 1_772_323_200_123,
            source: "webhook".into(),
        };
        let line = serde_json::to_string(&RecordedLine::of(&stored)).unwrap();
        assert!(
            line.contains(r#""receivedAt":"2026-03-01T00:00:00.123Z""#),
            "{line}"
        );
        let text = format!("{line}\n\n{}\n", json!({"id": "e2"}));
        let events = read_lines(&text).unwrap();
        assert_eq!(events[0].0.id, "e1");
        assert_eq!(events[0].1, 1_772_323_200_123);
        assert_eq!(
            events[1].1, 1_772_323_201_123,
            "a bare event a second later"
        );
        let error = read_lines("{}\nnot json\n").unwrap_err().to_string();
        assert_eq!(error, "line 2: not JSON");
        assert_eq!(
            parse_time("2026-03-01T00:00:00Z").unwrap(),
            1_772_323_200_000
        );
        assert!(parse_time("yesterday").is_err());
    }
}
