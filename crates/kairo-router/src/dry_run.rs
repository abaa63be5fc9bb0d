//! `kairo test`: the router's evaluation without a store, a network or any
//! action performed.

use std::path::Path;
use std::sync::Arc;

use kairo_core::handler::HandlerSet;
use kairo_core::{ActionRequest, Clock, Event};
use kairo_script::{RuleError, RuleSet};

use crate::config::KairoConfig;
use crate::error::RouterError;
use crate::pipeline::{Evaluated, Pipeline};
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
    let mut replayer = Replayer::new(&plan);
    for event in events {
        let evaluated = replayer.step(event, clock.now_ms());
        run.traces
            .push((event.clone(), replayer.explain(event, &evaluated)));
        run.requests.extend(evaluated.requests);
        run.rule_errors.extend(evaluated.errors);
    }
    Ok(run)
}

/// The router's evaluation of events one at a time on a clock the caller
/// sets, from empty state, performing nothing: the dry run, rule tests and
/// replay all step through it.
pub struct Replayer {
    rules: Arc<RuleSet>,
    handlers: Arc<HandlerSet>,
    pipeline: Pipeline,
}

impl Replayer {
    /// A replayer of `plan`'s rules and handlers as they are now.
    pub fn new(plan: &Plan) -> Self {
        Self::of(plan.rules.snapshot(), plan.handlers.snapshot())
    }

    /// A replayer of `rules` and `handlers`.
    pub fn of(rules: Arc<RuleSet>, handlers: Arc<HandlerSet>) -> Self {
        Self {
            rules,
            handlers,
            pipeline: Pipeline::default(),
        }
    }

    /// Forgets every counter, hold-back and SIM learned so far.
    pub fn restart(&mut self) {
        self.pipeline = Pipeline::default();
    }

    /// Evaluates `event` as if it arrived at `now_ms`.
    pub fn step(&mut self, event: &Event, now_ms: i64) -> Evaluated {
        let slice = std::slice::from_ref(event);
        let mut evaluated = self
            .pipeline
            .run(&self.rules, &self.handlers, slice, now_ms);
        evaluated.pop().unwrap_or_default()
    }

    /// Evaluates `events` together at `now_ms`, as a router evaluates a
    /// batch that arrived at once.
    pub fn step_batch(&mut self, events: &[Event], now_ms: i64) -> Vec<Evaluated> {
        self.pipeline
            .run(&self.rules, &self.handlers, events, now_ms)
    }

    /// `evaluated`'s trace with every rule the index ruled out explained and
    /// each fired rule given its requests.
    pub fn explain(&self, event: &Event, evaluated: &Evaluated) -> EventTrace {
        crate::trace::expand(&self.rules, event, &evaluated.trace, &evaluated.requests)
    }

    /// The rules replayed.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The handlers replayed.
    pub fn handlers(&self) -> &HandlerSet {
        &self.handlers
    }
}
