//! Tests of the module beside this file.
use super::*;
use crate::RuleStore;
use crate::{Limits, engine};
use serde_json::json;

fn shared_engine() -> Arc<Engine> {
    Arc::new(engine(Limits::default()))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const OTA: &str = r#"
if payload.otaStatus == "finished" {
set_group(simId, "group-to-id");
slack(`OTA finished for ${simId}`);
}
"#;

#[test]
fn ota_rule_fires_only_on_finished() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ota.rhai", OTA);
    let (store, report) = RuleStore::load(dir.path(), shared_engine());
    assert_eq!(report.added, vec!["ota"]);
    let rules = store.snapshot();
    let finished = Event::from_value(json!({"simId": "s1", "otaStatus": "finished"})).unwrap();
    let evaluation = rules.evaluate(&finished);
    assert!(evaluation.errors.is_empty(), "{:?}", evaluation.errors);
    let actions: Vec<_> = evaluation
        .requests
        .iter()
        .map(|r| (r.action.as_str(), r.params.clone()))
        .collect();
    assert_eq!(
        actions,
        vec![
            (
                "set_group",
                json!({"simId": "s1", "groupId": "group-to-id"})
            ),
            ("slack", json!({"text": "OTA finished for s1"})),
        ]
    );
    assert_eq!(evaluation.requests[1].index, 1);
    let started = Event::from_value(json!({"simId": "s1", "otaStatus": "started"})).unwrap();
    assert!(rules.evaluate(&started).requests.is_empty());
    let lower = Event::from_value(json!({"simId": "s1", "otastatus": "finished"})).unwrap();
    assert!(
        rules.evaluate(&lower).requests.is_empty(),
        "keys are case-sensitive"
    );
}

#[test]
fn compile_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.rhai", "let x = 1;\nif x == {\n");
    let (store, report) = RuleStore::load(dir.path(), shared_engine());
    assert!(store.snapshot().is_empty());
    let error = &report.errors[0];
    assert_eq!(error.line, Some(3));
    assert!(error.to_string().contains("bad.rhai:3:"), "{error}");
}

#[test]
fn unknown_variable_is_a_compile_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "typo.rhai",
        "if simid == \"x\" { suspend(simId); }",
    );
    let (_, report) = RuleStore::load(dir.path(), shared_engine());
    assert!(
        report.errors[0].to_string().contains("typo.rhai:1:4"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn reload_keeps_good_version_and_drops_deleted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.rhai", "slack(\"v1\");");
    let (store, _) = RuleStore::load(dir.path(), shared_engine());
    let event = Event::from_value(json!({})).unwrap();
    let text = |store: &RuleStore| -> Vec<serde_json::Value> {
        store
            .snapshot()
            .evaluate(&event)
            .requests
            .into_iter()
            .map(|r| r.params["text"].clone())
            .collect()
    };
    assert_eq!(text(&store), vec![json!("v1")]);

    write(dir.path(), "a.rhai", "slack(\"v2\"");
    let report = store.reload();
    assert_eq!(report.errors.len(), 1);
    assert_eq!(text(&store), vec![json!("v1")], "broken edit keeps v1");

    write(dir.path(), "a.rhai", "slack(\"v2\");");
    assert_eq!(store.reload().updated, vec!["a"]);
    assert_eq!(text(&store), vec![json!("v2")]);

    std::fs::remove_file(dir.path().join("a.rhai")).unwrap();
    assert_eq!(store.reload().removed, vec!["a"]);
    assert!(text(&store).is_empty());
}

#[test]
fn runtime_errors_do_not_stop_other_rules() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a_fails.rhai", "set_group(simId, \"g\");");
    write(dir.path(), "b_works.rhai", "slack(\"ok\");");
    let (store, _) = RuleStore::load(dir.path(), shared_engine());
    let evaluation = store
        .snapshot()
        .evaluate(&Event::from_value(json!({})).unwrap());
    assert_eq!(evaluation.requests.len(), 1);
    assert_eq!(evaluation.errors[0].rule, "a_fails");
    assert!(
        evaluation.errors[0]
            .message
            .contains("sim_id` must be a string"),
        "{}",
        evaluation.errors[0]
    );
}

#[test]
fn sandbox_stops_runaway_scripts_and_constants_are_protected() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a_loop.rhai", "loop { }");
    write(
        dir.path(),
        "b_mutate.rhai",
        "payload.otaStatus = \"hacked\";",
    );
    write(dir.path(), "c_read.rhai", "slack(payload.otaStatus);");
    let (store, report) = RuleStore::load(dir.path(), shared_engine());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let event = Event::from_value(json!({"otaStatus": "finished"})).unwrap();
    let evaluation = store.snapshot().evaluate(&event);
    assert_eq!(evaluation.errors.len(), 2, "{:?}", evaluation.errors);
    assert_eq!(evaluation.requests[0].params["text"], "finished");
}

#[test]
fn action_function_records_any_plugin() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "x.rhai",
        "action(\"my_plugin\", #{ level: 3 }); publish(\"a.b\", #{ n: 1 });",
    );
    let (store, _) = RuleStore::load(dir.path(), shared_engine());
    let evaluation = store
        .snapshot()
        .evaluate(&Event::from_value(json!({})).unwrap());
    assert_eq!(evaluation.requests[0].action, "my_plugin");
    assert_eq!(evaluation.requests[0].params, json!({"level": 3}));
    assert_eq!(
        evaluation.requests[1].params,
        json!({"subject": "a.b", "payload": {"n": 1}})
    );
}

mod state_tests {
    use super::*;
    use crate::{Limits, ScriptContext, engine, with_context};
    use serde_json::json;

    fn set(source: &str) -> RuleSet {
        let engine = Arc::new(engine(Limits::default()));
        let rule = RuleSet::compile(&engine, "r", Path::new("r.rhai"), source.into()).unwrap();
        RuleSet::from_rules(engine, vec![Arc::new(rule)])
    }

    #[test]
    fn reevaluate_is_recorded_apart_from_actions() {
        let rules = set(r#"slack("a"); reevaluate("BEGINNING_OF_NEXT_DAY", 5); slack("b");"#);
        assert!(rules.uses_state());
        let evaluation = rules.evaluate(&Event::from_value(json!({})).unwrap());
        assert_eq!(
            evaluation
                .requests
                .iter()
                .map(|r| r.index)
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(
            evaluation.reevaluations,
            vec![Reevaluation {
                rule: "r".into(),
                timing: kairo_core::handler::DateConst::BeginningOfNextDay,
                offset_minutes: 5
            }]
        );
        let bad =
            set(r#"reevaluate("TOMORROW");"#).evaluate(&Event::from_value(json!({})).unwrap());
        assert!(
            bad.errors[0].message.contains("reevaluate: timing must be"),
            "{:?}",
            bad.errors
        );
        assert!(!set(r#"slack("x");"#).uses_state());
    }

    #[test]
    fn traffic_mib_reads_the_counters_of_the_current_utc_window() {
        let rules = set(
            r#"if traffic_mib("sim", simId, "day") > 10.0 { slack(`${traffic_mib("sim", simId, "day")}`); }"#,
        );
        let now = 1_741_608_000_000; // 2025-03-10T12:00:00Z
        let context = Arc::new(ScriptContext {
            state: Arc::new(|key: &str| (key == "c/sim/s1/d20250310").then_some(11 * 1024 * 1024)),
            now_ms: now,
        });
        let event = Event::from_value(json!({"simId": "s1"})).unwrap();
        let evaluation = with_context(Some(context), || rules.evaluate(&event));
        assert_eq!(evaluation.requests[0].params["text"], "11.0");
        assert!(
            rules.evaluate(&event).requests.is_empty(),
            "no context reads as zero"
        );
    }
}
