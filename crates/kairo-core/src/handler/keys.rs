//! The handler state's keys, defined once: traffic counters and suppression
//! times, as the handlers, the rule scripts' `traffic_mib(...)` and
//! `reevaluate(...)`, and pruning read and write them.

use super::timing::utc_day_and_month;

/// Prefix of every suppression time (a value in epoch milliseconds).
pub const SUPPRESSION_PREFIX: &str = "s/";

/// A traffic counter window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The UTC day of the time given.
    Day,
    /// The UTC month of the time given.
    Month,
    /// All time.
    All,
}

/// The traffic counter of `scope` (`imsi`, `sim`, `group`, `op`) `id` for
/// `window` around `at_ms`.
pub fn counter(scope: &str, id: &str, window: Window, at_ms: i64) -> String {
    let (day, month) = utc_day_and_month(at_ms);
    match window {
        Window::Day => format!("c/{scope}/{id}/d{day}"),
        Window::Month => format!("c/{scope}/{id}/m{month}"),
        Window::All => format!("c/{scope}/{id}/all"),
    }
}

/// When handler `handler_id` may fire again for `scope` (`sim:…`, `group:…`, …).
pub fn handler_suppression(handler_id: &str, scope: &str) -> String {
    format!("{SUPPRESSION_PREFIX}{handler_id}/{scope}")
}

/// When rule script `rule` may run again for `subject` (`sim:…`, `imsi:…` or `-`).
pub fn rule_suppression(rule: &str, subject: &str) -> String {
    format!("{SUPPRESSION_PREFIX}rule:{rule}/{subject}")
}

/// True when only events of one SIM (or one subscriber) change `key`: its
/// traffic counters, and the suppression times kept for it. Such keys move
/// with the SIM's partition in a cluster; the others (group and operator
/// counters, a target's `runOnceAmongTarget`, events naming no SIM) are
/// changed by events of many SIMs.
pub fn partition_scoped(key: &str) -> bool {
    if let Some(counter) = key.strip_prefix("c/") {
        return counter.starts_with("sim/") || counter.starts_with("imsi/");
    }
    match key.strip_prefix(SUPPRESSION_PREFIX) {
        Some(suppression) => suppression
            .rsplit_once('/')
            .is_some_and(|(_, scope)| scope.starts_with("sim:") || scope.starts_with("imsi:")),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sims_own_keys_are_partition_scoped_and_shared_ones_are_not() {
        let at = 1_736_899_200_000;
        assert!(partition_scoped(&counter("sim", "s1", Window::Month, at)));
        assert!(partition_scoped(&counter("imsi", "4401", Window::Day, at)));
        assert!(!partition_scoped(&counter("group", "g1", Window::Day, at)));
        assert!(!partition_scoped(&counter("op", "OP1", Window::Month, at)));
        assert!(partition_scoped(&handler_suppression("h1", "sim:s1")));
        assert!(!partition_scoped(&handler_suppression("h1", "group:g1")));
        assert!(!partition_scoped(&handler_suppression(
            "h1",
            "operator:OP1"
        )));
        assert!(partition_scoped(&rule_suppression("over", "imsi:4401")));
        assert!(!partition_scoped(&rule_suppression("over", "-")));
        // A handler id with a slash still names its scope last.
        assert!(partition_scoped(&handler_suppression("a/b", "sim:s1")));
    }
}
