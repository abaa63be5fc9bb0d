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

impl Stats {
    /// Counts what `trace` says happened at `now_ms`.
    pub fn observe(&self, trace: &EventTrace, now_ms: i64) {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for rule in &trace.rules {
            let stats = rules.entry(rule.rule.clone()).or_default();
            match rule.outcome {
                RuleOutcome::Fired => {
                    stats.evaluations += 1;
                    stats.fires += 1;
                    stats.last_fired_at_ms = Some(now_ms);
                }
                RuleOutcome::NotMatched => stats.evaluations += 1,
                RuleOutcome::Suppressed => stats.suppressions += 1,
                RuleOutcome::Error => {
                    stats.evaluations += 1;
                    stats.errors += 1;
                    stats.last_error = rule.reason.clone();
                }
                RuleOutcome::Skipped => {}
            }
        }
        drop(rules);
        let mut handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        for handler in &trace.handlers {
            let stats = handlers.entry(handler.handler.clone()).or_default();
            match handler.outcome {
                HandlerOutcome::Fired => {
                    stats.evaluations += 1;
                    stats.fires += 1;
                    stats.last_fired_at_ms = Some(now_ms);
                }
                HandlerOutcome::NotMatched => stats.evaluations += 1,
                HandlerOutcome::Suppressed => stats.suppressions += 1,
                HandlerOutcome::NotTargeted => {}
            }
        }
    }

    /// The numbers of rule script `name`.
    pub fn rule(&self, name: &str) -> RuleStats {
        let rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        rules.get(name).cloned().unwrap_or_default()
    }

    /// The numbers of handler `id`.
    pub fn handler(&self, id: &str) -> RuleStats {
        let handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        handlers.get(id).cloned().unwrap_or_default()
    }
}
