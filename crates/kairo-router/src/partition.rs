//! The matcher's cluster-mode work: evaluating one partition's events with
//! the state the cluster keeps.
//!
//! A partition's own state (its SIMs' counters and suppressions) comes from
//! its journal ([`Work::Restore`]). The state many SIMs' events change is
//! read from JetStream before a chunk is evaluated and claimed or added to after:
//! group and operator counters (kept there while a handler or a rule script
//! reads them) and the suppressions of `runOnceAmongTarget` handlers aimed
//! at a group or an operator, and of rule scripts' `reevaluate(...)` on
//! events naming no SIM or subscriber, which a firing event must claim:
//! when another instance claimed one first, the fire is taken back, its
//! actions dropped, and its trace says so.

use std::borrow::Cow;
use std::collections::HashMap;

use kairo_core::Event;
use kairo_core::handler::{HandlerOutcome, HandlerSet, describe_time};
use kairo_ingest::cluster::{ActionJob, ClusterError, Held, PartitionEvaluation, SharedState};
use kairo_script::RuleSet;

use crate::matcher::{Evaluation, Incoming, Matcher, PartitionEvaluated, Work, split_fresh};
use crate::pipeline::{NO_SUBJECT, SharedState as LocalState, rule_subject, rule_suppression_key};
use crate::trace::{EventTrace, RuleOutcome};
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

/// What a chunk adds to group and operator counters, by counter.
type Adds = std::collections::BTreeMap<String, i64>;

/// The suppressions many partitions share, which a fire must claim.
#[derive(Default)]
struct Holds {
    /// Of `runOnceAmongTarget` handlers aimed at a group or an operator:
    /// the key, by handler id.
    handlers: HashMap<String, String>,
    /// Of rules that may call `reevaluate(...)`, when the chunk has events
    /// naming no SIM or subscriber: the key, by rule id.
    rules: HashMap<String, String>,
}

impl Holds {
    /// The shared suppressions `events`' evaluation may set.
    fn of(handlers: &HandlerSet, rules: &RuleSet, events: &[Event]) -> Self {
        let rules = match events.iter().find(|e| rule_subject(e) == NO_SUBJECT) {
            Some(event) => (rules.rules().iter())
                .filter(|rule| rule.reevaluates())
                .map(|rule| (rule.id.clone(), rule_suppression_key(&rule.id, event)))
                .collect(),
            None => HashMap::new(),
        };
        Self {
            handlers: handlers.shared_suppressions().into_iter().collect(),
            rules,
        }
    }

    fn keys(&self) -> Vec<String> {
        (self.handlers.values().chain(self.rules.values()))
            .cloned()
            .collect()
    }
}

/// The shared state read before a chunk: the counters it adds to, and who
/// held each shared suppression until when.
#[derive(Default)]
struct Loaded {
    adds: Adds,
    held: HashMap<String, Option<i64>>,
}

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
        let (handlers, rules) = (self.handlers.snapshot(), self.rules.snapshot());
        let holds = Holds::of(&handlers, &rules, &events);
        let mut loaded: Result<Loaded, ClusterError> = Ok(Loaded::default());
        let mut evaluation = match self.shared.clone() {
            Some(shared) => {
                let reads = handlers.reads_shared_counters() || rules.uses_state();
                self.evaluate_prepared(&events, now, |enriched, state| {
                    loaded = load_shared(&shared, &holds, enriched, state, reads, now);
                })
            }
            None => self.evaluate(&events, now),
        };
        let shared_written = match self.shared.clone() {
            Some(shared) => loaded.and_then(|loaded| {
                self.claim_shared(&shared, &holds, &events, &mut evaluation, &loaded, now)?;
                Ok(loaded.adds.into_iter().collect())
            }),
            None => Ok(Vec::new()),
        };
        let adds = match shared_written {
            Ok(adds) => adds,
            Err(error) => {
                self.state().undo();
                return Err(CommitError::Cluster(std::sync::Arc::new(error)));
            }
        };
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
                    adds,
                })
            }
            Err(error) => {
                self.state().undo();
                Err(error)
            }
        }
    }

    /// Claims the shared suppressions the chunk's fires set; a fire whose
    /// claim another event holds is taken back. (Its counts are added to
    /// the shared counters once its journal entry is stored.)
    fn claim_shared(
        &mut self,
        shared: &Shared,
        holds: &Holds,
        events: &[Event],
        evaluation: &mut Evaluation,
        loaded: &Loaded,
        now: i64,
    ) -> Result<(), ClusterError> {
        // Handler traces are looked at only when some handler claims.
        let handlers_claim = !holds.handlers.is_empty();
        for (i, event) in events.iter().enumerate().filter(|_| handlers_claim) {
            let fired: Vec<String> = (evaluation.outcomes[i].0.handlers.iter())
                .filter(|h| h.outcome == HandlerOutcome::Fired)
                .filter(|h| holds.handlers.contains_key(h.handler.as_str()))
                .map(|h| h.handler.clone())
                .collect();
            for handler in fired {
                let key = &holds.handlers[&handler];
                if let Some(held) = self.claim(shared, key, &event.id, now)? {
                    take_back(evaluation, i, &event.id, &handler, &held);
                }
            }
        }
        for (rule, key) in &holds.rules {
            let until = self.state().values.get(key).copied();
            if until == loaded.held.get(key).copied().flatten() {
                continue; // no event of the chunk called `reevaluate(...)`
            }
            // The event that called it: the last one naming no SIM the rule
            // ran on (the rule is held back on those after it).
            let ran = |i: &usize| {
                rule_subject(&events[*i]) == NO_SUBJECT && ran(&evaluation.outcomes[*i].0, rule)
            };
            let Some(i) = (0..events.len()).rev().find(ran) else {
                continue;
            };
            if let Some(held) = self.claim(shared, key, &events[i].id, now)? {
                take_back_rule(evaluation, i, &events[i].id, rule, &held);
            }
        }
        Ok(())
    }

    /// Claims shared suppression `key` for event `by` until the time this
    /// chunk set; when another event holds it, takes its time and returns it.
    fn claim(
        &mut self,
        shared: &Shared,
        key: &str,
        by: &str,
        now: i64,
    ) -> Result<Option<Held>, ClusterError> {
        let until = self.state().values.get(key).copied().unwrap_or(i64::MAX);
        let held = shared
            .runtime
            .block_on(shared.state.claim(key, until, by, now))?;
        if let Some(held) = &held {
            self.state().values.insert(key.to_string(), held.until);
        }
        Ok(held)
    }
}

/// True when rule `rule` (its id) ran on the event `trace` tells of.
fn ran(trace: &EventTrace, rule: &str) -> bool {
    (trace.rules.iter()).any(|r| {
        r.rule_id() == rule && matches!(r.outcome, RuleOutcome::Fired | RuleOutcome::NotMatched)
    })
}

/// Reads the shared state the chunk's evaluation depends on into `state`:
/// every shared suppression, and, when something reads them, the counters
/// the chunk adds to. Returns those adds and suppressions.
fn load_shared(
    shared: &Shared,
    holds: &Holds,
    enriched: &[Cow<'_, Event>],
    state: &LocalState,
    reads_counters: bool,
    now: i64,
) -> Result<Loaded, ClusterError> {
    let mut adds = Adds::new();
    if reads_counters {
        for event in enriched {
            if let Some((bytes, keys)) = kairo_core::handler::shared_traffic(event, now) {
                for key in keys {
                    *adds.entry(key).or_default() += bytes;
                }
            }
        }
    }
    let counters: Vec<String> = adds.keys().cloned().collect();
    let suppressions = holds.keys();
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
    let mut loaded = Loaded {
        adds,
        held: HashMap::new(),
    };
    for (key, held) in suppressions.into_iter().zip(held) {
        let until = held.map(|h| h.until);
        match until {
            Some(until) => state.values.insert(key.clone(), until),
            None => state.values.remove(&key),
        };
        loaded.held.insert(key, until);
    }
    Ok(loaded)
}

/// Takes back handler `handler`'s fire on event `i` (`event_id`): its
/// actions are dropped and its trace says who holds the target.
fn take_back(evaluation: &mut Evaluation, i: usize, event_id: &str, handler: &str, held: &Held) {
    let rule = format!("handler:{handler}");
    (evaluation.actions).retain(|a| !(a.request.event_id == event_id && a.request.rule == rule));
    let trace = &mut evaluation.outcomes[i].0;
    for decision in trace.handlers.iter_mut().filter(|h| h.handler == handler) {
        decision.outcome = HandlerOutcome::Suppressed;
        decision.reason = Some(format!(
            "held back until {} by runOnceAmongTarget: event {} fired it first in the cluster",
            describe_time(held.until),
            held.by
        ));
        decision.actions.clear();
    }
    evaluation.batch.traces[i].trace = trace.to_json();
    tracing::info!(event_id, handler, by = %held.by, "runOnceAmongTarget already fired elsewhere in the cluster; not fired again");
}

/// Takes back rule `rule`'s run on event `i` (`event_id`), which called
/// `reevaluate(...)` while another event held the rule back in the cluster:
/// its actions are dropped and its trace says who holds it.
fn take_back_rule(evaluation: &mut Evaluation, i: usize, event_id: &str, rule: &str, held: &Held) {
    let trace = &mut evaluation.outcomes[i].0;
    for decision in trace.rules.iter_mut().filter(|r| r.rule_id() == rule) {
        (evaluation.actions).retain(|a| {
            !(a.request.event_id == event_id
                && a.request.rule == decision.rule
                && a.request.shadow == decision.shadow)
        });
        decision.outcome = RuleOutcome::Suppressed;
        decision.reason = Some(format!(
            "held back by reevaluate(...) until {}: event {} ran it first in the cluster",
            describe_time(held.until),
            held.by
        ));
    }
    evaluation.batch.traces[i].trace = trace.to_json();
    tracing::info!(event_id, rule, by = %held.by, "reevaluate(...) already holds the rule back elsewhere in the cluster; not run again");
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
