//! `kairo replay`: recorded events through the router's pipeline on a
//! virtual clock that follows the events' times, giving the plan of actions
//! a router would have made; and the difference between two rule versions'
//! plans.

use std::collections::BTreeMap;

use kairo_core::{ActionRequest, Event};
use serde::Serialize;
use serde_json::Value;

use crate::dry_run::Replayer;
use crate::recorded::rfc3339;

/// Events evaluated together when the rules read no state and there are no
/// handlers (time then changes nothing, so order within a chunk is free).
const CHUNK: usize = 1_024;

/// One action of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Planned {
    /// The event that caused it.
    pub event_id: String,
    /// The rule (or `handler:ID`) that asked for it.
    pub rule: String,
    /// The action.
    pub action: String,
    /// Its parameters.
    pub params: Value,
    /// When it falls due, RFC 3339 UTC.
    pub due_at: String,
    /// Asked for by a rule or handler in shadow (recorded live, never performed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Its position among the rule's requests for the event.
    #[serde(skip)]
    pub index: u32,
}

impl Planned {
    fn of(request: ActionRequest, arrived_ms: i64) -> Self {
        Self {
            due_at: rfc3339(request.not_before_ms.unwrap_or(arrived_ms).max(arrived_ms)),
            event_id: request.event_id,
            rule: request.rule,
            action: request.action,
            params: request.params,
            index: request.index,
            shadow: request.shadow,
        }
    }

    /// What identifies it across rule versions: event, rule, shadow and position.
    fn key(&self) -> (String, String, bool, u32) {
        (
            self.event_id.clone(),
            self.rule.clone(),
            self.shadow,
            self.index,
        )
    }
}

/// What a replay gave.
#[derive(Debug, Default)]
pub struct ActionPlan {
    /// Every action, in event order, then rule order.
    pub actions: Vec<Planned>,
    /// Rule failures, one line each (file:line:col and the event).
    pub errors: Vec<String>,
    /// Events replayed.
    pub events: usize,
}

/// Replays `events` from empty state, `times[i]` being when `events[i]` arrives.
pub fn replay(replayer: &mut Replayer, events: &[Event], times: &[i64]) -> ActionPlan {
    replayer.restart();
    let mut plan = ActionPlan {
        events: events.len(),
        ..ActionPlan::default()
    };
    let timeless = replayer.handlers().handlers().is_empty() && !replayer.rules().uses_state();
    let mut record = |evaluated: crate::pipeline::Evaluated, at: i64| {
        plan.errors
            .extend(evaluated.errors.iter().map(ToString::to_string));
        let planned = evaluated.requests.into_iter().map(|r| Planned::of(r, at));
        plan.actions.extend(planned);
    };
    if timeless {
        for (chunk, at) in events.chunks(CHUNK).zip(times.chunks(CHUNK)) {
            let last = at.last().copied().unwrap_or_default();
            for (evaluated, at) in replayer.step_batch(chunk, last).into_iter().zip(at) {
                record(evaluated, *at);
            }
        }
    } else {
        for (event, at) in events.iter().zip(times) {
            record(replayer.step(event, *at), *at);
        }
    }
    plan
}

/// How an action differs between two rule versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only the new version asks for it.
    Added,
    /// Only the old version asks for it.
    Removed,
    /// Both do, with other parameters, action or due time.
    Changed,
}

/// One difference between two plans.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// Added, removed or changed.
    pub change: Change,
    /// The rule.
    pub rule: String,
    /// The event.
    pub event_id: String,
    /// The old version's action, if any.
    pub old: Option<Planned>,
    /// The new version's action, if any.
    pub new: Option<Planned>,
}

/// The differences from `old` to `new`, grouped by rule, then in event order.
pub fn diff(old: &[Planned], new: &[Planned]) -> Vec<Difference> {
    let mut old_by_key: BTreeMap<_, &Planned> = old.iter().map(|p| (p.key(), p)).collect();
    let mut differences = Vec::new();
    for planned in new {
        let difference = match old_by_key.remove(&planned.key()) {
            Some(was) if was == planned => continue,
            Some(was) => (Change::Changed, Some(was.clone())),
            None => (Change::Added, None),
        };
        differences.push(Difference {
            change: difference.0,
            rule: planned.rule.clone(),
            event_id: planned.event_id.clone(),
            old: difference.1,
            new: Some(planned.clone()),
        });
    }
    let removed = old.iter().filter(|p| old_by_key.contains_key(&p.key()));
    differences.extend(removed.map(|was| Difference {
        change: Change::Removed,
        rule: was.rule.clone(),
        event_id: was.event_id.clone(),
        old: Some(was.clone()),
        new: None,
    }));
    // Stable: within a rule, differences keep event order.
    let order: Vec<&str> = (new.iter().chain(old))
        .map(|p| p.event_id.as_str())
        .collect();
    let position = |id: &str| order.iter().position(|o| *o == id).unwrap_or(usize::MAX);
    differences.sort_by_cached_key(|d| (d.rule.clone(), position(&d.event_id)));
    differences
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn planned(event: &str, rule: &str, group: &str) -> Planned {
        Planned {
            event_id: event.into(),
            rule: rule.into(),
            action: "set_group".into(),
            params: json!({"simId": "s", "groupId": group}),
            due_at: "2026-03-01T00:00:00.000Z".into(),
            index: 0,
            shadow: false,
        }
    }

    #[test]
    fn a_changed_group_is_a_changed_action_and_the_rest_added_or_removed() {
        let old = [
            planned("e1", "ota", "g1"),
            planned("e2", "ota", "g1"),
            planned("e1", "gone", "x"),
        ];
        let new = [
            planned("e1", "ota", "g2"),
            planned("e2", "ota", "g1"),
            planned("e3", "fresh", "y"),
        ];
        let differences = diff(&old, &new);
        let changes: Vec<(Change, &str, &str)> = (differences.iter())
            .map(|d| (d.change, d.rule.as_str(), d.event_id.as_str()))
            .collect();
        assert_eq!(
            changes,
            [
                (Change::Added, "fresh", "e3"),
                (Change::Removed, "gone", "e1"),
                (Change::Changed, "ota", "e1"),
            ]
        );
        let changed = &differences[2];
        assert_eq!(changed.old.as_ref().unwrap().params["groupId"], "g1");
        assert_eq!(changed.new.as_ref().unwrap().params["groupId"], "g2");
    }
}
