//! The SORACOM watcher against the emulator: a status change and a session
//! each become one event that fires the matching handler or rule once, also
//! across a restart of Kairo between sweeps; the first sweep is a baseline.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const STATUS_RULE: &str = r#"
if eventType == "StatusChanged" { webhook(WEBHOOK, #{ sim: simId, to: payload.newStatus }); }
if eventType == "SessionStatus" { webhook(WEBHOOK, #{ sim: simId, session: payload.sessionStatus, imei: payload.imei }); }
if eventType == "TrafficUsage" { webhook(WEBHOOK, #{ sim: simId, bytes: payload.bytes }); }
if eventType == "Expired" { webhook(WEBHOOK, #{ sim: simId, expired: payload.expiryAction }); }
if eventType == "MonthlyCharge" { webhook(WEBHOOK, #{ charge: payload.amount }); }
if eventType == "SubscriptionStatus" { webhook(WEBHOOK, #{ sim: simId, ota: payload.otaStatus, imsi: imsi }); }
"#;

const MIB: i64 = 1 << 20;

fn suspend_handler(url: &str) -> Value {
    json!({
        "name": "tell on suspend", "handlerId": "on-suspend", "status": "active", "targetSimId": SIM_1,
        "ruleConfig": {"type": "SimStatusAttributeRule",
            "properties": {"inactiveTimeoutDateConst": "IMMEDIATELY", "targetStatus": "suspended"}},
        "actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "url": url, "httpMethod": "POST",
            "contentType": "application/json", "body": "{\"handler\":\"${simId} ${newStatus}\"}"}}]
    })
}

fn traffic_handler(url: &str) -> Value {
    json!({
        "name": "daily cap", "handlerId": "daily-cap", "status": "active", "targetSimId": SIM_1,
        "ruleConfig": {"type": "SimDailyTotalTrafficRule", "properties": {
            "inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "limitTotalTrafficMegaByte": "1"}},
        "actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "url": url, "httpMethod": "POST",
            "contentType": "application/json", "body": "{\"cap\":\"${simId}\"}"}}]
    })
}

fn session_handler(url: &str) -> Value {
    json!({
        "name": "online", "handlerId": "online", "status": "active", "targetImsi": "440103000000002",
        "ruleConfig": {"type": "SubscriberSessionStatusRule", "properties": {
            "inactiveTimeoutDateConst": "IMMEDIATELY", "sessionStatus": "Created"}},
        "actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "url": url, "httpMethod": "POST",
            "contentType": "application/json", "body": "{\"online\":\"${imsi}\"}"}}]
    })
}

fn add_traffic(soracom: &Soracom, sim: &str, bytes: i64) -> impl std::future::Future<Output = ()> {
    let url = format!("{}/_emulator/sims/{sim}/traffic", soracom.url);
    async move {
        let answer = reqwest::Client::new()
            .post(url)
            .json(&json!({"bytes": bytes}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204);
    }
}

struct Setup {
    rules: tempfile::TempDir,
    handlers: tempfile::TempDir,
    data: tempfile::TempDir,
}

async fn start(setup: &Setup, soracom: &Soracom) -> kairo::RunningRouter {
    let mut config = test_config(setup.rules.path(), setup.data.path());
    use_soracom(&mut config, soracom);
    config.handlers.dir = setup.handlers.path().to_path_buf();
    config.soracom.watch.enabled = true;
    config.soracom.watch.interval_seconds = 1;
    config.soracom.watch.page_size = 1;
    kairo::Router::builder()
        .config(config)
        .start()
        .await
        .unwrap()
}

async fn sweeps(router: &kairo::RunningRouter) -> u64 {
    let url = format!("http://{}/v1/sources", router.local_addr());
    let sources: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    sources["soracomWatch"]["sweeps"].as_u64().unwrap_or(0)
}

async fn wait_sweeps(router: &kairo::RunningRouter, at_least: u64) {
    for _ in 0..200 {
        if sweeps(router).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the watcher did not finish {at_least} sweep(s)");
}

/// SIM_1's added planX3 subscription (IMSI 295050000000001) in `status`.
fn set_ota(soracom: &Soracom, status: &str, at: i64) {
    soracom.emulator.with_state(|s| {
        let sim = s.sims.get_mut(SIM_1).unwrap();
        sim.profiles = Some(
            json!({"8981100000000000001": {"primaryImsi": "440103000000001", "subscribers": {
            "440103000000001": {"subscription": "plan01s", "status": "active"},
            "295050000000001": {"subscription": "planX3", "status": status}}}}),
        );
        sim.last_modified_time = at;
    });
}

/// Changes a SIM through the emulator's control, as SORACOM would.
async fn set_state(soracom: &Soracom, sim: &str, change: Value) {
    let url = format!("{}/_emulator/sims/{sim}/state", soracom.url);
    let answer = reqwest::Client::new()
        .post(url)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_become_events_once_after_a_baseline_and_across_a_restart() {
    let soracom = soracom(false).await;
    let target = catcher().await;
    let setup = Setup {
        rules: tempfile::tempdir().unwrap(),
        handlers: tempfile::tempdir().unwrap(),
        data: tempfile::tempdir().unwrap(),
    };
    let rule = STATUS_RULE.replace("WEBHOOK", &format!("\"{}\"", target.url));
    std::fs::write(setup.rules.path().join("watch.rhai"), rule).unwrap();
    let handlers = json!([
        suspend_handler(&target.url),
        traffic_handler(&target.url),
        session_handler(&target.url)
    ])
    .to_string();
    std::fs::write(setup.handlers.path().join("watched.json"), handlers).unwrap();
    soracom.emulator.with_state(|s| {
        s.sims.get_mut(SIM_1).unwrap().imsi = Some("440103000000001".into());
        s.sims.get_mut(SIM_2).unwrap().imsi = Some("440103000000002".into());
    });

    let router = start(&setup, &soracom).await;
    wait_sweeps(&router, 2).await;
    assert!(
        target.bodies().is_empty(),
        "the first sweep is a baseline: {:?}",
        target.bodies()
    );

    set_state(&soracom, SIM_1, json!({"status": "suspended"})).await;
    let session = json!({"online": true, "imei": "356000000000001"});
    let control = format!("{}/_emulator/sims/{SIM_2}/session", soracom.url);
    let opened = reqwest::Client::new().post(control).json(&session).send();
    assert!(opened.await.unwrap().status().is_success());
    add_traffic(&soracom, SIM_1, 2 * MIB).await;
    let expiry = chrono::Utc::now().timestamp_millis() + 300;
    soracom.emulator.with_state(|s| {
        let sim = s.sims.get_mut(SIM_2).unwrap();
        (sim.expiry_time, sim.expiry_action) = (Some(expiry), Some("doNothing".into()));
        s.charge = 1200.0;
    });
    set_ota(&soracom, "shipped", 1_500);
    let seen = sweeps(&router).await;
    wait_sweeps(&router, seen + 3).await;
    set_ota(&soracom, "ready", 1_600);
    let seen = sweeps(&router).await;
    wait_sweeps(&router, seen + 2).await;
    router.idle().await;
    let bodies = target.bodies();
    assert_eq!(bodies.len(), 10, "{bodies:#?}");
    let expected = [
        json!({"sim": SIM_1, "to": "suspended"}),
        json!({"handler": format!("{SIM_1} suspended")}),
        json!({"sim": SIM_2, "session": "Created", "imei": "356000000000001"}),
        json!({"sim": SIM_1, "bytes": 2 * MIB}),
        json!({"cap": SIM_1}),
        json!({"sim": SIM_2, "expired": "doNothing"}),
        json!({"charge": 1200.0}),
        json!({"online": "440103000000002"}),
        json!({"sim": SIM_1, "ota": "started", "imsi": "440103000000001"}),
        json!({"sim": SIM_1, "ota": "finished", "imsi": "295050000000001"}),
    ];
    for body in &expected {
        assert!(bodies.contains(body), "{body} in {bodies:#?}");
    }

    router.shutdown().await.unwrap();
    set_state(&soracom, SIM_1, json!({"status": "active"})).await;
    add_traffic(&soracom, SIM_1, MIB).await;
    let router = start(&setup, &soracom).await;
    wait_sweeps(&router, 2).await;
    router.idle().await;
    let bodies = target.bodies();
    assert_eq!(
        bodies.len(),
        12,
        "the changes made while Kairo was down, once: {bodies:#?}"
    );
    assert!(
        bodies[10..].contains(&json!({"sim": SIM_1, "to": "active"})),
        "{bodies:#?}"
    );
    assert!(
        bodies[10..].contains(&json!({"sim": SIM_1, "bytes": MIB})),
        "{bodies:#?}"
    );
    router.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_emulator_keeps_status_history_and_session_events() {
    let soracom = soracom(false).await;
    set_state(&soracom, SIM_1, json!({"status": "suspended"})).await;
    let control = format!("{}/_emulator/sims/{SIM_1}/session", soracom.url);
    let http = reqwest::Client::new();
    for online in [true, false] {
        let change = json!({"online": online, "imei": "356000000000009"});
        http.post(&control).json(&change).send().await.unwrap();
    }
    let mut config = kairo::KairoConfig::default();
    use_soracom(&mut config, &soracom);
    let client = kairo_soracom::SoracomClient::new(http, config.soracom);
    let (history_path, sessions_path) = (
        format!("/v1/sims/{SIM_1}/statuses/history"),
        format!("/v1/sims/{SIM_1}/events/sessions"),
    );
    let history = client
        .call(reqwest::Method::GET, &history_path, None)
        .await
        .unwrap();
    assert_eq!(history[0]["status"], "suspended", "{history}");
    let sessions = client
        .call(reqwest::Method::GET, &sessions_path, None)
        .await
        .unwrap();
    assert_eq!(sessions[0]["event"], "Deleted", "newest first: {sessions}");
    assert_eq!(sessions[1]["event"], "Created");
    assert_eq!(sessions[1]["imei"], "356000000000009");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_sweep_waits_as_soracom_says_then_goes_on() {
    let soracom = soracom(false).await;
    let setup = Setup {
        rules: tempfile::tempdir().unwrap(),
        handlers: tempfile::tempdir().unwrap(),
        data: tempfile::tempdir().unwrap(),
    };
    let fault = json!({"path": "/v1/sims", "status": 429, "count": 1, "retryAfterSeconds": 2});
    let url = format!("{}/_emulator/faults", soracom.url);
    reqwest::Client::new()
        .post(url)
        .json(&fault)
        .send()
        .await
        .unwrap();
    let router = start(&setup, &soracom).await;
    let started = std::time::Instant::now();
    wait_sweeps(&router, 1).await;
    let waited = started.elapsed();
    let url = format!("http://{}/v1/sources", router.local_addr());
    let sources: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(sources["soracomWatch"]["errors"], 1, "{sources}");
    let error = sources["soracomWatch"]["lastError"].as_str().unwrap();
    assert!(error.contains("429"), "{error}");
    assert!(
        waited >= Duration::from_secs(2),
        "waited {waited:?}, not the 2 s SORACOM asked for"
    );
    router.shutdown().await.unwrap();
}
