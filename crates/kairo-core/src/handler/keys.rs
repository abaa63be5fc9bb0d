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
