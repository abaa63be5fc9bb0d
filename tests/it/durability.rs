//! Durable delivery: crashes, graceful stops, duplicates and dead letters.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use kairo_soracom::emulator::{Emulator, EmulatorOptions};
use serde_json::{Value, json};

use crate::common::*;

/// Posts events `range` as batches of `batch` OTA-finished events; returns the answers.
async fn post_ota_events(
    http: &reqwest::Client,
    url: &str,
    range: std::ops::Range<usize>,
    batch: usize,
) -> Vec<Value> {
    let mut answers = Vec::new();
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(batch) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("ev-{i:05}"), "simId": format!("sim-{i:05}"), "otaStatus": "finished"}))
            .collect();
        let response = http
            .post(format!("{url}/v1/events"))
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        answers.push(response.json().await.unwrap());
    }
    answers
}

/// set_group calls per SIM seen by the emulator.
fn set_group_counts(emulator: &Emulator) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in emulator.requests() {
        if let Some(sim) = request
            .path
            .strip_prefix("/v1/sims/")
            .and_then(|p| p.strip_suffix("/set_group"))
        {
            if request.status == 200 {
                *counts.entry(sim.to_string()).or_default() += 1;
            }
        }
    }
    counts
}

fn slack_counts(slack: &Catcher) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for body in slack.bodies() {
        let text = body["text"].as_str().unwrap_or_default();
        let sim = text
            .split_whitespace()
            .find(|w| w.starts_with("sim-"))
            .unwrap_or_default();
        *counts
            .entry(sim.trim_end_matches(':').to_string())
            .or_default() += 1;
    }
    counts
}

async fn slow_emulator(latency_ms: u64) -> (Emulator, String) {
    let emulator = Emulator::new(EmulatorOptions {
        auto_create: true,
        latency: Duration::from_millis(latency_ms),
        ..EmulatorOptions::default()
    });
    let addr = emulator
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (emulator, format!("http://{addr}"))
}

/// The store's counts from `GET /v1/status`.
async fn status(http: &reqwest::Client, url: &str) -> Value {
    let status: Value = http
        .get(format!("{url}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    json!({"inbox": status["inbox"], "outbox": status["outbox"], "deadLetters": status["deadLetters"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_accepted_event_and_repeats_only_in_flight_actions() {
    const TOTAL: usize = 3_000;
    const BEFORE_CRASH: usize = 1_500;
    const CONCURRENCY: usize = 16;
    let (emulator, soracom_url) = slow_emulator(10).await;
    let slack = catcher().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "[dispatch]\nconcurrency = {CONCURRENCY}\nbackoff_initial_ms = 10\nbackoff_max_ms = 100\n\
         [dispatch.limits.soracom]\nconcurrency = 4\nper_second = 1000000.0\n"
    );
    let config = process_config(dir.path(), port, &soracom_url, &slack.url, &extra);
    std::fs::write(
        dir.path().join("scripts/ota.rhai"),
        OTA_RULE.replace("group-to-id", "group-to"),
    )
    .unwrap();
    let http = reqwest::Client::new();

    let mut kairo = KairoProcess::start(dir.path(), &config, port);
    post_ota_events(&http, &kairo.url, 0..BEFORE_CRASH, 100).await;
    kairo.kill9();
    let done_at_crash = set_group_counts(&emulator).len();
    assert!(
        done_at_crash < BEFORE_CRASH,
        "the crash interrupted work ({done_at_crash} done)"
    );

    let kairo = KairoProcess::start(dir.path(), &config, port);
    // The last batch before the crash again: all duplicates, nothing new happens.
    let again = post_ota_events(&http, &kairo.url, BEFORE_CRASH - 100..BEFORE_CRASH, 100).await;
    assert_eq!(again[0]["duplicates"], 100);
    post_ota_events(&http, &kairo.url, BEFORE_CRASH..TOTAL, 100).await;

    eventually(
        "every SIM moved and announced",
        Duration::from_secs(120),
        || set_group_counts(&emulator).len() == TOTAL && slack_counts(&slack).len() == TOTAL,
    )
    .await;
    eventually_async("the store drained", Duration::from_secs(10), || async {
        status(&http, &kairo.url).await == json!({"inbox": 0, "outbox": 0, "deadLetters": 0})
    })
    .await;

    let repeated_groups: usize = set_group_counts(&emulator).values().map(|n| n - 1).sum();
    let repeated_slack: usize = slack_counts(&slack).values().map(|n| n - 1).sum();
    assert!(
        repeated_groups + repeated_slack <= CONCURRENCY,
        "only actions in flight at the crash may repeat: {repeated_groups} set_group + {repeated_slack} slack"
    );
    for sim in emulator.with_state(|s| {
        s.sims
            .values()
            .map(|s| s.group_id.clone())
            .collect::<Vec<_>>()
    }) {
        assert_eq!(sim.as_deref(), Some("group-to"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_nothing_is_lost_or_repeated() {
    const TOTAL: usize = 600;
    let (emulator, soracom_url) = slow_emulator(20).await;
    let slack = catcher().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // No grace: stop starting actions at once; what is running finishes and is recorded.
    let extra = "[dispatch]\nshutdown_grace_ms = 0\n[dispatch.limits.soracom]\nconcurrency = 4\nper_second = 1000000.0\n";
    let config = process_config(dir.path(), port, &soracom_url, &slack.url, extra);
    std::fs::write(dir.path().join("scripts/ota.rhai"), OTA_RULE).unwrap();
    let http = reqwest::Client::new();

    let mut kairo = KairoProcess::start(dir.path(), &config, port);
    post_ota_events(&http, &kairo.url, 0..TOTAL, TOTAL).await;
    let status_code = kairo.terminate();
    assert!(
        status_code.success(),
        "exit status {status_code}: {}",
        kairo.log()
    );
    let done_at_stop = set_group_counts(&emulator).len();
    assert!(
        done_at_stop < TOTAL,
        "the stop left work for the restart ({done_at_stop} done): {}",
        kairo.log()
    );

    let kairo = KairoProcess::start(dir.path(), &config, port);
    eventually(
        "every SIM moved and announced",
        Duration::from_secs(60),
        || set_group_counts(&emulator).len() == TOTAL && slack_counts(&slack).len() == TOTAL,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        set_group_counts(&emulator).values().all(|n| *n == 1),
        "no set_group repeated"
    );
    assert!(
        slack_counts(&slack).values().all(|n| *n == 1),
        "no Slack message repeated"
    );
    drop(kairo);
}

#[tokio::test]
async fn duplicate_event_ids_trigger_nothing_new() {
    let slack = catcher().await;
    let kairo = start_kairo(&[("n.rhai", r#"slack(`hello ${event.id}`);"#)], |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    let (status, body) = kairo
        .post(r#"[{"id": "a"}, {"id": "a"}, {"id": "b"}]"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["duplicates"], 1);
    let (_, body) = kairo.post(r#"{"id": "b"}"#).await;
    assert_eq!(body["duplicates"], 1);
    kairo.router.idle().await;
    let mut texts: Vec<String> = slack
        .bodies()
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect();
    texts.sort();
    assert_eq!(texts, vec!["hello a", "hello b"]);
}

#[tokio::test]
async fn pending_retry_survives_a_restart() {
    let slack = catcher().await;
    slack.fail_with(&[503]);
    let rules_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    std::fs::write(rules_dir.path().join("n.rhai"), r#"slack("hi");"#).unwrap();
    let mut config = test_config(rules_dir.path(), data_dir.path());
    config.plugins.slack.webhook_url = Some(slack.url.clone());
    // The retry is due long after the stop, so it must come back from the store.
    config.dispatch.backoff_initial_ms = 400;
    config.dispatch.backoff_max_ms = 400;
    config.dispatch.shutdown_grace_ms = 0;
    let router = kairo::Router::builder()
        .config(config.clone())
        .start()
        .await
        .unwrap();
    let url = format!("http://{}", router.local_addr());
    reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .body(r#"{"id": "e"}"#)
        .send()
        .await
        .unwrap();
    eventually("first attempt", Duration::from_secs(10), || {
        slack.bodies().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    router.shutdown().await.unwrap();
    assert_eq!(
        slack.bodies().len(),
        1,
        "the retry was not performed before the stop"
    );

    let router = kairo::Router::builder()
        .config(config)
        .start()
        .await
        .unwrap();
    router.idle().await;
    assert_eq!(slack.bodies().len(), 2);
    let history = router.history();
    assert_eq!(history.len(), 1);
    assert!(history[0].succeeded);
    assert_eq!(
        history[0].attempts, 2,
        "the attempt count survived the restart"
    );
}

#[tokio::test]
async fn dead_letters_can_be_listed_retried_and_dropped() {
    let slack = catcher().await;
    slack.fail_with(&[400, 404]);
    let kairo = start_kairo(&[("n.rhai", r#"slack(`hi ${event.id}`);"#)], |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    kairo.post(r#"[{"id": "one"}, {"id": "two"}]"#).await;
    kairo.router.idle().await;
    let letters: Vec<Value> = kairo.get_json("/v1/dead-letters").await;
    assert_eq!(letters.len(), 2);
    assert!(
        letters[0]["error"].as_str().unwrap().starts_with("HTTP 40"),
        "{letters:?}"
    );
    assert_eq!(letters[0]["kind"], "action");

    let retried: Value = kairo
        .http
        .post(format!("{}/v1/dead-letters/retry", kairo.url))
        .json(&json!({"ids": ["one/n/0"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(retried, json!({"retried": ["one/n/0"]}));
    let unknown = kairo
        .http
        .post(format!("{}/v1/dead-letters/retry", kairo.url))
        .json(&json!({"ids": ["two/n/0", "UNKNOWN-ID"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404, "an unknown id retries nothing");
    let answer: Value = unknown.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("UNKNOWN-ID"),
        "{answer}"
    );
    kairo.router.idle().await;
    assert_eq!(slack.bodies().last().unwrap()["text"], "hi one");
    let succeeded: Vec<_> = kairo
        .router
        .history()
        .into_iter()
        .filter(|h| h.succeeded)
        .collect();
    assert_eq!(succeeded.len(), 1);

    let response = kairo
        .http
        .delete(format!("{}/v1/dead-letters/two/n/0", kairo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let status: Value = kairo.get_json("/v1/status").await;
    assert_eq!(status["deadLetters"], 0);
}

#[tokio::test]
async fn dlq_command_works_on_the_store_when_no_router_runs() {
    let slack = catcher().await;
    slack.fail_with(&[400]);
    let kairo = start_kairo(&[("n.rhai", r#"slack("x");"#)], |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    kairo.post(r#"{"id": "e1"}"#).await;
    kairo.router.idle().await;
    let store_path = kairo.data_dir.path().join("kairo");
    let config = kairo.data_dir.path().join("k.toml");
    std::fs::write(
        &config,
        format!("[store]\npath = \"{}\"\n", store_path.display()),
    )
    .unwrap();
    let Kairo {
        router, data_dir, ..
    } = kairo;
    router.shutdown().await.unwrap();

    let run = |args: &[&str]| kairo_with_config(&[&["dlq"], args].concat(), &config);
    let (code, stdout, stderr) = run(&["list"]);
    assert_eq!(code, Some(0), "{stderr}");
    let letter: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(letter["id"], "e1/n/0");
    let (code, _, stderr) = run(&["drop", "nope"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no dead letter with id nope"), "{stderr}");
    let (code, stdout, stderr) = run(&["retry", "UNKNOWN-ID"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains("no dead letter with id UNKNOWN-ID"),
        "{stderr}"
    );
    let (code, stdout, _) = run(&["retry", "--all"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("e1/n/0"), "{stdout}");
    let (_, stdout, _) = run(&["list"]);
    assert!(
        stdout.trim().is_empty(),
        "retried letters leave the dead-letter list"
    );
    drop(data_dir);
}
