//! The example rules shipped in `scripts/` against the example events of
//! docs/events.md: every rule must act on the events the docs define.

use std::collections::BTreeSet;
use std::sync::Arc;

use kairo::core::ManualClock;
use serde_json::Value;

use crate::common::*;

/// Every ```json block of docs/events.md.
fn documented_events() -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docs/events.md")).unwrap();
    text.split("```json")
        .skip(1)
        .map(|block| {
            let json = block.split("```").next().unwrap();
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
        })
        .collect()
}

#[tokio::test]
async fn every_example_rule_acts_on_the_documented_events() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(&root.join("scripts"), data.path());
    config.handlers.dir = data.path().join("no-handlers");
    config.dispatch.max_attempts = 1;
    // The documented traffic is reported on 2025-03-10.
    let noon = chrono::DateTime::parse_from_rfc3339("2025-03-10T12:30:00Z").unwrap();
    let router = kairo::Router::builder()
        .config(config)
        .clock(Arc::new(ManualClock::new(noon.timestamp_millis())))
        .start()
        .await
        .unwrap();
    let url = format!("http://{}/v1/events", router.local_addr());
    let http = reqwest::Client::new();
    let mut posted = 0;
    for (n, mut event) in documented_events().into_iter().enumerate() {
        // Traffic reports add up: 20 of the documented 6 MiB cross the 100 MiB a day.
        let copies = if event["eventType"] == "TrafficUsage" {
            20
        } else {
            1
        };
        for copy in 0..copies {
            event["id"] = Value::String(format!("doc-{n}-{copy}"));
            let answer = http.post(&url).json(&event).send().await.unwrap();
            assert_eq!(answer.status(), 202, "{event}");
            posted += 1;
        }
    }
    assert!(posted > 20);
    router.idle().await;
    let fired: BTreeSet<String> = router
        .history()
        .into_iter()
        .map(|h| h.request.rule)
        .collect();
    let examples: BTreeSet<String> = std::fs::read_dir(root.join("scripts"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "rhai")
                .then(|| path.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    assert!(examples.len() >= 5, "{examples:?}");
    let silent: Vec<&String> = examples.difference(&fired).collect();
    assert!(
        silent.is_empty(),
        "example rules that no documented event triggers: {silent:?}"
    );
    router.shutdown().await.unwrap();
}
