//! `kairo explain`: a dry run's trace, for a person or as JSON.

use kairo_core::Event;
use kairo_router::trace::EventTrace;
use serde_json::json;

/// The trace of `event`: one JSON object, or a few lines of text with one
/// line per rule and handler.
pub fn render(event: &Event, trace: &EventTrace, as_json: bool) -> String {
    if as_json {
        return json!({"id": event.id, "event": event.to_value(), "trace": trace}).to_string();
    }
    kairo_router::trace::describe(event, trace)
}
