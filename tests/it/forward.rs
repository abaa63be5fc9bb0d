//! `kairo soracom forward`: SORACOM event handlers that post each event to
//! Kairo's webhook, created idempotently in the emulator, and working: what
//! they send is an event Kairo accepts.

use serde_json::{Value, json};

use crate::common::*;
use kairo_soracom::emulator::{DEFAULT_AUTH_KEY, DEFAULT_AUTH_KEY_ID};

fn config_file(dir: &std::path::Path, soracom: &Soracom) -> std::path::PathBuf {
    let file = dir.join("kairo.toml");
    let text = format!(
        "[soracom]\nendpoint = \"{}\"\nauth_key_id = \"{DEFAULT_AUTH_KEY_ID}\"\nauth_key = \"{DEFAULT_AUTH_KEY}\"\n",
        soracom.url
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn forward(config: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec![
        "soracom",
        "forward",
        "--url",
        "http://kairo.example/v1/events",
        "--token",
        "s3cret",
    ];
    args.extend_from_slice(extra);
    kairo_with_config(&args, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_handlers_are_created_once_leave_others_alone_and_send_what_kairo_accepts() {
    let soracom = soracom(false).await;
    let mine = json!({"handlerId": "mine", "name": "my own handler", "status": "active",
        "targetSimId": SIM_1, "ruleConfig": {"type": "SimExpiredRule", "properties": {}},
        "actionConfigList": []});
    soracom
        .emulator
        .with_state(|s| s.event_handlers.insert("mine".into(), mine.clone()));
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &soracom);

    let (code, out, err) = forward(&config, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("created")).count(),
        8,
        "{out}"
    );
    let (code, again, err) = forward(&config, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        again.lines().filter(|l| l.starts_with("unchanged")).count(),
        8,
        "{again}"
    );
    let (_, rotated, _) = kairo_with_config(
        &[
            "soracom",
            "forward",
            "--url",
            "http://kairo.example/v1/events",
            "--token",
            "other",
        ],
        &config,
    );
    assert_eq!(
        rotated.lines().filter(|l| l.starts_with("updated")).count(),
        8,
        "{rotated}"
    );
    forward(&config, &[]);
    let handlers: Vec<Value> = soracom
        .emulator
        .with_state(|s| s.event_handlers.values().cloned().collect());
    assert_eq!(handlers.len(), 9);
    assert!(
        handlers.contains(&mine),
        "the account's own handler is untouched"
    );

    let (code, dry, _) = forward(&config, &["--dry-run", "--target", "group:g1"]);
    assert_eq!(code, Some(0));
    let printed: Vec<Value> = serde_json::from_str(&dry).unwrap();
    assert!(printed.iter().all(|h| h["targetGroupId"] == "g1"));
    assert_eq!(
        soracom.emulator.with_state(|s| s.event_handlers.len()),
        9,
        "a dry run changes nothing"
    );

    // Kairo's own handler engine stands in for SORACOM's: the created
    // handlers load, fire on a status change, and what they post is an event
    // Kairo accepts, with the token.
    let created: Vec<Value> = handlers.into_iter().filter(|h| h != &mine).collect();
    let (loaded, errors) =
        kairo::core::handler::parse_file(&Value::Array(created).to_string(), "forward.json");
    assert!(errors.is_empty(), "{errors:?}");
    let set = kairo::core::handler::HandlerSet::new(loaded);
    let change = kairo::core::Event::from_value(json!({"id": "c1", "eventType": "StatusChanged",
        "imsi": "440103000000001", "simId": SIM_1, "operatorId": "OP0000000000",
        "payload": {"oldStatus": "ready", "newStatus": "active"}}))
    .unwrap();
    let mut state = kairo::core::handler::MemoryState::default();
    let posts = set.fire(&change, &mut state, 0);
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].params["headers"]["Authorization"], "Bearer s3cret");
    let body = posts[0].params["body"].as_str().unwrap().to_string();
    let kairo = start_kairo(&[], |c| c.server.token = Some("s3cret".into())).await;
    let (status, answer) = kairo.post_with(&body, Some("s3cret")).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["ids"][0].as_str().unwrap().to_string();
    kairo.router.idle().await;
    let explained: Value = kairo
        .http
        .get(format!("{}/v1/events/{id}", kairo.url))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = &explained["event"];
    assert_eq!(event["eventType"], "StatusChanged");
    assert_eq!(event["simId"], SIM_1);
    assert_eq!(
        event["payload"],
        json!({"oldStatus": "ready", "newStatus": "active"})
    );
}
