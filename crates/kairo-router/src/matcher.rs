//! The matcher: evaluates accepted events on a dedicated thread and commits
//! what they asked for.

use std::sync::Arc;
use std::time::Duration;

use kairo_core::{Clock, Event};
use kairo_script::RuleStore;
use kairo_store::{Batch, HistoryEntry, PendingAction, TraceEntry};
use tokio::sync::mpsc;

use crate::dispatch::{Dispatcher, InFlight};
use crate::handlers::HandlerStore;
use crate::metrics::{Metrics, RuleLabels};
use crate::pipeline::Pipeline;
use crate::stats::Stats;
use crate::writer::StoreWriter;

/// How often the matcher drops stale handler state from memory.
const STATE_PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Events evaluated together and committed in one transaction, at most.
const EVALUATION_BATCH: usize = 256;

/// Evaluates events on a dedicated thread (rule evaluation is CPU work;
/// batches spread over all cores), runs the event handlers, and commits each
/// batch's action requests and handler state to the store, removing the
/// events from the inbox in the same transaction; then hands the actions to
/// the dispatcher.
pub(crate) struct Matcher {
    pub(crate) rules: Arc<RuleStore>,
    pub(crate) handlers: Arc<HandlerStore>,
    pub(crate) pipeline: Pipeline,
    pub(crate) last_prune: std::time::Instant,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) writer: StoreWriter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) stats: Arc<Stats>,
    /// Whether fires are counted per rule in the metrics.
    pub(crate) per_rule_metrics: bool,
}

impl Matcher {
    /// Counts, per rule and handler, the ones that fired (when enabled).
    fn count_fires(&self, trace: &crate::trace::EventTrace) {
        if !self.per_rule_metrics {
            return;
        }
        let fired_rules = trace
            .rules
            .iter()
            .filter(|r| r.outcome == crate::trace::RuleOutcome::Fired)
            .map(|r| r.rule_id());
        let fired_handlers = trace
            .handlers
            .iter()
            .filter(|h| h.outcome == kairo_core::handler::HandlerOutcome::Fired)
            .map(|h| h.handler_id());
        for rule in fired_rules.chain(fired_handlers) {
            self.metrics
                .rule_fires
                .get_or_create(&RuleLabels {
                    rule: rule.into_owned(),
                })
                .inc();
        }
    }

    pub(crate) fn spawn(
        mut self,
        mut events: mpsc::Receiver<Event>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_blocking(move || {
            while let Some(first) = events.blocking_recv() {
                let mut batch_events = vec![first];
                while batch_events.len() < EVALUATION_BATCH {
                    match events.try_recv() {
                        Ok(event) => batch_events.push(event),
                        Err(_) => break,
                    }
                }
                self.evaluate(&batch_events);
                self.in_flight.done(batch_events.len());
            }
        })
    }

    fn evaluate(&mut self, batch_events: &[Event]) {
        let rules = self.rules.snapshot();
        let handlers = self.handlers.snapshot();
        let now = self.clock.now_ms();
        let mut batch = Batch::default();
        let mut actions = Vec::new();
        let evaluations = self.pipeline.run(&rules, &handlers, batch_events, now);
        for (event, evaluation) in batch_events.iter().zip(evaluations) {
            batch.traces.push(TraceEntry {
                event_id: event.id.clone(),
                evaluated_at_ms: now,
                trace: evaluation.trace.to_json(),
            });
            if evaluation.requests.is_empty() {
                tracing::debug!(target: "kairo::rules", event_id = %event.id, "the event fired nothing");
            }
            self.stats.observe(&evaluation.trace, now);
            self.count_fires(&evaluation.trace);
            for error in &evaluation.errors {
                self.metrics
                    .rule_errors
                    .get_or_create(&RuleLabels {
                        rule: error.rule.clone(),
                    })
                    .inc();
                tracing::warn!(target: "kairo::rules", rule = %error.rule, event_id = %error.event_id, "{}", error.message);
            }
            // Shadow requests are recorded as such and never performed.
            let (shadow, live): (Vec<_>, Vec<_>) =
                evaluation.requests.into_iter().partition(|r| r.shadow);
            let shadow = shadow.into_iter().map(|r| HistoryEntry::shadow(r, now));
            batch.finished.extend(shadow);
            let pending: Vec<PendingAction> = live
                .into_iter()
                .map(|request| PendingAction::new(request, now))
                .collect();
            actions.extend(pending.iter().cloned());
            batch.evaluated.push((event.id.clone(), pending));
        }
        let mut state = self
            .pipeline
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner());
        batch.state = state.take_changes();
        if self.last_prune.elapsed() >= STATE_PRUNE_EVERY {
            self.last_prune = std::time::Instant::now();
            state.prune(&kairo_core::handler::Retention::as_of(now));
        }
        drop(state);
        // Retried until it lands: the evaluation (and the handler state it
        // advanced) is never dropped while the router runs.
        match self.writer.commit_until_done_blocking(batch) {
            Ok(_) => self.dispatcher.enqueue(actions),
            Err(error) => tracing::error!(
                error = %kairo_core::error_chain(&error), events = batch_events.len(),
                "could not record evaluations before shutdown; the events stay in the inbox and are evaluated again on the next start"
            ),
        }
    }
}
