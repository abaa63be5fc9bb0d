//! The router's Prometheus metrics, served on `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels for per-action metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// Action name.
    pub action: String,
    /// `succeeded`, `retried` or `failed`.
    pub outcome: &'static str,
}

/// Labels for rejected input.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Why it was rejected.
    pub reason: &'static str,
}

/// Labels for per-rule metrics: a rule script's or a handler's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// The rule (file stem) or handler id.
    pub rule: String,
}

/// Every metric the router keeps.
pub struct Metrics {
    registry: Registry,
    /// Events accepted from any source.
    pub events_accepted: Counter,
    /// Events acknowledged as duplicates of events already accepted.
    pub events_duplicate: Counter,
    /// Inputs rejected by a source, by reason.
    pub events_rejected: Family<RejectLabels, Counter>,
    /// Rule evaluations that failed, by rule.
    pub rule_errors: Family<RuleLabels, Counter>,
    /// Times a rule or handler asked for actions, by rule (when `server.metrics_per_rule`).
    pub rule_fires: Family<RuleLabels, Counter>,
    /// Action attempts by action and outcome.
    pub action_attempts: Family<ActionLabels, Counter>,
    /// Latency of action attempts, seconds.
    pub action_latency: Histogram,
    /// Sweeps of the SORACOM watcher through the fleet, by outcome.
    pub watch_sweeps: Family<RejectLabels, Counter>,
    /// Events the SORACOM watcher produced.
    pub watch_events: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kairo");
        let events_accepted = Counter::default();
        let events_duplicate = Counter::default();
        let events_rejected = Family::<RejectLabels, Counter>::default();
        let rule_errors = Family::<RuleLabels, Counter>::default();
        let rule_fires = Family::<RuleLabels, Counter>::default();
        let action_attempts = Family::<ActionLabels, Counter>::default();
        let action_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let watch_sweeps = Family::<RejectLabels, Counter>::default();
        let watch_events = Counter::default();
        registry.register(
            "watch_sweeps",
            "Sweeps of the SORACOM watcher through the fleet, by outcome (reason: ok or error)",
            watch_sweeps.clone(),
        );
        registry.register(
            "watch_events",
            "Events the SORACOM watcher produced",
            watch_events.clone(),
        );
        registry.register(
            "events_accepted",
            "Events accepted from any source",
            events_accepted.clone(),
        );
        registry.register(
            "events_duplicate",
            "Events acknowledged as duplicates of events already accepted",
            events_duplicate.clone(),
        );
        registry.register(
            "events_rejected",
            "Inputs rejected by a source",
            events_rejected.clone(),
        );
        registry.register(
            "rule_errors",
            "Rule evaluations that failed",
            rule_errors.clone(),
        );
        registry.register(
            "rule_fires",
            "Times a rule script or handler asked for actions",
            rule_fires.clone(),
        );
        registry.register(
            "action_attempts",
            "Action attempts by action and outcome",
            action_attempts.clone(),
        );
        registry.register(
            "action_latency_seconds",
            "Latency of action attempts",
            action_latency.clone(),
        );
        Self {
            registry,
            events_accepted,
            events_duplicate,
            events_rejected,
            rule_errors,
            rule_fires,
            action_attempts,
            action_latency,
            watch_sweeps,
            watch_events,
        }
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
