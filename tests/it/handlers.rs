//! SORACOM event handlers end to end: loading and reloading handler JSON,
//! web requests with variables, NEVER, durable counters and delayed actions
//! across a restart (with an injected clock).

use std::sync::Arc;
use std::time::Duration;

use kairo::core::ManualClock;
use serde_json::{Value, json};

use crate::common::*;

fn ota_handler(url: &str) -> Value {
    json!({
        "name": "move-on-ota", "handlerId": "ota-1", "status": "active", "targetGroupId": "group-from-id",
        "ruleConfig": {"type": "SimSubscriptionStatusRule",
            "properties": {"inactiveTimeoutDateConst": "NEVER", "targetOtaStatus": "finished"}},
        "actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "url": url, "httpMethod": "POST",
            "contentType": "application/json", "headers": "{\"contentType\":\"application/json; charset=utf-8\"}",
            "body": "{\"simId\":\"${simId}\",\"otaStatus\":\"${otaStatus}\"}"}}]
    })
}

/// A router on `config` whose time is `clock`.
async fn start_with_clock(
    config: kairo::KairoConfig,
    clock: Arc<ManualClock>,
) -> kairo::RunningRouter {
    kairo::Router::builder()
        .config(config)
        .clock(clock)
        .start()
        .await
        .unwrap()
}

fn ota_event(id: &str, sim: &str) -> String {
    json!({"id": id, "eventType": "SubscriptionStatus", "simId": sim, "groupId": "group-from-id",
        "payload": {"otaStatus": "finished", "subscription": "planX3"}})
    .to_string()
}

#[tokio::test]
async fn handler_files_are_loaded_on_change_and_fire_once_per_sim() {
    let target = catcher().await;
    let handlers = tempfile::tempdir().unwrap();
    let dir = handlers.path().to_path_buf();
    let kairo = start_kairo(&[], |c| {
        c.rules.watch = true;
        c.handlers.dir = dir.clone();
    })
    .await;
    std::fs::write(
        dir.join("ota.json"),
        serde_json::to_string(&[ota_handler(&target.url)]).unwrap(),
    )
    .unwrap();
    // The watcher picks the file up shortly; probe until the handler acts.
    let mut fired = false;
    for attempt in 0..200 {
        kairo
            .post(&ota_event(&format!("probe-{attempt}"), "s-probe"))
            .await;
        kairo.router.idle().await;
        if !target.bodies().is_empty() {
            fired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fired, "the handler written after start was loaded");
    let before = target.bodies().len();
    kairo.post(&ota_event("a", "s-1")).await;
    kairo.post(&ota_event("b", "s-1")).await;
    kairo.post(&ota_event("c", "s-2")).await;
    kairo.router.idle().await;
    let bodies = target.bodies()[before..].to_vec();
    assert_eq!(
        bodies,
        vec![
            json!({"simId": "s-1", "otaStatus": "finished"}),
            json!({"simId": "s-2", "otaStatus": "finished"})
        ],
        "NEVER: once per SIM"
    );
    assert_eq!(
        target.requests()[before].0["content-type"],
        "application/json"
    );
}

#[tokio::test]
async fn counters_and_delayed_actions_survive_a_restart() {
    let soracom = soracom(false).await;
    let rules = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let handlers = tempfile::tempdir().unwrap();
    let handler = json!({
        "name": "throttle", "handlerId": "t-1", "status": "active", "targetSimId": SIM_1,
        "ruleConfig": {"type": "SimDailyTotalTrafficRule", "properties": {"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "limitTotalTrafficMegaByte": "10"}},
        "actionConfigList": [
            {"type": "ChangeSpeedClassAction", "properties": {"executionDateTimeConst": "IMMEDIATELY", "speedClass": "s1.minimum"}},
            {"type": "ChangeSpeedClassAction", "properties": {"executionDateTimeConst": "BEGINNING_OF_NEXT_DAY", "speedClass": "s1.standard"}}
        ]
    });
    std::fs::write(handlers.path().join("t.json"), handler.to_string()).unwrap();
    let mut config = test_config(rules.path(), data.path());
    config.handlers.dir = handlers.path().to_path_buf();
    use_soracom(&mut config, &soracom);
    let start = chrono::DateTime::parse_from_rfc3339("2025-03-10T20:00:00Z")
        .unwrap()
        .timestamp_millis();
    let traffic = |id: &str, mib: i64| {
        json!({"id": id, "eventType": "TrafficUsage", "simId": SIM_1, "imsi": "440100000000001", "payload": {"bytes": mib * 1024 * 1024}}).to_string()
    };
    let http = reqwest::Client::new();
    let post = |url: String, body: String| {
        let http = http.clone();
        async move {
            http.post(format!("{url}/v1/events"))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };

    // First run: 6 MiB, restart, then 5 MiB more the same UTC day crosses 10 MiB.
    let clock = Arc::new(ManualClock::new(start));
    let router = start_with_clock(config.clone(), clock.clone()).await;
    assert_eq!(
        post(format!("http://{}", router.local_addr()), traffic("t1", 6)).await,
        202
    );
    router.idle().await;
    router.shutdown().await.unwrap();

    clock.advance(60_000);
    let router = start_with_clock(config.clone(), clock.clone()).await;
    assert_eq!(
        post(format!("http://{}", router.local_addr()), traffic("t2", 5)).await,
        202
    );
    eventually("speed class lowered", Duration::from_secs(10), || {
        soracom
            .emulator
            .sim(SIM_1)
            .is_some_and(|s| s.speed_class == "s1.minimum")
    })
    .await;
    let pending = router.store().outbox().unwrap();
    assert_eq!(pending.len(), 1, "the restore waits for the next UTC day");
    let due = chrono::DateTime::parse_from_rfc3339("2025-03-11T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    assert_eq!(pending[0].request.not_before_ms, Some(due));
    router.shutdown().await.unwrap();
    assert_eq!(
        soracom.emulator.sim(SIM_1).unwrap().speed_class,
        "s1.minimum"
    );

    // After the restart, at the next UTC day, the delayed action runs.
    clock.set(due + 1_000);
    let router = start_with_clock(config, clock).await;
    router.idle().await;
    assert_eq!(
        soracom.emulator.sim(SIM_1).unwrap().speed_class,
        "s1.standard"
    );
    let calls = soracom
        .emulator
        .requests_to("POST", &format!("/v1/sims/{SIM_1}/update_speed_class"));
    assert_eq!(calls.len(), 2, "each action once");
}

#[test]
fn check_names_file_handler_and_path_of_broken_handlers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::create_dir(dir.path().join("handlers")).unwrap();
    let broken = json!([{
        "name": "bad", "status": "active", "targetImsi": "440100000000001",
        "ruleConfig": {"type": "SubscriberDailyTrafficRule", "properties": {"inactiveTimeoutDateConst": "IMMEDIATELY", "limitTotalTrafficMegaByte": "10"}},
        "actionConfigList": [{"type": "SuspendAction", "properties": {"executionDateTimeConst": "NEVER", "executionOffsetMinutes": "5"}}]
    }]);
    std::fs::write(dir.path().join("handlers/h.json"), broken.to_string()).unwrap();
    let output = std::process::Command::new(kairo_bin())
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("handlers/h.json: handler \"bad\": ruleConfig.properties.inactiveTimeoutDateConst: SubscriberDailyTrafficRule cannot use IMMEDIATELY"),
        "{stderr}"
    );
    assert!(stderr.contains("handler \"bad\": actionConfigList[0].properties.executionOffsetMinutes: cannot be given with NEVER"), "{stderr}");
}

#[tokio::test]
async fn scripts_read_counters_and_declare_their_own_reevaluation() {
    let slack = catcher().await;
    let rules = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("daily.rhai"),
        r#"
if eventType == "TrafficUsage" && traffic_mib("sim", simId, "day") > 10.0 {
    slack(`SIM ${simId} used more than 10 MiB today`);
    reevaluate("BEGINNING_OF_NEXT_DAY");
}
"#,
    )
    .unwrap();
    let mut config = test_config(rules.path(), data.path());
    config.plugins.slack.webhook_url = Some(slack.url.clone());
    let day = chrono::DateTime::parse_from_rfc3339("2025-03-10T12:00:00Z")
        .unwrap()
        .timestamp_millis();
    let clock = Arc::new(ManualClock::new(day));
    let router = start_with_clock(config, clock.clone()).await;
    let url = format!("http://{}/v1/events", router.local_addr());
    let http = reqwest::Client::new();
    let mut n = 0;
    let mut traffic = async |mib: i64| {
        n += 1;
        let body = json!({"id": format!("t{n}"), "eventType": "TrafficUsage", "simId": "s1", "payload": {"bytes": mib * 1024 * 1024}});
        http.post(&url).body(body.to_string()).send().await.unwrap();
        router.idle().await;
        slack.bodies().len()
    };
    assert_eq!(traffic(6).await, 0);
    assert_eq!(traffic(6).await, 1, "over 10 MiB today");
    assert_eq!(traffic(6).await, 1, "held back until the next UTC day");
    clock.set(day + 12 * 3_600_000 + 60_000);
    assert_eq!(traffic(6).await, 1, "a new day counts from zero");
    assert_eq!(traffic(6).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_is_looked_up_and_imsis_are_mapped_to_sims() {
    let soracom = soracom(true).await;
    let handlers = tempfile::tempdir().unwrap();
    let group_rule = json!({
        "name": "group-status", "status": "active", "targetGroupId": "group-from-id",
        "ruleConfig": {"type": "SimStatusAttributeRule", "properties": {"inactiveTimeoutDateConst": "IMMEDIATELY"}},
        "actionConfigList": [{"type": "SuspendAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}}]
    });
    let sim_rule = json!({
        "name": "sim-expired", "status": "active", "targetSimId": SIM_2,
        "ruleConfig": {"type": "SimExpiredRule", "properties": {"inactiveTimeoutDateConst": "IMMEDIATELY"}},
        "actionConfigList": [{"type": "ActivationAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}}]
    });
    std::fs::write(
        handlers.path().join("h.json"),
        json!([group_rule, sim_rule]).to_string(),
    )
    .unwrap();
    let kairo = start_kairo(&[], |c| {
        use_soracom(c, &soracom);
        c.handlers.dir = handlers.path().to_path_buf();
    })
    .await;
    let lookups = || {
        soracom
            .emulator
            .requests_to("GET", &format!("/v1/sims/{SIM_1}"))
            .len()
    };

    // No groupId on the event: the SIM's group comes from the SORACOM API, once.
    for id in ["s1", "s2"] {
        kairo
            .post(&json!({"id": id, "eventType": "StatusChanged", "simId": SIM_1, "payload": {"oldStatus": "active", "newStatus": "inactive"}}).to_string())
            .await;
        kairo.router.idle().await;
    }
    assert_eq!(lookups(), 1, "looked up once, then remembered");
    let suspends = soracom
        .emulator
        .requests_to("POST", &format!("/v1/sims/{SIM_1}/suspend"));
    assert_eq!(suspends.len(), 2, "the group handler fired for both events");
    assert_eq!(
        soracom.emulator.requests_to("POST", "/v1/auth").len(),
        1,
        "the lookups and the actions share one SORACOM session"
    );

    // An event naming IMSI and SIM teaches the mapping; a later IMSI-only event reaches the SIM rule.
    kairo
        .post(
            &json!({"id": "m", "eventType": "Hello", "imsi": "440100000000002", "simId": SIM_2})
                .to_string(),
        )
        .await;
    kairo
        .post(&json!({"id": "x", "eventType": "Expired", "imsi": "440100000000002"}).to_string())
        .await;
    kairo.router.idle().await;
    assert_eq!(
        soracom
            .emulator
            .requests_to("POST", &format!("/v1/sims/{SIM_2}/activate"))
            .len(),
        1
    );
}

#[tokio::test]
async fn one_unsupported_handler_does_not_keep_the_others_in_its_file_from_loading() {
    let target = catcher().await;
    let handlers = tempfile::tempdir().unwrap();
    let mut lambda = ota_handler(&target.url);
    lambda["handlerId"] = json!("lambda-1");
    lambda["actionConfigList"] = json!([{"type": "InvokeAWSLambdaAction", "properties": {
        "executionDateTimeConst": "IMMEDIATELY", "endpoint": "https://lambda.example",
        "functionName": "f", "accessKey": "k", "secretAccessKey": "s"}}]);
    std::fs::write(
        handlers.path().join("mixed.json"),
        serde_json::to_string(&[lambda, ota_handler(&target.url)]).unwrap(),
    )
    .unwrap();
    let dir = handlers.path().to_path_buf();
    let kairo = start_kairo(&[], |c| c.handlers.dir = dir).await;
    kairo.post(&ota_event("a", "s-1")).await;
    kairo.router.idle().await;
    assert_eq!(target.bodies().len(), 1, "the supported handler fired");

    let (loaded, errors) = kairo::handlers::check_dir(handlers.path());
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        errors.len(),
        3,
        "accessKey, secretAccessKey, credentialsId: {errors:?}"
    );
    assert!(
        errors[0].contains("accessKey: deprecated by SORACOM"),
        "{errors:?}"
    );
}
