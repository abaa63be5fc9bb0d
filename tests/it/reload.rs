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

#[tokio::test]
async fn the_watcher_reloads_only_on_real_changes_and_logs_each_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).unwrap();
    let base = idle_process_config(dir.path(), port);
    let config = format!(
        "{}[handlers]\ndir = \"{}\"\n",
        base.replace("watch = false", "watch = true"),
        handlers.display()
    );
    let scripts = dir.path().join("scripts");
    std::fs::write(scripts.join("good.rhai"), r#"slack("one");"#).unwrap();
    std::fs::write(scripts.join("broken.rhai"), "if (").unwrap();
    std::fs::write(handlers.join("h.json"), "[]").unwrap();
    let kairo = KairoProcess::start(dir.path(), &config, port);
    let count = |needle: &str| kairo.log().matches(needle).count();

    let started = count("rules reloaded");
    // Nothing changes: nothing is reloaded and the broken file's error stays at one.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(count("broken.rhai"), 1, "{}", kairo.log());
    assert_eq!(count("rules reloaded"), started, "{}", kairo.log());

    // One real change: one reload, and the unchanged broken file is not reported again.
    std::fs::write(scripts.join("good.rhai"), r#"slack("two");"#).unwrap();
    eventually("the rule change to be picked up", LIMIT, || {
        count("rules reloaded") == started + 1
    })
    .await;
    std::fs::write(handlers.join("h.json"), "[ ]").unwrap();
    eventually("the handler change to be logged", LIMIT, || {
        count("handlers reloaded") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(count("rules reloaded"), started + 1, "{}", kairo.log());
    assert_eq!(count("handlers reloaded"), 1, "{}", kairo.log());
    assert_eq!(count("broken.rhai"), 1, "{}", kairo.log());
}
