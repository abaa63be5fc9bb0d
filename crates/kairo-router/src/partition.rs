//! The matcher's cluster-mode work: evaluating one partition's events with
//! the state the cluster keeps.
//!
//! A partition's own state (its SIMs' counters and suppressions) comes from
//! its journal ([`Work::Restore`]). The state many SIMs' events change is
//! read from JetStream before a chunk is evaluated and written back after:
//! group and operator counters (kept there while a handler or a rule script
//! reads them) and the suppressions of `runOnceAmongTarget` handlers aimed
//! at a group or an operator, which a firing event must claim: when another
//! instance claimed one first, the fire is taken back, its actions dropped,
//! and its trace says so.

use std::borrow::Cow;
use std::collections::HashMap;

use kairo_core::Event;
use kairo_core::handler::HandlerOutcome;
use kairo_ingest::cluster::{ActionJob, ClusterError, PartitionEvaluation, SharedState};

use crate::matcher::{Evaluation, Incoming, Matcher, PartitionEvaluated, Work, split_fresh};
use crate::pipeline::SharedState as LocalState;
use crate::writer::{CommitError, StoreWriter};

/// Cluster mode: the shared state, and the runtime to reach it from the
/// matcher's thread.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) state: SharedState,
    pub(crate) runtime: tokio::runtime::Handle,
}

/// Partition chunks committed to the local store and not waited for, at most.
const LANDING: usize = 4;

/// The suppression keys many SIMs share, by the id of the handler they hold back.
type Suppressions = HashMap<String, String>;

/// Group and operator counters a chunk adds to: `(counter, bytes, event id)`.
type Adds = Vec<(String, i64, String)>;

impl Matcher {
    /// Cluster-mode work, once every commit before it has landed.
    pub(crate) fn cluster(&mut self, work: Work) {
        match work {
            Work::Partition(events, reply) => {
                let total = events.len();
                let _ = reply.send(self.evaluate_partition(events));
                self.in_flight.done(total);
            }
            Work::Restore(values, reply) => {
                let mut state = self.state();
                for (key, value) in values {
                    match value {
                        Some(value) => state.values.insert(key, value),
                        None => state.values.remove(&key),
                    };
                }
                let _ = reply.send(());
            }
            Work::Accepted(_) | Work::Accept(..) => unreachable!("run handles these"),
        }
    }

    /// Evaluates one partition's events and commits them here with their
    /// evaluation, except what the cluster keeps: the state only this
    /// partition changes (in its journal), the state shared with other
    /// partitions (in JetStream, before this returns) and the actions (in
    /// the actions stream, for any instance to perform); returns the first
    /// and the last. Nothing is pending before: every earlier commit has landed.
    fn evaluate_partition(&mut self, incoming: Vec<Incoming>) -> PartitionEvaluated {
        let now = self.clock.now_ms();
        let all_new = vec![true; incoming.len()];
        let (events, accept, _) = split_fresh(vec![incoming], vec![all_new]);
        let handlers = self.handlers.snapshot();
        let suppressions: Suppressions = handlers.shared_suppressions().into_iter().collect();
        let mut loaded: Result<Adds, ClusterError> = Ok(Vec::new());
        let mut evaluation = match self.shared.clone() {
            Some(shared) => {
                let reads = handlers.reads_shared_counters() || self.rules.snapshot().uses_state();
                self.evaluate_prepared(&events, now, |enriched, state| {
                    loaded = load_shared(&shared, &suppressions, enriched, state, reads, now);
                })
            }
            None => self.evaluate(&events, now),
        };
        let shared_written = match self.shared.clone() {
            Some(shared) => loaded.and_then(|adds| {
                self.store_shared(&shared, &suppressions, &events, &mut evaluation, adds, now)
            }),
            None => Ok(()),
        };
        if let Err(error) = shared_written {
            self.state().undo();
            return Err(CommitError::Cluster(std::sync::Arc::new(error)));
        }
        evaluation.batch.accept = accept;
        let actions = take_actions(&mut evaluation, now);
        let (own, shared): (Vec<_>, Vec<_>) = (self.state().changes_from(0).into_iter())
            .partition(|(key, _)| kairo_core::handler::keys::partition_scoped(key));
        evaluation.batch.state = shared;
        // In cluster mode this store is a cache (records, traces, history):
        // what a partition's evaluation must keep is in its journal and the
        // actions stream. So the commit is not waited for, and the next
        // chunk is evaluated meanwhile; a store that cannot commit still
        // refuses the next ones.
        match self.writer.submit(evaluation.batch) {
            Ok(landing) => {
                // At most a few commits under way: memory stays bounded
                // when the disk is slower than the partitions.
                self.landing.push_back(landing);
                while self.landing.len() > LANDING {
                    let oldest = self.landing.pop_front().expect("more than LANDING");
                    let _ = StoreWriter::outcome_blocking(oldest);
                }
                self.state().take_changes();
                self.metrics.events_accepted.inc_by(events.len() as u64);
                self.after_commit(Vec::new(), &evaluation.outcomes, now);
                Ok(PartitionEvaluation {
                    state: own,
                    actions,
                })
            }
            Err(error) => {
                self.state().undo();
                Err(error)
            }
        }
    }

    /// Adds the chunk's traffic to the shared counters (taking the totals
    /// back), and claims the shared suppressions its fires set; a fire whose
    /// claim another event holds is taken back.
    fn store_shared(
        &mut self,
        shared: &Shared,
        suppressions: &Suppressions,
        events: &[Event],
        evaluation: &mut Evaluation,
        adds: Adds,
        now: i64,
    ) -> Result<(), ClusterError> {
        if !adds.is_empty() {
            let totals = shared.runtime.block_on(shared.state.add(adds))?;
            let mut state = self.state();
            for (key, total) in totals {
                state.values.insert(key, total);
            }
        }
        if suppressions.is_empty() {
            return Ok(());
        }
        for (i, event) in events.iter().enumerate() {
            let fired: Vec<String> = (evaluation.outcomes[i].0.handlers.iter())
                .filter(|h| h.outcome == HandlerOutcome::Fired)
                .filter(|h| suppressions.contains_key(h.handler.as_str()))
                .map(|h| h.handler.clone())
                .collect();
            for handler in fired {
                let key = &suppressions[&handler];
                let until = self.state().values.get(key).copied().unwrap_or(i64::MAX);
                let claim = shared.state.claim(key, until, &event.id, now);
                if let Some(held) = shared.runtime.block_on(claim)? {
                    self.state().values.insert(key.clone(), held.until);
                    take_back(evaluation, i, &event.id, &handler, &held);
                }
            }
        }
        Ok(())
    }
}

/// Reads the shared state the chunk's evaluation depends on into `state`:
/// every shared suppression, and, when something reads them, the counters
/// the chunk adds to. Returns those adds.
fn load_shared(
    shared: &Shared,
    suppressions: &Suppressions,
    enriched: &[Cow<'_, Event>],
    state: &LocalState,
    reads_counters: bool,
    now: i64,
) -> Result<Adds, ClusterError> {
    let mut adds = Vec::new();
    if reads_counters {
        for event in enriched {
            if let Some((bytes, keys)) = kairo_core::handler::shared_traffic(event, now) {
                adds.extend(keys.into_iter().map(|k| (k, bytes, event.id.clone())));
            }
        }
    }
    let mut counters: Vec<String> = adds.iter().map(|(key, _, _)| key.clone()).collect();
    counters.sort();
    counters.dedup();
    let suppressions: Vec<String> = suppressions.values().cloned().collect();
    let (totals, held) = shared.runtime.block_on(async {
        tokio::try_join!(
            shared.state.counters(&counters),
            shared.state.suppressions(&suppressions)
        )
    })?;
    let mut state = state.write().unwrap_or_else(|e| e.into_inner());
    for (key, total) in counters.into_iter().zip(totals) {
        state.values.insert(key, total);
    }
    for (key, held) in suppressions.into_iter().zip(held) {
        match held {
            Some(held) => state.values.insert(key, held.until),
            None => state.values.remove(&key),
        };
    }
    Ok(adds)
}

/// Takes back handler `handler`'s fire on event `i` (`event_id`): its
/// actions are dropped and its trace says who holds the target.
fn take_back(
    evaluation: &mut Evaluation,
    i: usize,
    event_id: &str,
    handler: &str,
    held: &kairo_ingest::cluster::Held,
) {
    let rule = format!("handler:{handler}");
    (evaluation.actions).retain(|a| !(a.request.event_id == event_id && a.request.rule == rule));
    let trace = &mut evaluation.outcomes[i].0;
    for decision in trace.handlers.iter_mut().filter(|h| h.handler == handler) {
        decision.outcome = HandlerOutcome::Suppressed;
        decision.reason = Some(format!(
            "held back until {} by runOnceAmongTarget: event {} fired it first in the cluster",
            kairo_core::handler::describe_time(held.until),
            held.by
        ));
        decision.actions.clear();
    }
    evaluation.batch.traces[i].trace = trace.to_json();
    tracing::info!(event_id, handler, by = %held.by, "runOnceAmongTarget already fired elsewhere in the cluster; not fired again");
}

/// The evaluation's live actions, to publish to the cluster instead of the
/// local outbox.
fn take_actions(evaluation: &mut Evaluation, now: i64) -> Vec<ActionJob> {
    for (_, actions) in &mut evaluation.batch.evaluated {
        actions.clear();
    }
    (std::mem::take(&mut evaluation.actions).into_iter())
        .map(|action| ActionJob {
            key: action.key(),
            due_ms: action.request.not_before_ms.filter(|due| *due > now),
            body: serde_json::to_vec(&action).expect("actions serialize"),
        })
        .collect()
}
