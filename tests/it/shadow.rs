//! Shadow mode: a `NAME.shadow.rhai` rule (or `NAME.shadow.json` handler)
//! runs on live traffic, its requests are recorded and never performed;
//! renaming the file promotes it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const SHADOW_OTA: &str = r#"
if payload.otaStatus == "finished" {
    set_group(simId, "group-v2");
}
"#;

#[tokio::test]
async fn a_shadow_rule_is_recorded_beside_its_live_twin_never_performed_and_promoted_by_renaming() {
    let soracom = soracom(false).await;
    let kairo = start_kairo(
        &[("ota.rhai", OTA_RULE), ("ota.shadow.rhai", SHADOW_OTA)],
        |config| {
            use_soracom(config, &soracom);
            config.rules.watch = true;
        },
    )
    .await;
    kairo
        .post(&format!(
            r#"{{"id": "first", "simId": "{SIM_1}", "otaStatus": "finished"}}"#
        ))
        .await;
    kairo.router.idle().await;

    let set_group = format!("/v1/sims/{SIM_1}/set_group");
    let calls = soracom.emulator.requests_to("POST", &set_group);
    assert_eq!(calls.len(), 1, "only the live rule acts");
    assert_eq!(calls[0].body, json!({"groupId": "group-to-id"}));

    let history = kairo.router.history();
    let shadowed: Vec<_> = history.iter().filter(|h| h.request.shadow).collect();
    assert_eq!(shadowed.len(), 1, "{history:#?}");
    assert_eq!(shadowed[0].request.rule, "ota");
    assert_eq!(shadowed[0].request.params["groupId"], "group-v2");
    let listed: Vec<Value> = kairo.get_json("/v1/history").await;
    let statuses: Vec<&str> = listed
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"shadow") && statuses.contains(&"succeeded"),
        "{statuses:?}"
    );

    let explained: Value = kairo.get_json("/v1/events/first").await;
    let shadow_trace: Vec<&Value> = (explained["trace"]["rules"].as_array().unwrap().iter())
        .filter(|r| r["rule"] == "ota")
        .collect();
    assert_eq!(shadow_trace.len(), 2, "{explained:#}");
    assert_eq!(shadow_trace[1]["shadow"], true);
    assert_eq!(shadow_trace[1]["outcome"], "fired");
    assert_eq!(
        shadow_trace[1]["requests"][0]["params"]["groupId"],
        "group-v2"
    );
    let statuses: Vec<&str> = (explained["actions"].as_array().unwrap().iter())
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "shadow").count(),
        1,
        "{explained:#}"
    );

    let rules: Vec<Value> = kairo.get_json("/v1/rules").await;
    let shadow_rule = rules
        .iter()
        .find(|r| r["shadow"] == true)
        .expect("listed in shadow");
    assert_eq!(shadow_rule["name"], "ota");
    assert_eq!(shadow_rule["fires"], 1, "its would-be fires");
    let live_rule = rules
        .iter()
        .find(|r| r["name"] == "ota" && r["shadow"] == false)
        .unwrap();
    assert_eq!(live_rule["fires"], 1);

    std::fs::rename(
        kairo.rules_path().join("ota.shadow.rhai"),
        kairo.rules_path().join("ota.rhai"),
    )
    .unwrap();
    let promoted = async {
        for n in 0..200 {
            let body =
                format!(r#"{{"id": "after-{n}", "simId": "{SIM_2}", "otaStatus": "finished"}}"#);
            kairo.post(&body).await;
            kairo.router.idle().await;
            let moved = soracom.emulator.sim(SIM_2).and_then(|s| s.group_id);
            if moved.as_deref() == Some("group-v2") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    };
    assert!(promoted.await, "after the rename the rule acts");
}

#[tokio::test]
async fn a_shadow_handler_records_its_actions_and_performs_none() {
    let soracom = soracom(false).await;
    let handlers = tempfile::tempdir().unwrap();
    let handler = json!({
        "name": "suspend on OTA", "handlerId": "ota-suspend", "status": "active",
        "targetSimId": SIM_1,
        "ruleConfig": {"type": "SimSubscriptionStatusRule",
            "properties": {"inactiveTimeoutDateConst": "NEVER", "targetOtaStatus": "finished"}},
        "actionConfigList": [{"type": "SuspendAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}}]
    });
    std::fs::write(handlers.path().join("ota.shadow.json"), handler.to_string()).unwrap();
    let dir = handlers.path().to_path_buf();
    let kairo = start_kairo(&[], |config| {
        use_soracom(config, &soracom);
        config.handlers.dir = dir;
    })
    .await;
    let event = format!(
        r#"{{"id": "h1", "eventType": "SubscriptionStatus", "simId": "{SIM_1}", "payload": {{"otaStatus": "finished"}}}}"#
    );
    kairo.post(&event).await;
    kairo.router.idle().await;
    assert!(
        soracom
            .emulator
            .requests_to("POST", &format!("/v1/sims/{SIM_1}/suspend"))
            .is_empty()
    );
    let history = kairo.router.history();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0].status, kairo_store::HistoryStatus::Shadow);
    assert_eq!(history[0].request.rule, "handler:ota-suspend");
    let rules: Vec<Value> = kairo.get_json("/v1/rules").await;
    assert_eq!(rules[0]["shadow"], true);
    assert_eq!(rules[0]["fires"], 1);
}
