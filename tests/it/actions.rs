//! Action behaviour against real servers: retries, token refresh, permanent errors.

use std::time::{Duration, Instant};

use kairo_soracom::emulator::Fault;
use serde_json::json;

use crate::common::*;

const SET_GROUP_RULE: &str = r#"set_group(simId, "group-to-id");"#;

fn set_group_path(sim: &str) -> String {
    format!("/v1/sims/{sim}/set_group")
}

#[tokio::test]
async fn token_is_refreshed_after_a_401() {
    let soracom = soracom(true).await;
    let kairo = start_kairo(&[("move.rhai", SET_GROUP_RULE)], |c| {
        use_soracom(c, &soracom)
    })
    .await;

    kairo.post(&format!(r#"{{"simId": "{SIM_1}"}}"#)).await;
    kairo.router.idle().await;
    soracom.emulator.revoke_tokens();
    kairo.post(&format!(r#"{{"simId": "{SIM_2}"}}"#)).await;
    kairo.router.idle().await;

    let history = kairo.router.history();
    assert!(
        history.iter().all(|r| r.succeeded && r.attempts == 1),
        "{history:?}"
    );
    let auths = soracom.emulator.requests_to("POST", "/v1/auth");
    assert_eq!(auths.len(), 2, "one login, one re-login after the 401");
    let second = soracom.emulator.requests_to("POST", &set_group_path(SIM_2));
    assert_eq!(
        second.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![401, 200],
        "the stale token was refused, then the call was repeated with a new token"
    );
    assert_eq!(
        soracom.emulator.sim(SIM_2).unwrap().group_id.as_deref(),
        Some("group-to-id")
    );
}

#[tokio::test]
async fn server_error_is_retried_until_success() {
    let soracom = soracom(true).await;
    soracom.emulator.inject(Fault {
        path: set_group_path(SIM_1),
        status: 500,
        count: 2,
        retry_after_seconds: None,
    });
    let kairo = start_kairo(&[("move.rhai", SET_GROUP_RULE)], |c| {
        use_soracom(c, &soracom)
    })
    .await;
    kairo.post(&format!(r#"{{"simId": "{SIM_1}"}}"#)).await;
    kairo.router.idle().await;

    let calls = soracom.emulator.requests_to("POST", &set_group_path(SIM_1));
    assert_eq!(
        calls.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 500, 200]
    );
    let record = &kairo.router.history()[0];
    assert!(record.succeeded);
    assert_eq!(record.attempts, 3);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let soracom = soracom(true).await;
    let kairo = start_kairo(&[("move.rhai", SET_GROUP_RULE)], |c| {
        use_soracom(c, &soracom)
    })
    .await;
    kairo.post(r#"{"simId": "8981100000000009999"}"#).await;
    kairo.router.idle().await;

    let calls = soracom
        .emulator
        .requests_to("POST", &set_group_path("8981100000000009999"));
    assert_eq!(calls.len(), 1, "a 404 is final");
    let record = &kairo.router.history()[0];
    assert!(!record.succeeded);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.error_class.as_deref(), Some("permanent"));
    assert!(
        record.error.as_deref().unwrap().contains("404"),
        "{record:?}"
    );
}

#[tokio::test]
async fn retries_stop_after_max_attempts() {
    let soracom = soracom(true).await;
    soracom.emulator.inject(Fault {
        path: set_group_path(SIM_1),
        status: 503,
        count: 10,
        retry_after_seconds: None,
    });
    let kairo = start_kairo(&[("move.rhai", SET_GROUP_RULE)], |c| {
        use_soracom(c, &soracom);
        c.dispatch.max_attempts = 3;
    })
    .await;
    kairo.post(&format!(r#"{{"simId": "{SIM_1}"}}"#)).await;
    kairo.router.idle().await;
    assert_eq!(
        soracom
            .emulator
            .requests_to("POST", &set_group_path(SIM_1))
            .len(),
        3
    );
    let record = &kairo.router.history()[0];
    assert!(!record.succeeded);
    assert_eq!(record.error_class.as_deref(), Some("retryable"));
    assert!(record.error.as_deref().unwrap().contains("503"));
}

#[tokio::test]
async fn rate_limit_wait_from_soracom_is_honoured() {
    let soracom = soracom(true).await;
    soracom.emulator.inject(Fault {
        path: set_group_path(SIM_1),
        status: 429,
        count: 1,
        retry_after_seconds: Some(1),
    });
    let kairo = start_kairo(&[("move.rhai", SET_GROUP_RULE)], |c| {
        use_soracom(c, &soracom)
    })
    .await;
    let started = Instant::now();
    kairo.post(&format!(r#"{{"simId": "{SIM_1}"}}"#)).await;
    kairo.router.idle().await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited the X-Soracom-Ratelimit-Seconds-Before-Refresh, not the 10 ms backoff"
    );
    let record = &kairo.router.history()[0];
    assert!(record.succeeded);
    assert_eq!(record.attempts, 2);
}

#[tokio::test]
async fn emulator_rate_limit_answers_429_with_soracom_headers() {
    let soracom = soracom(true).await;
    soracom
        .emulator
        .with_state(|s| s.rate_limit_per_minute = Some(1));
    let http = reqwest::Client::new();
    let auth: serde_json::Value = http
        .post(format!("{}/v1/auth", soracom.url))
        .json(&json!({"authKeyId": "keyId-kairo-emulator", "authKey": "secret-kairo-emulator"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let get = || {
        http.get(format!("{}/v1/sims/{SIM_1}", soracom.url))
            .header("X-Soracom-API-Key", auth["apiKey"].as_str().unwrap())
            .header("X-Soracom-Token", auth["token"].as_str().unwrap())
            .send()
    };
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["X-Soracom-Ratelimit-Remaining"], "0");
    let second = get().await.unwrap();
    assert_eq!(second.status(), 429);
    assert!(
        second
            .headers()
            .contains_key("X-Soracom-Ratelimit-Seconds-Before-Refresh")
    );
    let body: serde_json::Value = second.json().await.unwrap();
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn missing_credentials_fail_with_the_keys_to_set() {
    let soracom = soracom(true).await;
    let kairo = start_kairo(&[("move.rhai", SET_GROUP_RULE)], |c| {
        c.soracom.endpoint = soracom.url.clone();
    })
    .await;
    kairo.post(&format!(r#"{{"simId": "{SIM_1}"}}"#)).await;
    kairo.router.idle().await;
    let record = &kairo.router.history()[0];
    assert!(!record.succeeded);
    assert_eq!(record.attempts, 1, "missing configuration is not retried");
    let error = record.error.as_deref().unwrap();
    assert!(
        error.contains("soracom.auth_key_id")
            && error.contains("soracom.auth_key")
            && error.contains("KAIRO_SORACOM__AUTH_KEY"),
        "{error}"
    );
    assert!(soracom.emulator.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn wrong_credentials_are_reported_as_authentication_failure() {
    let soracom = soracom(true).await;
    let kairo = start_kairo(&[("move.rhai", SET_GROUP_RULE)], |c| {
        use_soracom(c, &soracom);
        c.soracom.auth_key = Some("secret-wrong".into());
    })
    .await;
    kairo.post(&format!(r#"{{"simId": "{SIM_1}"}}"#)).await;
    kairo.router.idle().await;
    let record = &kairo.router.history()[0];
    assert_eq!(record.attempts, 1);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("authentication failed"),
        "{record:?}"
    );
}

#[tokio::test]
async fn speed_class_status_and_imei_actions_reach_the_api() {
    let soracom = soracom(true).await;
    let rule = r#"
        set_speed_class(simId, "s1.minimum");
        suspend(simId);
        set_imei_lock(simId, "356000000000001");
        unset_group(simId);
    "#;
    let kairo = start_kairo(&[("ops.rhai", rule)], |c| use_soracom(c, &soracom)).await;
    kairo.post(&format!(r#"{{"simId": "{SIM_1}"}}"#)).await;
    kairo.router.idle().await;
    let sim = soracom.emulator.sim(SIM_1).unwrap();
    assert_eq!(sim.speed_class, "s1.minimum");
    assert_eq!(sim.status, "suspended");
    assert_eq!(sim.imei_lock, Some(json!({"imei": "356000000000001"})));
    assert_eq!(sim.group_id, None);
    assert!(kairo.router.history().iter().all(|r| r.succeeded));
}

#[tokio::test]
async fn invalid_speed_class_is_a_permanent_400() {
    let soracom = soracom(true).await;
    let kairo = start_kairo(
        &[("s.rhai", r#"set_speed_class(simId, "s1.warp");"#)],
        |c| use_soracom(c, &soracom),
    )
    .await;
    kairo.post(&format!(r#"{{"simId": "{SIM_1}"}}"#)).await;
    kairo.router.idle().await;
    let record = &kairo.router.history()[0];
    assert_eq!((record.succeeded, record.attempts), (false, 1));
    assert!(record.error.as_deref().unwrap().contains("400"));
}

#[tokio::test]
async fn slack_503_is_retried_and_webhook_sends_headers_and_json() {
    let slack = catcher().await;
    let target = catcher().await;
    slack.fail_with(&[503]);
    let rule = format!(
        r#"
        slack("hello");
        webhook(#{{ url: "{}", method: "PUT", headers: #{{ "X-Fleet": "north" }}, body: #{{ simId: simId }} }});
        "#,
        target.url
    );
    let kairo = start_kairo(&[("notify.rhai", &rule)], |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    kairo.post(r#"{"simId": "s-7"}"#).await;
    kairo.router.idle().await;
    assert_eq!(
        slack.bodies(),
        vec![json!({"text": "hello"}), json!({"text": "hello"})]
    );
    let requests = target.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0["x-fleet"], "north");
    assert_eq!(requests[0].0["content-type"], "application/json");
    assert_eq!(requests[0].1, json!({"simId": "s-7"}));
    let slack_record = kairo
        .router
        .history()
        .into_iter()
        .find(|r| r.request.action == "slack")
        .unwrap();
    assert_eq!(slack_record.attempts, 2);
}

#[tokio::test]
async fn unknown_action_fails_clearly() {
    let kairo = start_kairo(
        &[("x.rhai", r#"action("teleport", #{ to: "mars" });"#)],
        |_| {},
    )
    .await;
    kairo.post("{}").await;
    kairo.router.idle().await;
    let record = &kairo.router.history()[0];
    assert!(!record.succeeded);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("unknown action `teleport`")
    );
}
