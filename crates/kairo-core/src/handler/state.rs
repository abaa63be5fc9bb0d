//! Handler state: traffic counters in UTC windows and suppression times,
//! behind [`HandlerState`], and how long each entry matters ([`Retention`]).

use std::collections::HashMap;

use serde_json::Value;

use super::engine::event_types;
use super::model::{Handler, RuleType, Target};
use super::timing::utc_day_and_month;
use crate::Event;

/// Durable counters and suppression times, by key. Values are integers:
/// bytes for counters, epoch milliseconds for suppression.
pub trait HandlerState {
    /// The value at `key`.
    fn get(&self, key: &str) -> Option<i64>;
    /// Sets `key`.
    fn set(&mut self, key: String, value: i64);
}

/// [`HandlerState`] in a map, recording what changed (and what it was
/// before, so changes that could not be persisted can be undone).
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    /// Every value.
    pub values: HashMap<String, i64>,
    /// Keys set since the changes were last taken, settled or undone.
    pub changed: Vec<(String, i64)>,
    /// The value each of those keys had before, in the same order.
    previous: Vec<(String, Option<i64>)>,
}

impl MemoryState {
    /// A state holding `values`, nothing changed.
    pub fn of(values: HashMap<String, i64>) -> Self {
        Self {
            values,
            ..Self::default()
        }
    }

    /// The changes since the last call, to persist; they can no longer be undone.
    pub fn take_changes(&mut self) -> Vec<(String, i64)> {
        self.previous.clear();
        std::mem::take(&mut self.changed)
    }

    /// How many changes are pending.
    pub fn pending_len(&self) -> usize {
        self.changed.len()
    }

    /// The pending changes from the `start`th on.
    pub fn changes_from(&self, start: usize) -> Vec<(String, i64)> {
        self.changed[start.min(self.changed.len())..].to_vec()
    }

    /// Keeps the first `n` pending changes (they were persisted); the rest stay pending.
    pub fn settle_first(&mut self, n: usize) {
        let n = n.min(self.changed.len());
        self.changed.drain(..n);
        self.previous.drain(..n);
    }

    /// Puts back every value the pending changes replaced (they could not be persisted).
    pub fn undo(&mut self) {
        for (key, before) in self.previous.drain(..).rev() {
            match before {
                Some(value) => self.values.insert(key, value),
                None => self.values.remove(&key),
            };
        }
        self.changed.clear();
    }
}

impl HandlerState for MemoryState {
    fn get(&self, key: &str) -> Option<i64> {
        self.values.get(key).copied()
    }

    fn set(&mut self, key: String, value: i64) {
        let before = self.values.insert(key.clone(), value);
        self.previous.push((key.clone(), before));
        self.changed.push((key, value));
    }
}

/// How long handler state matters: daily counters until `day_before`
/// (`YYYYMMDD`), monthly counters until `month_before` (`YYYYMM`), suppression
/// times until they pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Daily counters of days before this are stale.
    pub day_before: String,
    /// Monthly counters of months before this are stale.
    pub month_before: String,
    /// Suppression times at or before this are stale.
    pub now_ms: i64,
}

impl Retention {
    /// Keeps daily counters 3 days past their day and monthly counters a year, as of `now_ms`.
    pub fn as_of(now_ms: i64) -> Self {
        const DAY_MS: i64 = 24 * 3_600_000;
        Self {
            day_before: utc_day_and_month(now_ms - 3 * DAY_MS).0,
            month_before: utc_day_and_month(now_ms - 366 * DAY_MS).1,
            now_ms,
        }
    }

    /// True when the state entry `key` = `value` can no longer affect anything.
    pub fn is_stale(&self, key: &str, value: i64) -> bool {
        if key.starts_with(super::keys::SUPPRESSION_PREFIX) {
            return value <= self.now_ms;
        }
        match key.rsplit('/').next() {
            Some(period) if period.len() == 9 && period.starts_with('d') => {
                period[1..] < *self.day_before
            }
            Some(period) if period.len() == 7 && period.starts_with('m') => {
                period[1..] < *self.month_before
            }
            _ => false,
        }
    }
}

impl MemoryState {
    /// Drops stale entries from memory (the store prunes its copy itself).
    pub fn prune(&mut self, retention: &Retention) {
        self.values
            .retain(|key, value| !retention.is_stale(key, *value));
    }
}

/// Adds a `TrafficUsage` event's bytes to the traffic counters (other events change nothing).
pub fn count(event: &Event, state: &mut dyn HandlerState, now_ms: i64) {
    if let Some(bytes) = traffic_bytes(event) {
        count_traffic(event, state, event.timestamp_ms.unwrap_or(now_ms), bytes);
    }
}

pub(super) fn traffic_bytes(event: &Event) -> Option<i64> {
    if event.event_type.as_deref() != Some(event_types::TRAFFIC) {
        return None;
    }
    let payload = event.payload();
    let number = |key: &str| payload.get(key).and_then(Value::as_i64);
    number("bytes").or_else(|| match (number("uploadBytes"), number("downloadBytes")) {
        (None, None) => None,
        (up, down) => Some(up.unwrap_or(0) + down.unwrap_or(0)),
    })
}

/// Adds `bytes` to the subscriber, SIM, group and operator counters for the UTC day, month and all time.
fn count_traffic(event: &Event, state: &mut dyn HandlerState, at: i64, bytes: i64) {
    for key in traffic_counters(event, at) {
        let value = state.get(&key).unwrap_or(0) + bytes;
        state.set(key, value);
    }
}

/// Every counter a traffic event at `at` adds to: its subscriber's and
/// SIM's for the UTC day, month and all time, its group's and operator's
/// for the day and month.
fn traffic_counters(event: &Event, at: i64) -> Vec<String> {
    use super::keys::{Window, counter};
    let mut keys = Vec::with_capacity(10);
    for (scope, id) in [("imsi", &event.imsi), ("sim", &event.sim_id)] {
        if let Some(id) = id {
            for window in [Window::Day, Window::Month, Window::All] {
                keys.push(counter(scope, id, window, at));
            }
        }
    }
    if let Some(group) = &event.group_id {
        keys.push(counter("group", group, Window::Day, at));
        keys.push(counter("group", group, Window::Month, at));
    }
    let operator = event.operator_id.as_deref().unwrap_or("-");
    keys.push(counter("op", operator, Window::Day, at));
    keys.push(counter("op", operator, Window::Month, at));
    keys
}

/// The counters many SIMs' events add to (group and operator) that a
/// traffic `event` adds to at `now_ms`, and its bytes; `None` for other events.
pub fn shared_traffic(event: &Event, now_ms: i64) -> Option<(i64, Vec<String>)> {
    let bytes = traffic_bytes(event)?;
    let at = event.timestamp_ms.unwrap_or(now_ms);
    let keys = traffic_counters(event, at)
        .into_iter()
        .filter(|key| !super::keys::partition_scoped(key))
        .collect();
    Some((bytes, keys))
}

/// The counter a traffic rule compares with its limit for `event` at `at`
/// (the UTC day or month of `at`); `None` for other rules, or when the event
/// lacks the id the counter is kept by.
pub(super) fn traffic_counter(handler: &Handler, event: &Event, at: i64) -> Option<String> {
    use super::keys::{Window, counter};
    use RuleType::*;
    let keyed = |scope: &str, id: &Option<String>, window| {
        id.as_ref().map(|id| counter(scope, id, window, at))
    };
    let aggregate = |window| match &handler.target {
        Target::Group(group) => Some(counter("group", group, window, at)),
        Target::Operator(_) => {
            let operator = event.operator_id.as_deref().unwrap_or("-");
            Some(counter("op", operator, window, at))
        }
        _ => None,
    };
    match handler.rule.kind {
        SubscriberDailyTraffic => keyed("imsi", &event.imsi, Window::Day),
        SubscriberMonthlyTraffic => keyed("imsi", &event.imsi, Window::Month),
        SubscriberCumulativeTraffic => keyed("imsi", &event.imsi, Window::All),
        SimDailyTotalTraffic => keyed("sim", &event.sim_id, Window::Day),
        SimMonthlyTotalTraffic => keyed("sim", &event.sim_id, Window::Month),
        SimCumulativeTotalTraffic => keyed("sim", &event.sim_id, Window::All),
        DailyTotalTraffic => aggregate(Window::Day),
        MonthlyTotalTraffic => aggregate(Window::Month),
        _ => None,
    }
}

#[cfg(test)]
mod undo_tests {
    use super::*;

    #[test]
    fn undo_puts_back_what_the_pending_changes_replaced() {
        let mut state = MemoryState::of(HashMap::from([("a".to_string(), 1)]));
        state.set("a".into(), 2);
        state.set("b".into(), 5);
        state.set("a".into(), 3);
        assert_eq!(state.pending_len(), 3);
        state.undo();
        assert_eq!(state.values, HashMap::from([("a".to_string(), 1)]));
        assert_eq!(state.pending_len(), 0);
        state.set("a".into(), 4);
        state.set("d".into(), 7);
        assert_eq!(state.changes_from(1), vec![("d".to_string(), 7)]);
        state.settle_first(1);
        assert_eq!(state.pending_len(), 1);
        state.undo();
        assert_eq!(state.get("a"), Some(4), "settled changes stay");
        assert_eq!(state.get("d"), None, "the unsettled one is undone");
        state.set("c".into(), 1);
        assert_eq!(state.take_changes(), vec![("c".to_string(), 1)]);
        state.undo();
        assert_eq!(state.get("c"), Some(1), "taken changes stay");
    }
}
