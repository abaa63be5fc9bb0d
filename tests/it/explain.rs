//! Why each rule and handler did or did not act: `GET /v1/events/{id}`.

use serde_json::{Value, json};

use crate::common::*;

const BROKEN: &str = "if payload.otaStatus == \"finished\" {\n    let ratio = 1 / 0;\n}\n";
const HELD: &str =
    r#"if simId != () { slack(`seen ${simId}`); reevaluate("BEGINNING_OF_NEXT_DAY"); }"#;
const TRAFFIC: &str = r#"
if eventType == "TrafficUsage" && traffic_mib("sim", simId, "day") > 5.0 {
    set_speed_class(simId, "s1.minimum");
}
"#;

fn ota_handler() -> Value {
    json!({
        "name": "ota-once", "handlerId": "ota-once", "status": "active", "targetSimId": SIM_1,
        "ruleConfig": {"type": "SimSubscriptionStatusRule",
            "properties": {"inactiveTimeoutDateConst": "NEVER", "targetOtaStatus": "finished"}},
        "actionConfigList": [{"type": "SuspendAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}}]
    })
}

fn outcome<'a>(trace: &'a Value, list: &str, key: &str, name: &str) -> &'a Value {
    trace[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry[key] == name)
        .unwrap_or_else(|| panic!("no {name} in {trace}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_explains_why_each_rule_and_handler_did_or_did_not_act() {
    let soracom = soracom(false).await;
    let slack = catcher().await;
    let handlers = tempfile::tempdir().unwrap();
    std::fs::write(
        handlers.path().join("h.json"),
        json!([ota_handler()]).to_string(),
    )
    .unwrap();
    let rules = [
        ("ota.rhai", OTA_RULE),
        ("broken.rhai", BROKEN),
        ("held.rhai", HELD),
        (
            "quiet.rhai",
            r#"if payload.nothing == 1 { slack("never"); }"#,
        ),
        ("traffic.rhai", TRAFFIC),
    ];
    let kairo = start_kairo(&rules, |c| {
        use_soracom(c, &soracom);
        c.plugins.slack.webhook_url = Some(slack.url.clone());
        c.handlers.dir = handlers.path().to_path_buf();
    })
    .await;
    let ota = |id: &str, sim: &str, status: &str| json!({"id": id, "eventType": "SubscriptionStatus", "simId": sim, "payload": {"otaStatus": status}});
    let traffic = |id: &str, mib: i64| json!({"id": id, "eventType": "TrafficUsage", "simId": SIM_2, "payload": {"bytes": mib << 20}});
    for event in [
        ota("e1", SIM_1, "finished"),
        ota("e2", SIM_1, "started"),
        ota("e3", SIM_1, "finished"),
        ota("e4", SIM_2, "finished"),
        traffic("t1", 3),
        traffic("t2", 3),
    ] {
        assert_eq!(kairo.post(&event.to_string()).await.0, 202);
    }
    kairo.router.idle().await;
    let explain = |id: &str| {
        let path = format!("/v1/events/{id}");
        let kairo = &kairo;
        async move { kairo.get_json::<Value>(&path).await }
    };

    let e1 = explain("e1").await;
    assert_eq!(e1["event"]["id"], "e1");
    assert_eq!(e1["source"], "webhook");
    let trace = &e1["trace"];
    let ota_rule = outcome(trace, "rules", "rule", "ota");
    assert_eq!(ota_rule["outcome"], "fired", "{trace}");
    assert_eq!(ota_rule["requests"][0]["action"], "set_group");
    let broken = outcome(trace, "rules", "rule", "broken");
    assert_eq!(broken["outcome"], "error");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .contains("broken.rhai:2:"),
        "{broken}"
    );
    assert_eq!(
        outcome(trace, "rules", "rule", "quiet")["outcome"],
        "not_matched"
    );
    assert_eq!(outcome(trace, "rules", "rule", "held")["outcome"], "fired");
    assert_eq!(
        outcome(trace, "handlers", "handler", "ota-once")["outcome"],
        "fired"
    );
    let statuses: Vec<&str> = e1["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.len(),
        4,
        "set_group, slack from held, suspend: {}",
        e1["actions"]
    );
    assert!(
        statuses.iter().all(|s| *s == "succeeded"),
        "{}",
        e1["actions"]
    );

    let trace = explain("e2").await["trace"].clone();
    let skipped = outcome(&trace, "rules", "rule", "ota");
    assert_eq!(skipped["outcome"], "skipped");
    assert_eq!(
        skipped["reason"],
        r#"payload.otaStatus is "started", rule needs "finished""#
    );
    let held = outcome(&trace, "rules", "rule", "held");
    assert_eq!(held["outcome"], "suppressed");
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .starts_with("held back by reevaluate(...) until"),
        "{held}"
    );
    assert_eq!(
        outcome(&trace, "handlers", "handler", "ota-once")["outcome"],
        "not_matched"
    );

    let trace = explain("e3").await["trace"].clone();
    let handler = outcome(&trace, "handlers", "handler", "ota-once");
    assert_eq!(handler["outcome"], "suppressed", "{handler}");
    assert!(
        handler["reason"].as_str().unwrap().contains("never"),
        "{handler}"
    );
    let trace = explain("e4").await["trace"].clone();
    assert_eq!(
        outcome(&trace, "handlers", "handler", "ota-once")["outcome"],
        "not_targeted"
    );

    let first = explain("t1").await["trace"].clone();
    assert_eq!(
        outcome(&first, "rules", "rule", "traffic")["outcome"],
        "not_matched"
    );
    let second = explain("t2").await["trace"].clone();
    assert_eq!(
        outcome(&second, "rules", "rule", "traffic")["outcome"],
        "fired",
        "{second}"
    );

    let missing = kairo
        .http
        .get(format!("{}/v1/events/nope", kairo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Per-rule numbers.
    let listed: Vec<Value> = kairo.get_json("/v1/rules").await;
    let entry = |name: &str| {
        listed
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let ota = entry("ota");
    assert_eq!(
        (
            ota["kind"].as_str(),
            ota["fires"].as_u64(),
            ota["evaluations"].as_u64()
        ),
        (Some("script"), Some(3), Some(3)),
        "{ota}"
    );
    assert!(ota["file"].as_str().unwrap().ends_with("ota.rhai"));
    assert!(ota["lastFiredAt"].is_string());
    assert!(entry("held")["suppressions"].as_u64().unwrap() >= 1);
    let broken = entry("broken");
    assert!(broken["errors"].as_u64().unwrap() >= 1);
    assert!(
        broken["lastError"]
            .as_str()
            .unwrap()
            .contains("broken.rhai:2:"),
        "{broken}"
    );
    let handler = entry("ota-once");
    assert_eq!(
        (
            handler["kind"].as_str(),
            handler["fires"].as_u64(),
            handler["suppressions"].as_u64()
        ),
        (Some("handler"), Some(1), Some(1)),
        "{handler}"
    );
    let metrics = kairo.metrics_text().await;
    assert!(
        metrics.contains(r#"kairo_rule_errors_total{rule="broken"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kairo_rule_fires_total{rule="ota"} 3"#),
        "{metrics}"
    );
}

mod agreement {
    //! `kairo test` (a dry run) and `kairo run` make the same requests.

    use std::sync::Arc;

    use kairo::core::{ActionRequest, Event, ManualClock};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::common::*;

    const TRAFFIC_RULE: &str = r#"
if eventType == "TrafficUsage" && traffic_mib("sim", simId, "day") > 4.0 {
    slack(`over: ${simId}`);
    reevaluate("BEGINNING_OF_NEXT_DAY");
}
"#;

    fn handlers() -> Value {
        json!([{
            "name": "cap", "handlerId": "cap", "status": "active", "targetSimId": "sim-a",
            "ruleConfig": {"type": "SimMonthlyTotalTrafficRule", "properties": {
                "inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalTrafficMegaByte": "6"}},
            "actionConfigList": [{"type": "ChangeSpeedClassAction", "properties": {
                "speedClass": "s1.minimum", "executionDateTimeConst": "IMMEDIATELY"}}]
        }, {
            "name": "ota", "handlerId": "ota", "status": "active", "targetSimId": "sim-b",
            "ruleConfig": {"type": "SimSubscriptionStatusRule",
                "properties": {"inactiveTimeoutDateConst": "NEVER", "targetOtaStatus": "finished"}},
            "actionConfigList": [{"type": "SuspendAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}}]
        }])
    }

    fn event(i: usize, kind: u8, sim: &str, mib: i64) -> Value {
        match kind {
            0 => json!({"id": format!("e{i}"), "eventType": "TrafficUsage", "simId": sim,
                        "payload": {"bytes": mib << 20}}),
            1 => json!({"id": format!("e{i}"), "eventType": "SubscriptionStatus", "simId": sim,
                        "payload": {"otaStatus": "finished"}}),
            _ => json!({"id": format!("e{i}"), "simId": sim, "otaStatus": "finished"}),
        }
    }

    fn sorted(mut requests: Vec<ActionRequest>) -> Vec<String> {
        requests.sort_by_key(|r| (r.event_id.clone(), r.rule.clone(), r.index));
        requests
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect()
    }

    fn live(
        events: &[Value],
        rules: &std::path::Path,
        handlers: &std::path::Path,
        now: i64,
    ) -> Vec<ActionRequest> {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let data = tempfile::tempdir().unwrap();
            let mut config = test_config(rules, data.path());
            config.handlers.dir = handlers.to_path_buf();
            config.dispatch.max_attempts = 1;
            let router = kairo::Router::builder()
                .config(config)
                .clock(Arc::new(ManualClock::new(now)))
                .start()
                .await
                .unwrap();
            let url = format!("http://{}/v1/events", router.local_addr());
            // One batch: the router evaluates it in order, like one by one.
            let answer = reqwest::Client::new()
                .post(url)
                .json(&events)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 202);
            router.idle().await;
            let requests = router.history().into_iter().map(|h| h.request).collect();
            router.shutdown().await.unwrap();
            requests
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn a_dry_run_makes_the_requests_the_live_router_makes(
            steps in proptest::collection::vec((0u8..3, 0usize..2, 0i64..4), 1..14),
        ) {
            let rules = tempfile::tempdir().unwrap();
            std::fs::write(rules.path().join("traffic.rhai"), TRAFFIC_RULE).unwrap();
            std::fs::write(rules.path().join("ota.rhai"), OTA_RULE).unwrap();
            let handler_dir = tempfile::tempdir().unwrap();
            std::fs::write(handler_dir.path().join("h.json"), handlers().to_string()).unwrap();
            let events: Vec<Value> = steps
                .iter()
                .enumerate()
                .map(|(i, (kind, sim, mib))| event(i, *kind, ["sim-a", "sim-b"][*sim], *mib))
                .collect();
            let now = 1_741_608_000_000; // 2025-03-10T12:00:00Z
            let live = live(&events, rules.path(), handler_dir.path(), now);
            let parsed: Vec<Event> = events.iter().map(|e| Event::from_value(e.clone()).unwrap()).collect();
            let config = kairo::KairoConfig::default();
            let dry = kairo::dry_run::dry_run(&config, rules.path(), handler_dir.path(), &parsed, &ManualClock::new(now))
                .unwrap();
            prop_assert_eq!(sorted(dry.requests), sorted(live));
        }
    }
}
