//! The matcher: evaluates events on a dedicated thread and commits them with
//! what they asked for.
//!
//! Events arriving from a source are evaluated before they are committed:
//! one transaction accepts them (their ids, their records with the trace)
//! and records their evaluation (actions, handler state), and only then is
//! the source answered. An event is thus never acknowledged before it is
//! durable, and never durable without its evaluation. When that commit
//! fails (a full disk, say), the handler state the evaluation advanced is
//! put back and the source is told the events were not accepted.
//!
//! Events accepted in an earlier run and found in the inbox at start are
//! evaluated the same way, their evaluation committed until it lands.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kairo_core::{Clock, Event};
use kairo_script::RuleStore;
use kairo_store::{Batch, HistoryEntry, PendingAction, Store, StoredEvent, TraceEntry};
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{Dispatcher, InFlight};
use crate::handlers::HandlerStore;
use crate::metrics::{Metrics, RuleLabels};
use crate::pipeline::{Evaluated, Pipeline};
use crate::stats::Stats;
use crate::trace::EventTrace;
use crate::writer::{CommitError, StoreWriter};

/// How often the matcher drops stale handler state from memory.
const STATE_PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Events evaluated together and committed in one transaction, at most.
const EVALUATION_BATCH: usize = 256;

/// An event from a source, not yet accepted.
pub(crate) struct Incoming {
    pub(crate) event: Event,
    pub(crate) received_at_ms: i64,
    pub(crate) source: String,
}

/// The answer to [`Work::Accept`]: how many of the events were duplicates.
pub(crate) type Accepted = Result<usize, CommitError>;

/// What the matcher is given to do.
pub(crate) enum Work {
    /// An event accepted in an earlier run, still in the inbox.
    Accepted(Event),
    /// Events to accept: evaluated, then committed with their evaluation.
    Accept(Vec<Incoming>, oneshot::Sender<Accepted>),
    /// Cluster mode: one partition's events in stream order, evaluated even
    /// when seen here before (the partition's journal says what was
    /// applied), committed, then answered with the partition's state changes.
    Partition(Vec<Incoming>, oneshot::Sender<PartitionEvaluated>),
    /// Cluster mode: handler state to put in place (a partition's journal
    /// values; `None` removes the key), answered once done.
    Restore(Vec<(String, Option<i64>)>, oneshot::Sender<()>),
}

/// The answer to [`Work::Partition`]: the state values only that
/// partition's SIMs change, as the evaluation set them, and the actions to
/// publish to the cluster.
pub(crate) type PartitionEvaluated =
    Result<kairo_ingest::cluster::PartitionEvaluation, CommitError>;

impl Work {
    fn len(&self) -> usize {
        match self {
            Work::Accepted(_) | Work::Restore(..) => 1,
            Work::Accept(events, _) | Work::Partition(events, _) => events.len(),
        }
    }
}

/// Evaluates events on a dedicated thread (rule evaluation is CPU work;
/// large batches spread over all cores), runs the event handlers, commits
/// each batch with its action requests and handler state, then hands the
/// actions to the dispatcher.
pub(crate) struct Matcher {
    /// Cluster mode: the state many instances share.
    pub(crate) shared: Option<crate::partition::Shared>,
    /// Cluster mode: local commits of partition chunks not yet landed.
    pub(crate) landing: std::collections::VecDeque<oneshot::Receiver<crate::writer::Reply>>,
    pub(crate) rules: Arc<RuleStore>,
    pub(crate) handlers: Arc<HandlerStore>,
    pub(crate) pipeline: Pipeline,
    pub(crate) last_prune: std::time::Instant,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) store: Arc<Store>,
    pub(crate) writer: StoreWriter,
    /// An event id seen within this many milliseconds is a duplicate.
    pub(crate) dedupe_window_ms: i64,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) stats: Arc<Stats>,
    /// Whether fires are counted per rule in the metrics.
    pub(crate) per_rule_metrics: bool,
}

/// The new events of `batches` (to evaluate), their stored form (to
/// accept), and how many of each request's events were duplicates.
pub(crate) fn split_fresh(
    batches: Vec<Vec<Incoming>>,
    fresh: Vec<Vec<bool>>,
) -> (Vec<Event>, Vec<StoredEvent>, Vec<usize>) {
    let mut events = Vec::new();
    let mut accept = Vec::new();
    let mut duplicates = vec![0; batches.len()];
    for ((incoming, fresh), duplicates) in batches.into_iter().zip(fresh).zip(&mut duplicates) {
        for (one, new) in incoming.into_iter().zip(fresh) {
            if !new {
                *duplicates += 1;
                continue;
            }
            accept.push(StoredEvent {
                event: one.event.to_value(),
                received_at_ms: one.received_at_ms,
                source: one.source,
            });
            events.push(one.event);
        }
    }
    (events, accept, duplicates)
}

/// A batch's evaluation, ready to commit: the live actions, and each event's
/// trace and rule errors for the numbers (counted once it is committed).
pub(crate) struct Evaluation {
    pub(crate) batch: Batch,
    pub(crate) actions: Vec<PendingAction>,
    pub(crate) outcomes: Vec<(EventTrace, Vec<kairo_script::RuleError>)>,
}

/// A batch of incoming events whose commit is under way: what to do once
/// its outcome is known. At most one is under way; the next batch is
/// evaluated meanwhile, and submitted once this one has landed.
struct InCommit {
    outcome: oneshot::Receiver<crate::writer::Reply>,
    replies: Vec<oneshot::Sender<Accepted>>,
    duplicates: Vec<usize>,
    actions: Vec<PendingAction>,
    outcomes: Vec<(EventTrace, Vec<kairo_script::RuleError>)>,
    /// Its handler state changes: the first ones pending.
    changes: usize,
    /// The ids it accepts, duplicates for the next batch.
    ids: HashSet<String>,
    /// Its events, for the in-flight count.
    total: usize,
    now: i64,
}

impl Matcher {
    pub(crate) fn spawn(mut self, mut work: mpsc::Receiver<Work>) -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_blocking(move || {
            let mut committing: Option<InCommit> = None;
            loop {
                let first = match committing.is_some() {
                    // A commit is under way: take more work if there is
                    // some, otherwise see the commit through.
                    true => match work.try_recv() {
                        Ok(next) => next,
                        Err(empty_or_closed) => {
                            self.finish(committing.take().expect("a commit under way"));
                            if empty_or_closed == mpsc::error::TryRecvError::Disconnected {
                                break;
                            }
                            continue;
                        }
                    },
                    false => match work.blocking_recv() {
                        Some(next) => next,
                        None => break,
                    },
                };
                let mut count = first.len();
                let mut items = vec![first];
                while count < EVALUATION_BATCH {
                    match work.try_recv() {
                        Ok(next) => {
                            count += next.len();
                            items.push(next);
                        }
                        Err(_) => break,
                    }
                }
                committing = self.run(items, committing);
            }
        })
    }

    /// Runs `items` in arrival order, each run of one kind as one batch;
    /// returns the commit still under way.
    fn run(&mut self, items: Vec<Work>, mut committing: Option<InCommit>) -> Option<InCommit> {
        let mut accepted = Vec::new();
        let mut incoming = Vec::new();
        for item in items {
            match item {
                Work::Accepted(event) => {
                    if !incoming.is_empty() {
                        committing = self.accept(std::mem::take(&mut incoming), committing);
                    }
                    accepted.push(event);
                }
                Work::Accept(events, reply) => {
                    if !accepted.is_empty() {
                        if let Some(under_way) = committing.take() {
                            self.finish(under_way);
                        }
                        self.evaluate_accepted(std::mem::take(&mut accepted));
                    }
                    incoming.push((events, reply));
                }
                cluster => {
                    committing = self.flush(&mut accepted, &mut incoming, committing);
                    if let Some(under_way) = committing.take() {
                        self.finish(under_way);
                    }
                    self.cluster(cluster);
                }
            }
        }
        self.flush(&mut accepted, &mut incoming, committing)
    }

    /// Runs what `run` gathered and not yet started; returns the commit still under way.
    fn flush(
        &mut self,
        accepted: &mut Vec<Event>,
        incoming: &mut Vec<(Vec<Incoming>, oneshot::Sender<Accepted>)>,
        mut committing: Option<InCommit>,
    ) -> Option<InCommit> {
        if !accepted.is_empty() {
            if let Some(under_way) = committing.take() {
                self.finish(under_way);
            }
            self.evaluate_accepted(std::mem::take(accepted));
        }
        if !incoming.is_empty() {
            committing = self.accept(std::mem::take(incoming), committing);
        }
        committing
    }

    /// Evaluates the new events of `requests` while `previous` commits, then,
    /// once it has landed, submits them with their evaluation in one commit;
    /// returns that commit. Duplicates are answered, not evaluated. When
    /// `previous` fails, both batches are refused and their state undone.
    fn accept(
        &mut self,
        requests: Vec<(Vec<Incoming>, oneshot::Sender<Accepted>)>,
        previous: Option<InCommit>,
    ) -> Option<InCommit> {
        let (batches, replies): (Vec<_>, Vec<_>) = requests.into_iter().unzip();
        let total: usize = batches.iter().map(Vec::len).sum();
        let empty = HashSet::new();
        let skip = previous.as_ref().map_or(&empty, |p| &p.ids);
        let fresh = match self.fresh(&batches, skip) {
            Ok(fresh) => fresh,
            Err(error) => {
                self.refuse(replies, total, &error);
                return previous;
            }
        };
        let (events, accept, duplicates) = split_fresh(batches, fresh);
        let ids = events.iter().map(|e| e.id.clone()).collect();
        let now = self.clock.now_ms();
        let start = self.state().pending_len();
        let mut evaluation = self.evaluate(&events, now);
        evaluation.batch.accept = accept;
        evaluation.batch.state = self.state().changes_from(start);
        let changes = self.state().pending_len() - start;
        if let Some(previous) = previous
            && let Err(error) = self.land(previous)
        {
            // This batch was evaluated on top of the one that failed.
            self.state().undo();
            self.refuse(replies, total, &error);
            return None;
        }
        match self.writer.submit(evaluation.batch) {
            Ok(outcome) => Some(InCommit {
                outcome,
                replies,
                duplicates,
                actions: evaluation.actions,
                outcomes: evaluation.outcomes,
                changes,
                ids,
                total,
                now,
            }),
            Err(error) => {
                self.state().undo();
                self.refuse(replies, total, &error);
                None
            }
        }
    }

    /// Sees `committing` through: answers its sources, settles or undoes its state.
    fn finish(&mut self, committing: InCommit) {
        if self.land(committing).is_err() {
            self.state().undo();
        }
    }

    /// Waits for `committing`'s outcome; once it landed, settles its state,
    /// counts it and dispatches its actions; answers its sources either way.
    /// On failure its state (and any evaluated after it) is still pending.
    fn land(&mut self, committing: InCommit) -> Result<(), CommitError> {
        let InCommit {
            outcome,
            replies,
            duplicates,
            actions,
            outcomes,
            changes,
            total,
            now,
            ..
        } = committing;
        let result = StoreWriter::outcome_blocking(outcome);
        match &result {
            Ok(_) => {
                self.state().settle_first(changes);
                self.after_commit(actions, &outcomes, now);
                let repeated: usize = duplicates.iter().sum();
                self.metrics
                    .events_accepted
                    .inc_by((total - repeated) as u64);
                self.metrics.events_duplicate.inc_by(repeated as u64);
                for (reply, duplicates) in replies.into_iter().zip(duplicates) {
                    let _ = reply.send(Ok(duplicates));
                }
                self.in_flight.done(total);
            }
            Err(error) => self.refuse(replies, total, error),
        }
        result.map(|_| ())
    }

    /// Answers every request with `error`: not accepted.
    fn refuse(&self, replies: Vec<oneshot::Sender<Accepted>>, total: usize, error: &CommitError) {
        for reply in replies {
            let _ = reply.send(Err(error.clone()));
        }
        self.in_flight.done(total);
    }

    /// Per request, per event: whether it is new (not seen within the
    /// dedupe window, not in the commit `under_way`, nor earlier in this batch).
    fn fresh(
        &self,
        batches: &[Vec<Incoming>],
        under_way: &HashSet<String>,
    ) -> Result<Vec<Vec<bool>>, CommitError> {
        let ids: Vec<&str> = (batches.iter())
            .flat_map(|events| events.iter().map(|e| e.event.id.as_str()))
            .collect();
        let since = self.clock.now_ms() - self.dedupe_window_ms;
        let seen =
            (self.store.seen_since(&ids, since)).map_err(|e| CommitError::Failed(Arc::new(e)))?;
        let mut in_batch = HashSet::new();
        let mut flags = (seen.into_iter().zip(&ids))
            .map(|(seen, id)| !seen && !under_way.contains(*id) && in_batch.insert(*id));
        Ok((batches.iter())
            .map(|events| flags.by_ref().take(events.len()).collect())
            .collect())
    }

    /// Evaluates events accepted in an earlier run; their evaluation is
    /// retried until it lands (they are accepted already).
    fn evaluate_accepted(&mut self, events: Vec<Event>) {
        let now = self.clock.now_ms();
        let mut evaluation = self.evaluate(&events, now);
        evaluation.batch.state = self.state().take_changes();
        match self.writer.commit_until_done_blocking(evaluation.batch) {
            Ok(_) => self.after_commit(evaluation.actions, &evaluation.outcomes, now),
            Err(error) => tracing::error!(
                error = %kairo_core::error_chain(&error), events = events.len(),
                "could not record evaluations before shutdown; the events stay in the inbox and are evaluated again on the next start"
            ),
        }
        self.in_flight.done(events.len());
    }

    /// Evaluates `events` at `now`: their records with traces, their
    /// actions (shadow ones straight to the history), not yet committed.
    pub(crate) fn evaluate(&mut self, events: &[Event], now: i64) -> Evaluation {
        self.evaluate_prepared(events, now, |_, _| {})
    }

    /// [`Matcher::evaluate`], with `prepare` run before the evaluation
    /// ([`Pipeline::run_prepared`]).
    pub(crate) fn evaluate_prepared(
        &mut self,
        events: &[Event],
        now: i64,
        prepare: impl FnOnce(&[std::borrow::Cow<'_, Event>], &crate::pipeline::SharedState),
    ) -> Evaluation {
        let rules = self.rules.snapshot();
        let handlers = self.handlers.snapshot();
        let mut evaluation = Evaluation {
            batch: Batch::default(),
            actions: Vec::new(),
            outcomes: Vec::new(),
        };
        let evaluated = (self.pipeline).run_prepared(&rules, &handlers, events, now, prepare);
        for (
            event,
            Evaluated {
                requests,
                errors,
                trace,
            },
        ) in events.iter().zip(evaluated)
        {
            evaluation.batch.traces.push(TraceEntry {
                event_id: event.id.clone(),
                evaluated_at_ms: now,
                trace: trace.to_json(),
            });
            if requests.is_empty() {
                tracing::debug!(target: "kairo::rules", event_id = %event.id, "the event fired nothing");
            }
            // Shadow requests are recorded as such and never performed.
            let (shadow, live): (Vec<_>, Vec<_>) = requests.into_iter().partition(|r| r.shadow);
            let shadow = shadow.into_iter().map(|r| HistoryEntry::shadow(r, now));
            evaluation.batch.finished.extend(shadow);
            let pending: Vec<PendingAction> = live
                .into_iter()
                .map(|request| PendingAction::new(request, now))
                .collect();
            evaluation.actions.extend(pending.iter().cloned());
            evaluation.batch.evaluated.push((event.id.clone(), pending));
            evaluation.outcomes.push((trace, errors));
        }
        evaluation
    }

    /// Once a batch is committed: its numbers and logs, then its actions to
    /// the dispatcher; stale handler state leaves memory now and then.
    pub(crate) fn after_commit(
        &mut self,
        actions: Vec<PendingAction>,
        outcomes: &[(EventTrace, Vec<kairo_script::RuleError>)],
        now: i64,
    ) {
        for (trace, errors) in outcomes {
            self.stats.observe(trace, now);
            self.count_fires(trace);
            for error in errors {
                self.metrics
                    .rule_errors
                    .get_or_create(&RuleLabels {
                        rule: error.rule.clone(),
                    })
                    .inc();
                tracing::warn!(target: "kairo::rules", rule = %error.rule, event_id = %error.event_id, "{}", error.message);
            }
        }
        if self.last_prune.elapsed() >= STATE_PRUNE_EVERY {
            self.last_prune = std::time::Instant::now();
            self.state()
                .prune(&kairo_core::handler::Retention::as_of(now));
        }
        self.dispatcher.enqueue(actions);
    }

    pub(crate) fn state(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, kairo_core::handler::MemoryState> {
        self.pipeline
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Counts, per rule and handler, the ones that fired (when enabled).
    fn count_fires(&self, trace: &EventTrace) {
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
}
