//! The evaluation of a batch of events: traffic counting, rule scripts and
//! SORACOM event handlers, in event order, against shared handler state.
//!
//! Every event is counted and then seen by stateful rules and by the
//! handlers before the next one is touched, so a batch gives exactly what
//! posting its events one by one gives.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use kairo_core::handler::{HandlerSet, HandlerState, MemoryState};
use kairo_core::{ActionRequest, Event};
use kairo_script::{Evaluation, Rule, RuleError, RuleSet, ScriptContext};

use crate::directory::Directory;
use crate::trace::EventTrace;

/// Handler state shared by the evaluation and the scripts' `traffic_mib(...)`.
pub type SharedState = Arc<RwLock<MemoryState>>;

/// The evaluation stage of a router (or of a dry run): what it knows of SIMs
/// and groups, and the handler state. `kairo run` and `kairo test` both
/// evaluate through [`Pipeline::run`].
#[derive(Default)]
pub struct Pipeline {
    /// SIMs and groups, learned from events (and, live, looked up).
    pub directory: Directory,
    /// Traffic counters and suppression times.
    pub state: SharedState,
}

impl Pipeline {
    /// Fills in the events' SIM and group where handlers or stateful rules
    /// need them, then [`evaluate`]s them in order at `now_ms`.
    pub fn run(
        &mut self,
        rules: &RuleSet,
        handlers: &HandlerSet,
        events: &[Event],
        now_ms: i64,
    ) -> Vec<Evaluated> {
        self.run_prepared(rules, handlers, events, now_ms, |_, _| {})
    }

    /// [`Pipeline::run`], letting `prepare` see the events as the handlers
    /// will (SIM and group filled in) and put state in place before they are
    /// evaluated: a cluster loads the state many instances share.
    pub fn run_prepared(
        &mut self,
        rules: &RuleSet,
        handlers: &HandlerSet,
        events: &[Event],
        now_ms: i64,
        prepare: impl FnOnce(&[Cow<'_, Event>], &SharedState),
    ) -> Vec<Evaluated> {
        let stateful = !handlers.handlers().is_empty() || rules.uses_state();
        let need_group = handlers
            .handlers()
            .iter()
            .any(|h| h.active && matches!(h.target, kairo_core::handler::Target::Group(_)));
        let enriched: Vec<Cow<'_, Event>> = if stateful {
            self.directory.enrich_batch(events, need_group)
        } else {
            events.iter().map(Cow::Borrowed).collect()
        };
        prepare(&enriched, &self.state);
        evaluate(rules, handlers, &self.state, events, &enriched, now_ms)
    }
}

/// One event's evaluation: what the rules and handlers ask for, the rules
/// that failed, and the trace of every decision.
#[derive(Debug, Default)]
pub struct Evaluated {
    /// Action requests, the rules' first, then the handlers'.
    pub requests: Vec<ActionRequest>,
    /// Rules that failed on the event.
    pub errors: Vec<RuleError>,
    /// Why each rule and handler did or did not act.
    pub trace: EventTrace,
}

/// Evaluates `events` in order. `enriched[i]` is `events[i]` with its SIM and
/// group filled in; handlers and traffic counters see that one, rule scripts
/// see the event as received. Returns one [`Evaluated`] per event.
pub fn evaluate(
    rules: &RuleSet,
    handlers: &HandlerSet,
    state: &SharedState,
    events: &[Event],
    enriched: &[Cow<'_, Event>],
    now_ms: i64,
) -> Vec<Evaluated> {
    let stateful = !handlers.handlers().is_empty() || rules.uses_state();
    if !stateful {
        return events
            .iter()
            .zip(rules.evaluate_batch(events))
            .map(|(event, evaluation)| finish(rules, event, evaluation, Vec::new(), state))
            .collect();
    }
    // Rules that read no state may run ahead in parallel; they do not depend
    // on the counters.
    let mut ahead = (!rules.uses_state()).then(|| rules.evaluate_batch(events).into_iter());
    events
        .iter()
        .zip(enriched)
        .map(|(event, counted)| {
            kairo_core::handler::count(counted, &mut *write(state), now_ms);
            let evaluation = match ahead.as_mut() {
                Some(ahead) => ahead.next().unwrap_or_default(),
                None => evaluate_with_state(rules, state, event, now_ms),
            };
            let (requests, traces) = handlers.fire_traced(counted, &mut *write(state), now_ms);
            let mut evaluated = finish(rules, event, evaluation, traces, state);
            evaluated.requests.extend(requests);
            evaluated
        })
        .collect()
}

fn finish(
    rules: &RuleSet,
    event: &Event,
    evaluation: Evaluation,
    handlers: Vec<kairo_core::handler::HandlerTrace>,
    state: &SharedState,
) -> Evaluated {
    let held_until = |rule_id: &str| read(state).get(&rule_suppression_key(rule_id, event));
    let trace = crate::trace::record(rules, &evaluation, handlers, held_until);
    Evaluated {
        requests: evaluation.requests,
        errors: evaluation.errors,
        trace,
    }
}

fn write(state: &SharedState) -> std::sync::RwLockWriteGuard<'_, MemoryState> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

fn read(state: &SharedState) -> std::sync::RwLockReadGuard<'_, MemoryState> {
    state.read().unwrap_or_else(|e| e.into_inner())
}

/// The state key that holds back the rule `rule` (its id) for `event`'s SIM (or IMSI) after `reevaluate(...)`.
pub fn rule_suppression_key(rule: &str, event: &Event) -> String {
    kairo_core::handler::keys::rule_suppression(rule, &rule_subject(event))
}

/// What `reevaluate(...)` holds a rule back for on `event`: its SIM
/// (`sim:…`), else its subscriber (`imsi:…`), else every event naming
/// neither ([`NO_SUBJECT`]).
pub fn rule_subject(event: &Event) -> String {
    event
        .sim_id
        .as_deref()
        .map(|s| format!("sim:{s}"))
        .or_else(|| event.imsi.as_deref().map(|i| format!("imsi:{i}")))
        .unwrap_or_else(|| NO_SUBJECT.into())
}

/// The subject of events that name no SIM and no subscriber.
pub const NO_SUBJECT: &str = "-";

/// Runs the rules not held back by an earlier `reevaluate(...)`, with
/// counters readable through `traffic_mib(...)`, and records the
/// re-evaluation times they declare.
fn evaluate_with_state(
    rules: &RuleSet,
    state: &SharedState,
    event: &Event,
    now_ms: i64,
) -> Evaluation {
    let reader = state.clone();
    let context = Arc::new(ScriptContext {
        state: Arc::new(move |key: &str| read(&reader).get(key)),
        now_ms,
    });
    let held_back = |rule: &Rule| {
        read(state)
            .get(&rule_suppression_key(&rule.id, event))
            .is_some_and(|until| until > now_ms)
    };
    let evaluation =
        kairo_script::with_context(Some(context), || rules.evaluate_except(event, &held_back));
    let mut state = write(state);
    for declared in &evaluation.reevaluations {
        let until = declared
            .timing
            .after(now_ms, declared.offset_minutes)
            .unwrap_or(i64::MAX);
        state.set(rule_suppression_key(&declared.rule, event), until);
    }
    evaluation
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairo_core::ActionRequest;
    use kairo_core::handler::compile;
    use proptest::prelude::*;
    use serde_json::json;

    const MIB: i64 = 1024 * 1024;
    /// 2025-01-15T00:00:00Z.
    const NOW: i64 = 1_736_899_200_000;

    fn handlers() -> HandlerSet {
        let model = json!({
            "name": "cap", "handlerId": "h1", "status": "active", "targetSimId": "sim-a",
            "ruleConfig": {"type": "SimMonthlyTotalTrafficRule", "properties": {
                "inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH",
                "limitTotalTrafficMegaByte": "10"}},
            "actionConfigList": [{"type": "ChangeSpeedClassAction", "properties": {
                "speedClass": "s1.minimum", "executionDateTimeConst": "IMMEDIATELY"}}],
        });
        HandlerSet::new(vec![compile(&model, "h.json", 0).unwrap()])
    }

    fn engine() -> Arc<rhai::Engine> {
        Arc::new(kairo_script::engine(kairo_script::Limits::default()))
    }

    fn rules() -> RuleSet {
        let engine = engine();
        let source = r#"
            if eventType == "TrafficUsage" && traffic_mib("sim", simId, "month") > 6.0 {
                slack(`over: ${simId}`);
                reevaluate("BEGINNING_OF_NEXT_DAY");
            }
        "#;
        let rule = RuleSet::compile(
            &engine,
            "over",
            std::path::Path::new("over.rhai"),
            source.into(),
        )
        .unwrap();
        RuleSet::from_rules(engine, vec![Arc::new(rule)])
    }

    fn traffic(i: usize, sim: &str, mib: i64) -> Event {
        Event::from_value(json!({
            "id": format!("e{i}"), "eventType": "TrafficUsage", "simId": sim,
            "timestamp": NOW, "payload": {"bytes": mib * MIB},
        }))
        .unwrap()
    }

    fn run(
        rules: &RuleSet,
        handlers: &HandlerSet,
        batches: &[&[Event]],
    ) -> Vec<Vec<ActionRequest>> {
        let state = SharedState::default();
        batches
            .iter()
            .flat_map(|batch| {
                let enriched: Vec<Cow<'_, Event>> = batch.iter().map(Cow::Borrowed).collect();
                evaluate(rules, handlers, &state, batch, &enriched, NOW)
            })
            .map(|evaluated| evaluated.requests)
            .collect()
    }

    #[test]
    fn a_handler_fires_on_the_event_that_crosses_its_limit() {
        let events: Vec<Event> = (0..9).map(|i| traffic(i, "sim-a", 2)).collect();
        let fired = run(&RuleSet::empty(engine()), &handlers(), &[&events]);
        let firing: Vec<usize> = (0..9).filter(|i| !fired[*i].is_empty()).collect();
        assert_eq!(firing, vec![5], "12 MiB > 10 MiB first at the sixth event");
    }

    proptest! {
        #[test]
        fn a_batch_gives_what_its_events_give_one_by_one(
            traffic_mib in proptest::collection::vec((0usize..2, 0i64..5), 1..30),
        ) {
            let events: Vec<Event> = traffic_mib
                .iter()
                .enumerate()
                .map(|(i, (sim, mib))| traffic(i, ["sim-a", "sim-b"][*sim], *mib))
                .collect();
            let (rules, handlers) = (rules(), handlers());
            let singles: Vec<&[Event]> = events.chunks(1).collect();
            prop_assert_eq!(run(&rules, &handlers, &[&events]), run(&rules, &handlers, &singles));
        }
    }
}
