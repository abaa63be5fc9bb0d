//! `kairo explain`: a dry run's trace, for a person or as JSON.

use std::fmt::Write as _;

use kairo_core::Event;
use kairo_core::handler::{HandlerOutcome, describe_time};
use kairo_router::trace::{EventTrace, RuleOutcome};
use serde_json::json;

/// The trace of `event`: one JSON object, or a few lines of text with one
/// line per rule and handler.
pub fn render(event: &Event, trace: &EventTrace, as_json: bool) -> String {
    if as_json {
        return json!({"id": event.id, "event": event.to_value(), "trace": trace}).to_string();
    }
    let mut text = format!("event {}", event.id);
    let about: Vec<String> = [
        ("eventType", &event.event_type),
        ("simId", &event.sim_id),
        ("imsi", &event.imsi),
    ]
    .iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name} {v}")))
    .collect();
    if !about.is_empty() {
        let _ = write!(text, " ({})", about.join(", "));
    }
    for rule in &trace.rules {
        let said = match rule.outcome {
            RuleOutcome::Fired => {
                let actions: Vec<&str> = rule.requests.iter().map(|r| r.action.as_str()).collect();
                format!("fired: {}", actions.join(", "))
            }
            RuleOutcome::NotMatched => "ran, asked for nothing".into(),
            RuleOutcome::Skipped => format!("skipped: {}", reason(&rule.reason)),
            RuleOutcome::Suppressed => format!("suppressed: {}", reason(&rule.reason)),
            RuleOutcome::Error => format!("error: {}", reason(&rule.reason)),
        };
        let _ = write!(text, "\n  rule {:<26} {said}", rule.rule);
    }
    for handler in &trace.handlers {
        let said = match handler.outcome {
            HandlerOutcome::Fired => {
                let actions: Vec<String> = handler
                    .actions
                    .iter()
                    .map(|a| format!("{} at {}", a.action, describe_time(a.due_at_ms)))
                    .collect();
                let why = handler
                    .reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                format!("fired: {}{why}", actions.join(", "))
            }
            HandlerOutcome::NotMatched => format!("not matched: {}", reason(&handler.reason)),
            HandlerOutcome::Suppressed => format!("suppressed: {}", reason(&handler.reason)),
            HandlerOutcome::NotTargeted => format!("not targeted: {}", reason(&handler.reason)),
        };
        let _ = write!(text, "\n  handler {:<23} {said}", handler.handler);
    }
    text
}

fn reason(reason: &Option<String>) -> &str {
    reason.as_deref().unwrap_or("no reason recorded")
}
