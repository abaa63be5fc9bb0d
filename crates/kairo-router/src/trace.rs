//! Why each rule and handler did or did not act on an event.
//!
//! The pipeline records, per event, the rules the matching index let through
//! (fired, not matched, held back, failed) and every handler's decision. The
//! rules the index ruled out are not recorded (at 10,000 rules that would be
//! most of the work); [`expand`] explains them on request from the event and
//! the rule's guard.

use std::fmt::Write as _;

use kairo_core::handler::{HandlerOutcome, HandlerTrace, describe_time};
use kairo_core::{ActionRequest, Event};
use kairo_script::{Evaluation, RuleRun, RuleSet};
use serde::{Deserialize, Serialize};

/// What the pipeline decided for one event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventTrace {
    /// Rule scripts, in rule order.
    #[serde(default)]
    pub rules: Vec<RuleTrace>,
    /// SORACOM event handlers, in load order.
    #[serde(default)]
    pub handlers: Vec<HandlerTrace>,
}

impl EventTrace {
    /// The trace as JSON text, as the store keeps it.
    pub fn to_json(&self) -> kairo_store::TraceJson {
        match self.plain_rules_json() {
            Some(text) => kairo_store::TraceJson::from_json_text(text),
            None => kairo_store::TraceJson::of(self).expect("a trace always serializes"),
        }
    }

    /// The usual trace written directly, without the serializer (it is
    /// written for every event): no handlers, and rules that fired or did not
    /// match, whose names need no escaping. `None` for anything else.
    fn plain_rules_json(&self) -> Option<String> {
        if !self.handlers.is_empty() {
            return None;
        }
        if self.rules.is_empty() {
            return Some("{}".into());
        }
        let plain = |c: char| !matches!(c, '"' | '\\') && !c.is_control();
        let mut text = String::with_capacity(12 + self.rules.len() * 48);
        text.push_str(r#"{"rules":["#);
        for (i, rule) in self.rules.iter().enumerate() {
            let outcome = match rule.outcome {
                RuleOutcome::Fired => "fired",
                RuleOutcome::NotMatched => "not_matched",
                _ => return None,
            };
            if rule.reason.is_some() || !rule.requests.is_empty() || !rule.rule.chars().all(plain) {
                return None;
            }
            if i > 0 {
                text.push(',');
            }
            text.push_str(r#"{"rule":""#);
            text.push_str(&rule.rule);
            text.push_str(r#"","outcome":""#);
            text.push_str(outcome);
            text.push_str(r#""}"#);
        }
        text.push_str("]}");
        Some(text)
    }
}

/// One rule's outcome on one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleTrace {
    /// The rule's name (its file stem, without `.shadow`).
    pub rule: String,
    /// True for a rule in shadow: what it asked for was recorded, not performed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// What happened.
    pub outcome: RuleOutcome,
    /// Why, in words: the guard that ruled it out, the hold-back, the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The actions it asked for, when it fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<ActionRequest>,
}

impl RuleTrace {
    /// The rule's id: its name, or `NAME.shadow` in shadow.
    pub fn rule_id(&self) -> std::borrow::Cow<'_, str> {
        kairo_core::shadow_id(&self.rule, self.shadow)
    }
}

/// What happened to a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOutcome {
    /// It ran and asked for actions.
    Fired,
    /// It ran and asked for nothing.
    NotMatched,
    /// The matching index ruled it out: its guard does not hold for the event.
    Skipped,
    /// `reevaluate(...)` holds it back for this SIM until a later time.
    Suppressed,
    /// It failed while running.
    Error,
}

/// The trace of `evaluation` (of `event` against `rules`); `held_until`
/// tells, for a held-back rule, until when.
pub fn record(
    rules: &RuleSet,
    evaluation: &Evaluation,
    handlers: Vec<HandlerTrace>,
    held_until: impl Fn(&str) -> Option<i64>,
) -> EventTrace {
    let mut runs = evaluation.runs.clone();
    runs.sort_unstable_by_key(|(position, _)| *position);
    let rules = runs
        .into_iter()
        .filter_map(|(position, run)| {
            let rule = rules.rules().get(position)?;
            let (outcome, reason) = match run {
                RuleRun::Ran { requests: 0 } => (RuleOutcome::NotMatched, None),
                // The requests themselves are in the outbox and history (or
                // the dry run's list); `expand` puts them back when asked.
                RuleRun::Ran { .. } => (RuleOutcome::Fired, None),
                RuleRun::Failed => {
                    let error = evaluation.errors.iter().find(|e| e.rule == rule.id);
                    (RuleOutcome::Error, error.map(|e| e.message.clone()))
                }
                RuleRun::HeldBack => {
                    let until = held_until(&rule.id).map_or_else(|| "later".into(), describe_time);
                    let reason = format!("held back by reevaluate(...) until {until}");
                    (RuleOutcome::Suppressed, Some(reason))
                }
            };
            Some(RuleTrace {
                shadow: rule.shadow,
                ..trace(&rule.name, outcome, reason)
            })
        })
        .collect();
    EventTrace { rules, handlers }
}

fn trace(rule: &str, outcome: RuleOutcome, reason: Option<String>) -> RuleTrace {
    RuleTrace {
        rule: rule.to_string(),
        shadow: false,
        outcome,
        reason,
        requests: Vec::new(),
    }
}

/// `recorded` with every rule of `rules` it does not list added as
/// `skipped`, with the guard that ruled it out, in rule order, and each fired
/// rule given its requests from `requests` (the event's actions).
pub fn expand(
    rules: &RuleSet,
    event: &Event,
    recorded: &EventTrace,
    requests: &[ActionRequest],
) -> EventTrace {
    let with_requests = |found: &RuleTrace| {
        let mut found = found.clone();
        if found.outcome == RuleOutcome::Fired {
            found.requests = requests
                .iter()
                .filter(|r| r.rule == found.rule && r.shadow == found.shadow)
                .cloned()
                .collect();
            found.requests.sort_by_key(|r| r.index);
        }
        found
    };
    let mut out = Vec::with_capacity(rules.len());
    for (position, rule) in rules.rules().iter().enumerate() {
        let same = |t: &&RuleTrace| t.rule == rule.name && t.shadow == rule.shadow;
        if let Some(found) = recorded.rules.iter().find(same) {
            out.push(with_requests(found));
            continue;
        }
        let reason = rules.explain_skip(position, event).unwrap_or_else(|| {
            "not evaluated: the rule was loaded or changed after this event".into()
        });
        out.push(RuleTrace {
            shadow: rule.shadow,
            ..trace(&rule.name, RuleOutcome::Skipped, Some(reason))
        });
    }
    // Rules since removed keep their recorded outcome.
    out.extend(
        recorded
            .rules
            .iter()
            .filter(|t| rules.get(&t.rule_id()).is_none())
            .map(with_requests),
    );
    EventTrace {
        rules: out,
        handlers: recorded.handlers.clone(),
    }
}

/// `trace` in words: a line naming `event`, then one line per rule and handler.
pub fn describe(event: &Event, trace: &EventTrace) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outcome() -> impl Strategy<Value = RuleOutcome> {
        prop_oneof![
            Just(RuleOutcome::Fired),
            Just(RuleOutcome::NotMatched),
            Just(RuleOutcome::Suppressed),
            Just(RuleOutcome::Error),
        ]
    }

    proptest! {
        #[test]
        fn a_trace_written_directly_reads_back_as_the_same_trace(
            rules in proptest::collection::vec(
                ("[a-z\\-\"\\\\\u{1}\u{e9}\u{3042}]{1,12}", outcome(), proptest::option::of("[ -~]{0,8}")),
                0..5,
            ),
        ) {
            let trace = EventTrace {
                rules: rules
                    .into_iter()
                    .map(|(rule, outcome, reason)| RuleTrace { rule, shadow: false, outcome, reason, requests: Vec::new() })
                    .collect(),
                handlers: Vec::new(),
            };
            let json = trace.to_json();
            let back: EventTrace = serde_json::from_str(json.as_str()).unwrap();
            prop_assert_eq!(back, trace, "{}", json.as_str());
        }
    }
}
