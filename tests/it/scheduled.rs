//! `GET /v1/scheduled` lists the actions not yet performed; `DELETE
//! /v1/scheduled/{key}` cancels one into the history.

use std::time::Duration;

use serde_json::Value;

use crate::common::{catcher, eventually_async, start_kairo};

#[tokio::test]
async fn a_retrying_action_is_listed_and_cancelled_into_the_history() {
    let target = catcher().await;
    target.fail_with(&[503]);
    let rule = format!(
        r#"webhook(#{{ url: "{}", method: "POST", body: #{{ simId: simId }} }});"#,
        target.url
    );
    let kairo = start_kairo(&[("notify.rhai", &rule)], |c| {
        // After the first failure the next attempt waits a minute.
        c.dispatch.backoff_initial_ms = 60_000;
        c.dispatch.backoff_max_ms = 60_000;
    })
    .await;
    kairo.post(r#"{"id": "ev-1", "simId": "s-1"}"#).await;
    eventually_async(
        "the failed attempt to be rescheduled",
        Duration::from_secs(10),
        || {
            let listed = kairo.scheduled();
            async move { listed.await.first().is_some_and(|a| a["attempts"] == 1) }
        },
    )
    .await;
    let listed = kairo.scheduled().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let action = &listed[0];
    let key = action["key"].as_str().unwrap().to_string();
    assert_eq!(key, "ev-1/notify/0");
    assert_eq!(action["action"], "webhook");
    assert_eq!(action["rule"], "notify");
    assert_eq!(action["eventId"], "ev-1");
    assert_eq!(action["state"], "retrying");
    assert!(
        action["lastError"].as_str().unwrap().contains("503"),
        "{action}"
    );
    assert!(action["dueAtMs"].as_i64().unwrap() > chrono::Utc::now().timestamp_millis() + 30_000);
    assert!(action["dueAt"].as_str().unwrap().ends_with('Z'), "{action}");

    // The key holds `/`: percent-encoded as one path segment.
    let mut url = reqwest::Url::parse(&format!("{}/v1/scheduled", kairo.url)).unwrap();
    url.path_segments_mut().unwrap().push(&key);
    assert!(url.as_str().ends_with("ev-1%2Fnotify%2F0"), "{url}");
    let answer = kairo.http.delete(url.clone()).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["cancelled"], key);

    assert!(kairo.scheduled().await.is_empty());
    let history = kairo.router.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, kairo_store::HistoryStatus::Cancelled);
    assert_eq!(history[0].attempts, 1);
    // Nothing of it is left running or waiting.
    tokio::time::timeout(Duration::from_secs(5), kairo.router.idle())
        .await
        .expect("the cancelled action no longer counts as work in flight");
    assert_eq!(target.requests().len(), 1, "never attempted again");

    let again = kairo.http.delete(url).send().await.unwrap();
    assert_eq!(again.status(), 404);
    // Unencoded, the same path reaches the same route.
    let raw = format!("{}/v1/scheduled/{key}", kairo.url);
    assert_eq!(kairo.http.delete(raw).send().await.unwrap().status(), 404);
}
