//! Property: the matching index never changes results. For random rule sets
//! and random events, evaluating only the index's candidates yields exactly
//! the action requests of evaluating every rule.

use std::path::Path;
use std::sync::Arc;

use kairo_core::Event;
use kairo_script::{Limits, RuleSet, engine};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const SIMS: [&str; 3] = ["s1", "s2", "s3"];
const TYPES: [&str; 3] = ["A", "B", "C"];
const OTA: [&str; 3] = ["started", "finished", "failed"];

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(items)
}

/// Rule sources from templates, guarded and unguarded.
fn rule_source() -> impl Strategy<Value = String> {
    (0..12usize, pick(&SIMS), pick(&TYPES), pick(&TYPES), pick(&OTA), 0..5i64).prop_map(|(template, sim, t1, t2, ota, n)| {
        match template {
            0 => format!(r#"if simId == "{sim}" {{ slack("sim {sim}"); }}"#),
            1 => format!(r#"if imsi == "{sim}" && eventType == "{t1}" {{ set_group(simId ?? "none", "g-{t1}"); }}"#),
            2 => format!(r#"if payload.otaStatus == "{ota}" {{ slack(`ota ${{simId}}`); }}"#),
            3 => format!(r#"if eventType in ["{t1}", "{t2}"] {{ action("x", #{{ n: {n} }}); }}"#),
            4 => format!(r#"if payload.meta.kind == "{t1}" {{ slack("kind"); }}"#),
            5 => format!(r#"if event.source == "{t2}" {{ slack(`source ${{event.id}}`); }}"#),
            6 => format!(r#"slack("always {n}");"#),
            7 => format!(r#"if payload.n > {n} {{ slack("num"); }}"#),
            8 => format!(r#"if simId == "{sim}" {{ slack("a"); }} else {{ slack("b"); }}"#),
            9 => format!(r#"if payload.otaStatus != "{ota}" {{ slack("neq"); }}"#),
            10 => format!(r#"if "{sim}" == simId || eventType == "{t1}" {{ slack("or"); }}"#),
            _ => format!(r#"const K = "{t1}"; if "{t2}" == eventType && payload.otaStatus == "{ota}" {{ slack(K); }}"#),
        }
    })
}

fn optional(items: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => pick(items).prop_map(|s| Some(json!(s))),
        1 => Just(None),
        1 => (0..3i64).prop_map(|n| Some(json!(n))),
    ]
}

/// Events of both shapes, with fields present, absent or of the wrong type.
fn event() -> impl Strategy<Value = Value> {
    (
        optional(&SIMS),
        optional(&SIMS),
        optional(&TYPES),
        optional(&OTA),
        prop_oneof![
            Just(None),
            pick(&TYPES).prop_map(|k| Some(json!({"kind": k}))),
            Just(Some(json!("flat")))
        ],
        optional(&TYPES),
        prop::option::of(0..6i64),
        any::<bool>(),
        0..1_000_000u32,
    )
        .prop_map(|(sim, imsi, event_type, ota, meta, source, n, flux, id)| {
            let mut identity = Map::new();
            let mut details = Map::new();
            identity.insert("id".into(), json!(format!("e{id}")));
            for (key, value) in [("simId", sim), ("imsi", imsi), ("eventType", event_type)] {
                if let Some(value) = value {
                    identity.insert(key.into(), value);
                }
            }
            for (key, value) in [
                ("otaStatus", ota),
                ("meta", meta),
                ("n", n.map(|n| json!(n))),
            ] {
                if let Some(value) = value {
                    details.insert(key.into(), value);
                }
            }
            if let Some(source) = source {
                identity.insert("source".into(), source);
            }
            if flux {
                identity.extend(details);
            } else {
                identity.insert("payload".into(), Value::Object(details));
            }
            Value::Object(identity)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn indexed_evaluation_equals_naive(sources in prop::collection::vec(rule_source(), 1..24), events in prop::collection::vec(event(), 1..16)) {
        let engine = Arc::new(engine(Limits::default()));
        let rules = sources
            .iter()
            .enumerate()
            .map(|(i, source)| {
                let name = format!("r{i:02}");
                Arc::new(RuleSet::compile(&engine, &name, Path::new(&format!("{name}.rhai")), source.clone()).unwrap())
            })
            .collect();
        let set = RuleSet::from_rules(engine, rules);
        for value in events {
            let event = Event::from_value(value).unwrap();
            let indexed = set.evaluate(&event).requests;
            let naive = set.evaluate_naive(&event).requests;
            prop_assert_eq!(indexed, naive, "event {:?}", event);
        }
    }
}
