//! The compiled-in action end to end: a router built with `.plugin(JsonlFile)`.

use kairo_example_static::JsonlFile;
use kairo_plugin::{Action, InvalidParams};
use serde_json::{Value, json};

#[tokio::test]
async fn rule_calls_the_compiled_in_action_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("scripts");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("audit.rhai"),
        "jsonl_file(#{ record: payload });",
    )
    .unwrap();
    let out = dir.path().join("audit.jsonl");
    let mut config = kairo::KairoConfig::default();
    config.server.listen = "127.0.0.1:0".into();
    config.rules.dir = rules;
    config.rules.watch = false;
    config.store.path = dir.path().join("kairo");
    config
        .plugins
        .sections
        .insert("jsonl_file".into(), json!({"path": out}));

    let router = kairo::Router::builder()
        .config(config)
        .plugin(JsonlFile)
        .start()
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/events", router.local_addr()))
        .body(r#"{"id": "e1", "simId": "s1", "otaStatus": "finished"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    router.idle().await;
    let line: Value = serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
    assert_eq!(line["key"], "e1/audit/0");
    assert_eq!(line["record"]["otaStatus"], "finished");
    router.shutdown().await.unwrap();
}

#[test]
fn configuration_is_checked() {
    assert!(matches!(
        JsonlFile.validate_config(&json!({"path": 3})),
        Err(InvalidParams::Config { key, .. }) if key == "path"
    ));
    assert!(matches!(
        JsonlFile.validate(&json!({"other": 1})),
        Err(InvalidParams::Unknown { key, .. }) if key == "other"
    ));
}
