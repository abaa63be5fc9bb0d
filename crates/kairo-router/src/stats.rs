//! Per-rule and per-handler numbers since the router started, gathered from
//! the traces: `GET /v1/rules` and the rule-labelled metrics.

use std::collections::HashMap;
use std::sync::Mutex;

use kairo_core::handler::HandlerOutcome;
use serde::Serialize;

use crate::trace::{EventTrace, RuleOutcome};

/// One rule's or handler's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleStats {
    /// Times its condition actually ran (not skipped, not suppressed).
    pub evaluations: u64,
    /// Times it asked for actions.
    pub fires: u64,
    /// Times it was held back.
    pub suppressions: u64,
    /// Times it failed.
    pub errors: u64,
    /// When it last fired, epoch milliseconds.
    pub last_fired_at_ms: Option<i64>,
    /// Its last error.
    pub last_error: Option<String>,
}

/// Numbers for every rule script and handler, by name.
#[derive(Debug, Default)]
pub struct Stats {
    rules: Mutex<HashMap<String, RuleStats>>,
    handlers: Mutex<HashMap<String, RuleStats>>,
}

/// What one trace entry adds to a rule's or handler's numbers.
enum Seen<'a> {
    Nothing,
    NotMatched,
    Fired,
    Suppressed,
    Failed(Option<&'a String>),
}

impl RuleStats {
    fn add(&mut self, seen: Seen<'_>, now_ms: i64) {
        match seen {
            Seen::Nothing => {}
            Seen::NotMatched => self.evaluations += 1,
            Seen::Fired => {
                self.evaluations += 1;
                self.fires += 1;
                self.last_fired_at_ms = Some(now_ms);
            }
            Seen::Suppressed => self.suppressions += 1,
            Seen::Failed(reason) => {
                self.evaluations += 1;
                self.errors += 1;
                self.last_error = reason.cloned();
            }
        }
    }
}

/// Adds `seen` to `name`'s numbers (the name is copied only the first time).
fn add(map: &mut HashMap<String, RuleStats>, name: &str, seen: Seen<'_>, now_ms: i64) {
    if matches!(seen, Seen::Nothing) {
        return;
    }
    match map.get_mut(name) {
        Some(stats) => stats.add(seen, now_ms),
        None => map.entry(name.to_string()).or_default().add(seen, now_ms),
    }
}

impl Stats {
    /// Counts what `trace` says happened at `now_ms`.
    pub fn observe(&self, trace: &EventTrace, now_ms: i64) {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for rule in &trace.rules {
            let seen = match rule.outcome {
                RuleOutcome::Fired => Seen::Fired,
                RuleOutcome::NotMatched => Seen::NotMatched,
                RuleOutcome::Suppressed => Seen::Suppressed,
                RuleOutcome::Error => Seen::Failed(rule.reason.as_ref()),
                RuleOutcome::Skipped => Seen::Nothing,
            };
            add(&mut rules, &rule.rule_id(), seen, now_ms);
        }
        drop(rules);
        let mut handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        for handler in &trace.handlers {
            let seen = match handler.outcome {
                HandlerOutcome::Fired => Seen::Fired,
                HandlerOutcome::NotMatched => Seen::NotMatched,
                HandlerOutcome::Suppressed => Seen::Suppressed,
                HandlerOutcome::NotTargeted => Seen::Nothing,
            };
            add(&mut handlers, &handler.handler_id(), seen, now_ms);
        }
    }

    /// The numbers of the rule script whose id is `name` (`NAME.shadow` in shadow).
    pub fn rule(&self, name: &str) -> RuleStats {
        let rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        rules.get(name).cloned().unwrap_or_default()
    }

    /// The numbers of handler `id` (`ID.shadow` in shadow).
    pub fn handler(&self, id: &str) -> RuleStats {
        let handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        handlers.get(id).cloned().unwrap_or_default()
    }
}
