//! `kairo test`: the router's evaluation without a store, a network or any
//! action performed.

use std::path::Path;

use kairo_core::{ActionRequest, Clock, Event};
use kairo_script::RuleError;

use crate::config::KairoConfig;
use crate::error::RouterError;
use crate::pipeline::Pipeline;
use crate::plan::Plan;
use crate::trace::EventTrace;

/// The outcome of a dry run.
#[derive(Debug, Default)]
pub struct DryRun {
    /// What the rules and handlers would ask for, in event order, then rule order.
    pub requests: Vec<ActionRequest>,
    /// Rules that failed on an event.
    pub rule_errors: Vec<RuleError>,
    /// Scripts and handlers that did not load (left out of the run).
    pub script_errors: Vec<String>,
    /// Each event with why each rule and handler did or did not act.
    pub traces: Vec<(Event, EventTrace)>,
}

/// Evaluates `events` in order from empty state, each as if posted on its own
/// to a freshly started router at `clock`'s time, against the rules in
/// `rules_dir` and the handlers in `handlers_dir`. SIMs and groups are
/// learned from the events only; no store is opened and nothing is performed.
pub fn dry_run(
    config: &KairoConfig,
    rules_dir: &Path,
    handlers_dir: &Path,
    events: &[Event],
    clock: &dyn Clock,
) -> Result<DryRun, RouterError> {
    let plan = Plan::compile(config, rules_dir, handlers_dir, &[], reqwest::Client::new())?;
    let mut run = DryRun {
        script_errors: plan.left_out(),
        ..DryRun::default()
    };
    let (rules, handlers) = (plan.rules.snapshot(), plan.handlers.snapshot());
    let mut pipeline = Pipeline::default();
    for event in events {
        let now = clock.now_ms();
        for evaluated in pipeline.run(&rules, &handlers, std::slice::from_ref(event), now) {
            let trace = crate::trace::expand(&rules, event, &evaluated.trace, &evaluated.requests);
            run.traces.push((event.clone(), trace));
            run.requests.extend(evaluated.requests);
            run.rule_errors.extend(evaluated.errors);
        }
    }
    Ok(run)
}
