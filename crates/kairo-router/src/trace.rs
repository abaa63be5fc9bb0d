//! Why each rule and handler did or did not act on an event.
//!
//! The pipeline records, per event, the rules the matching index let through
//! (fired, not matched, held back, failed) and every handler's decision. The
//! rules the index ruled out are not recorded (at 10,000 rules that would be
//! most of the work); [`expand`] explains them on request from the event and
//! the rule's guard.

use kairo_core::handler::{HandlerTrace, describe_time};
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
    pub fn to_raw(&self) -> Box<serde_json::value::RawValue> {
        if self.rules.is_empty() && self.handlers.is_empty() {
            // The usual case with many per-SIM rules: nothing ran.
            return serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON");
        }
        serde_json::value::to_raw_value(self).expect("a trace always serializes")
    }
}

/// One rule's outcome on one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleTrace {
    /// The rule's name (its file stem).
    pub rule: String,
    /// What happened.
    pub outcome: RuleOutcome,
    /// Why, in words: the guard that ruled it out, the hold-back, the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The actions it asked for, when it fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<ActionRequest>,
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
            let name = &rules.rules().get(position)?.name;
            Some(match run {
                RuleRun::Ran { requests: 0 } => trace(name, RuleOutcome::NotMatched, None),
                // The requests themselves are in the outbox and history (or
                // the dry run's list); `expand` puts them back when asked.
                RuleRun::Ran { .. } => trace(name, RuleOutcome::Fired, None),
                RuleRun::Failed => {
                    let message = evaluation
                        .errors
                        .iter()
                        .find(|e| e.rule == *name)
                        .map(|e| e.message.clone());
                    trace(name, RuleOutcome::Error, message)
                }
                RuleRun::HeldBack => {
                    let until = held_until(name).map_or_else(|| "later".into(), describe_time);
                    let reason = format!("held back by reevaluate(...) until {until}");
                    trace(name, RuleOutcome::Suppressed, Some(reason))
                }
            })
        })
        .collect();
    EventTrace { rules, handlers }
}

fn trace(rule: &str, outcome: RuleOutcome, reason: Option<String>) -> RuleTrace {
    RuleTrace {
        rule: rule.to_string(),
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
                .filter(|r| r.rule == found.rule)
                .cloned()
                .collect();
            found.requests.sort_by_key(|r| r.index);
        }
        found
    };
    let mut out = Vec::with_capacity(rules.len());
    for (position, rule) in rules.rules().iter().enumerate() {
        if let Some(found) = recorded.rules.iter().find(|t| t.rule == rule.name) {
            out.push(with_requests(found));
            continue;
        }
        let reason = rules.explain_skip(position, event).unwrap_or_else(|| {
            "not evaluated: the rule was loaded or changed after this event".into()
        });
        out.push(trace(&rule.name, RuleOutcome::Skipped, Some(reason)));
    }
    // Rules since removed keep their recorded outcome.
    out.extend(
        recorded
            .rules
            .iter()
            .filter(|t| rules.get(&t.rule).is_none())
            .map(with_requests),
    );
    EventTrace {
        rules: out,
        handlers: recorded.handlers.clone(),
    }
}
