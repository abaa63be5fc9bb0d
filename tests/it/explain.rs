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
}
