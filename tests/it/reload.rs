//! Hot reload of rule scripts through the file watcher.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(10);

fn has_rule(kairo: &Kairo, name: &str) -> bool {
    kairo.router.rules().snapshot().get(name).is_some()
}

async fn texts_for_event(kairo: &Kairo, slack: &Catcher) -> Vec<serde_json::Value> {
    // Each call posts a distinct event: identical bodies would be deduplicated.
    static SEQUENCE: AtomicUsize = AtomicUsize::new(0);
    let before = slack.bodies().len();
    let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
    kairo.post(&format!(r#"{{"n": {n}}}"#)).await;
    kairo.router.idle().await;
    slack.bodies()[before..]
        .iter()
        .map(|b| b["text"].clone())
        .collect()
}

#[tokio::test]
async fn rules_are_added_replaced_kept_when_broken_and_removed() {
    let slack = catcher().await;
    let kairo = start_kairo(&[], |c| {
        c.rules.watch = true;
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    let dir = kairo.rules_path().to_path_buf();
    assert!(texts_for_event(&kairo, &slack).await.is_empty());

    // Added.
    std::fs::write(dir.join("hello.rhai"), r#"slack("v1");"#).unwrap();
    eventually("hello.rhai loaded", LIMIT, || has_rule(&kairo, "hello")).await;
    assert_eq!(texts_for_event(&kairo, &slack).await, vec![json!("v1")]);

    // A broken edit keeps v1. A marker file written afterwards shows the
    // watcher has processed the broken edit.
    std::fs::write(dir.join("hello.rhai"), r#"slack("v2""#).unwrap();
    std::fs::write(dir.join("marker.rhai"), "").unwrap();
    eventually("marker.rhai loaded", LIMIT, || has_rule(&kairo, "marker")).await;
    assert_eq!(texts_for_event(&kairo, &slack).await, vec![json!("v1")]);

    // Fixed.
    std::fs::write(dir.join("hello.rhai"), r#"slack("v2");"#).unwrap();
    eventually("hello.rhai v2", LIMIT, || {
        kairo
            .router
            .rules()
            .snapshot()
            .evaluate(&kairo::core::Event::from_value(json!({})).unwrap())
            .requests
            .first()
            .is_some_and(|r| r.params["text"] == "v2")
    })
    .await;
    assert_eq!(texts_for_event(&kairo, &slack).await, vec![json!("v2")]);

    // Deleted.
    std::fs::remove_file(dir.join("hello.rhai")).unwrap();
    eventually("hello.rhai removed", LIMIT, || !has_rule(&kairo, "hello")).await;
    assert!(texts_for_event(&kairo, &slack).await.is_empty());
}
