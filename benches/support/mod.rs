//! Shared fixtures for the benches: a realistic rule mix and event mix.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use kairo_core::Event;
use kairo_script::{Limits, RuleSet, engine};
use kairo_store::{Batch, PendingAction, StoredEvent};

/// The benches allocate as the `kairo` binary does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The generic (non per-SIM) rules, cycled through for 10% of a rule set.
pub const GENERIC_RULES: [&str; 4] = [
    r#"if payload.otaStatus == "finished" { set_group(simId, "group-to-id"); slack(`OTA finished for ${simId}`); }"#,
    r#"if eventType == "SimSpeedClassChanged" { email("fleet@example.com", `Speed class of ${simId}`, `now ${payload.newSpeedClass}`); }"#,
    r#"if eventType in ["SimImeiMismatched", "SubscriberImeiMismatched"] { suspend(simId); slack(`IMEI mismatch on ${simId}`); }"#,
    r#"if eventType == "SimDailyTraffic" && payload.usedMiB > 100 { set_speed_class(simId, "s1.minimum"); }"#,
];

/// SIM id number `i`.
pub fn sim(i: usize) -> String {
    format!("89811000000{i:08}")
}

/// IMSI number `i`.
pub fn imsi(i: usize) -> String {
    format!("44010{i:010}")
}

/// Group number for rule position `i` (every tenth rule is a group rule).
fn group_of(i: usize) -> usize {
    i / 10
}

/// Rule sources: about 90% per-SIM rules keyed by simId or imsi, 10% generic
/// rules: the four fleet-wide [`GENERIC_RULES`] and per-group rules
/// (`event.groupId == "group-N" && ...`), as a fleet with many SIM groups has.
pub fn rule_sources(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            if i < GENERIC_RULES.len().min(count.div_ceil(10)) {
                GENERIC_RULES[i].to_string()
            } else if i % 10 == 9 {
                format!(
                    r#"if event.groupId == "group-{g}" && payload.otaStatus == "finished" {{ set_group(simId, "group-{g}-v2"); }}"#,
                    g = group_of(i)
                )
            } else if i % 2 == 0 {
                format!(r#"if simId == "{}" {{ set_speed_class(simId, "s1.slow"); }}"#, sim(i))
            } else {
                format!(r#"if imsi == "{}" {{ suspend(simId); slack(`suspended ${{simId}}`); }}"#, imsi(i))
            }
        })
        .collect()
}

/// A compiled rule set of `count` rules.
pub fn rule_set(count: usize) -> RuleSet {
    let engine = Arc::new(engine(Limits::default()));
    let rules = rule_sources(count)
        .into_iter()
        .enumerate()
        .map(|(i, source)| {
            let name = format!("rule-{i:06}");
            Arc::new(
                RuleSet::compile(&engine, &name, Path::new(&name), source)
                    .expect("bench rules compile"),
            )
        })
        .collect();
    RuleSet::from_rules(engine, rules)
}

/// `count` SORACOM-style events (about 450 bytes each) of the usual kinds,
/// for SIMs spread over the first `sims` rule positions.
pub fn event_bodies(count: usize, sims: usize) -> Vec<String> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|n| {
            let i = (next() as usize) % sims.max(1);
            let (kind, payload) = match n % 5 {
                0 => ("SimSubscriptionStatus", r#"{"otaStatus":"finished","subscription":"planX3","primaryImsi":"440100000000001"}"#.to_string()),
                1 => ("SimSubscriptionStatus", r#"{"otaStatus":"started","subscription":"planX3","primaryImsi":"440100000000001"}"#.to_string()),
                2 => ("SimSpeedClassChanged", r#"{"oldSpeedClass":"s1.fast","newSpeedClass":"s1.minimum"}"#.to_string()),
                3 => ("SimDailyTraffic", format!(r#"{{"usedMiB":{},"period":"day","limitMiB":100}}"#, next() % 200)),
                _ => ("SubscriberSessionStatus", r#"{"sessionStatus":"Deleted","imei":"356000000000001","apn":"soracom.io"}"#.to_string()),
            };
            format!(
                r#"{{"id":"ev-{n:08}","eventType":"{kind}","operatorId":"OP0000000000","simId":"{}","imsi":"{}","groupId":"group-{}","timestamp":"2026-11-23T01:02:03Z","tags":{{"name":"dev-{i}"}},"coverage":"jp","payload":{payload}}}"#,
                sim(i),
                imsi(i),
                group_of(i)
            )
        })
        .collect()
}

/// The same events, decoded.
pub fn events(count: usize, sims: usize) -> Vec<Event> {
    event_bodies(count, sims)
        .iter()
        .map(|b| Event::from_slice(b.as_bytes()).expect("bench events decode"))
        .collect()
}

/// The same rules as [`rule_sources`], as json-rules-engine rules (for the peer comparison).
pub fn peer_rules(count: usize) -> Vec<serde_json::Value> {
    use serde_json::json;
    let equal =
        |fact: &str, value: &str| json!({"fact": fact, "operator": "equal", "value": value});
    let payload = |path: &str, operator: &str, value: serde_json::Value| json!({"fact": "payload", "path": format!("$.{path}"), "operator": operator, "value": value});
    (0..count)
        .map(|i| {
            let conditions = if i < GENERIC_RULES.len().min(count.div_ceil(10)) {
                match i {
                    0 => vec![payload("otaStatus", "equal", json!("finished"))],
                    1 => vec![equal("eventType", "SimSpeedClassChanged")],
                    2 => vec![json!({"fact": "eventType", "operator": "in", "value": ["SimImeiMismatched", "SubscriberImeiMismatched"]})],
                    _ => vec![equal("eventType", "SimDailyTraffic"), payload("usedMiB", "greaterThan", json!(100))],
                }
            } else if i % 10 == 9 {
                vec![equal("groupId", &format!("group-{}", group_of(i))), payload("otaStatus", "equal", json!("finished"))]
            } else if i % 2 == 0 {
                vec![equal("simId", &sim(i))]
            } else {
                vec![equal("imsi", &imsi(i))]
            };
            json!({"name": format!("rule-{i:06}"), "conditions": {"all": conditions}, "event": {"type": format!("rule-{i:06}")}})
        })
        .collect()
}

/// An event as the inbox stores it.
pub fn stored(event: &Event) -> StoredEvent {
    StoredEvent {
        event: event.to_value(),
        received_at_ms: 0,
        source: "bench".into(),
    }
}

/// Pending actions for `requests`.
pub fn pending(requests: Vec<kairo_core::ActionRequest>) -> Vec<PendingAction> {
    requests
        .into_iter()
        .map(|r| PendingAction::new(r, 0))
        .collect()
}

/// Evaluation as before traces: the rules only.
pub fn untraced_batch(rules: &kairo_script::RuleSet, events: &[Event]) -> Batch {
    let evaluated = events
        .iter()
        .zip(rules.evaluate_batch(events))
        .map(|(event, evaluation)| (event.id.clone(), pending(evaluation.requests)))
        .collect();
    Batch {
        evaluated,
        ..Batch::default()
    }
}

/// Evaluation through the router's pipeline, recording each event with its trace.
pub fn traced_batch(rules: &kairo_script::RuleSet, events: &[Event]) -> Batch {
    let handlers = kairo_core::handler::HandlerSet::default();
    let state = kairo_router::pipeline::SharedState::default();
    let enriched: Vec<_> = events.iter().map(std::borrow::Cow::Borrowed).collect();
    let mut batch = Batch::default();
    let evaluations =
        kairo_router::pipeline::evaluate(rules, &handlers, &state, events, &enriched, 0);
    for (event, evaluated) in events.iter().zip(evaluations) {
        batch.traces.push(kairo_store::TraceEntry {
            event_id: event.id.clone(),
            evaluated_at_ms: 0,
            trace: evaluated.trace.to_json(),
        });
        batch
            .evaluated
            .push((event.id.clone(), pending(evaluated.requests)));
    }
    batch
}
