//! The canonical scenario: a subscription OTA finishes, the SIM moves group and Slack hears of it.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

/// The OTA rule against a strict emulator and a Slack catcher.
async fn ota_router() -> (Soracom, Catcher, Kairo) {
    let soracom = soracom(true).await;
    let slack = catcher().await;
    let kairo = start_kairo(&[("ota.rhai", OTA_RULE)], |config| {
        use_soracom(config, &soracom);
        config.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    (soracom, slack, kairo)
}

#[tokio::test]
async fn ota_finished_moves_sim_to_new_group_and_tells_slack_once() {
    let (soracom, slack, kairo) = ota_router().await;

    let (status, body) = kairo
        .post(&format!(
            r#"{{"simId": "{SIM_1}", "otaStatus": "finished"}}"#
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 1);
    kairo.router.idle().await;

    let sim = soracom.emulator.sim(SIM_1).unwrap();
    assert_eq!(sim.group_id.as_deref(), Some("group-to-id"));
    let set_group = soracom
        .emulator
        .requests_to("POST", &format!("/v1/sims/{SIM_1}/set_group"));
    assert_eq!(set_group.len(), 1, "exactly one set_group call");
    assert_eq!(set_group[0].body, json!({"groupId": "group-to-id"}));
    assert_eq!(set_group[0].status, 200);
    assert_eq!(
        slack.bodies(),
        vec![json!({"text": format!("OTA finished for {SIM_1}: moved to group-to")})]
    );
    // The other SIM was not touched.
    assert_eq!(
        soracom.emulator.sim(SIM_2).unwrap().group_id.as_deref(),
        Some("group-from-id")
    );
    let history = kairo.router.history();
    assert_eq!(history.len(), 2);
    assert!(
        history.iter().all(|r| r.succeeded && r.attempts == 1),
        "{history:?}"
    );
    kairo.router.shutdown().await.unwrap();
}

#[tokio::test]
async fn ota_started_does_nothing() {
    let (soracom, slack, kairo) = ota_router().await;
    let (status, _) = kairo
        .post(&format!(
            r#"[{{"simId": "{SIM_1}", "otaStatus": "started"}}, {{"simId": "{SIM_1}", "otastatus": "finished"}}]"#
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    kairo.router.idle().await;
    assert!(
        soracom.emulator.requests().is_empty(),
        "no SORACOM call at all"
    );
    assert!(slack.bodies().is_empty());
    assert!(kairo.router.history().is_empty());
}

#[tokio::test]
async fn envelope_events_match_the_same_rule() {
    let (soracom, slack, kairo) = ota_router().await;
    let (status, body) = kairo
        .post(&format!(
            r#"{{"id": "ev-1", "eventType": "SimSubscriptionStatus", "simId": "{SIM_2}",
                "payload": {{"otaStatus": "finished", "subscription": "planX3"}}}}"#
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["ids"], json!(["ev-1"]));
    kairo.router.idle().await;
    assert_eq!(
        soracom.emulator.sim(SIM_2).unwrap().group_id.as_deref(),
        Some("group-to-id")
    );
    assert_eq!(
        slack.bodies(),
        vec![json!({"text": format!("OTA finished for {SIM_2}: moved to group-to")})]
    );
    let history = kairo.router.history();
    assert!(history.iter().all(|r| r.request.event_id == "ev-1"));
    assert_eq!(
        history
            .iter()
            .map(|r| r.request.key())
            .collect::<std::collections::BTreeSet<_>>(),
        ["ev-1/ota/0".to_string(), "ev-1/ota/1".to_string()]
            .into_iter()
            .collect()
    );
    tokio::time::timeout(Duration::from_secs(10), kairo.router.shutdown())
        .await
        .unwrap()
        .unwrap();
}
