//! `kairo replay` gives the plan the live router makes for the same events,
//! across a month boundary, and `--against` shows what a rule change does.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use kairo::core::ManualClock;
use kairo::dry_run::Replayer;
use kairo::recorded::{RecordedLine, read_lines, rfc3339};
use serde_json::{Value, json};

use crate::common::*;

fn repo(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir)
}

/// 2026-03-29T00:00:00Z.
const START: i64 = 1_774_742_400_000;
const HOUR: i64 = 3_600_000;

/// Traffic of two SIMs every 5 hours from March 29 to April 3, a finished
/// OTA now and then: the shipped rules throttle daily, the shipped handler
/// monthly, with its restore due at the start of April.
fn events() -> Vec<(Value, i64)> {
    (0..28)
        .map(|i| {
            let at = START + i * 5 * HOUR;
            let sim = format!("898110000000000000{}", 1 + i % 2);
            let event = if i % 7 == 3 {
                json!({"id": format!("o{i}"), "eventType": "SimSubscriptionStatus", "simId": sim,
                       "payload": {"otaStatus": "finished"}})
            } else {
                json!({"id": format!("t{i}"), "eventType": "TrafficUsage", "simId": sim,
                       "payload": {"bytes": (200 + (i * 37) % 150) << 20}})
            };
            (event, at)
        })
        .collect()
}

/// What the live router asked for, as (event, rule, index, action, params, due).
type Row = (String, String, u32, String, String, String);

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_across_a_month_boundary_plans_what_the_live_router_did() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(&repo("scripts"), data.path());
    config.handlers.dir = repo("handlers");
    config.dispatch.max_attempts = 1;
    let clock = Arc::new(ManualClock::new(START));
    let router = kairo::Router::builder()
        .config(config.clone())
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let url = format!("http://{}/v1/events", router.local_addr());
    let http = reqwest::Client::new();
    let events = events();
    let store = router.store().clone();
    for (event, at) in &events {
        clock.set(*at);
        let answer = http.post(&url).json(event).send().await.unwrap();
        assert_eq!(answer.status(), 202);
        // Evaluated (not idle: a delayed action keeps the router busy until it is due).
        let id = event["id"].as_str().unwrap();
        let recorded = || store.event_record(id).unwrap().is_some();
        eventually(
            "the event is evaluated",
            std::time::Duration::from_secs(10),
            recorded,
        )
        .await;
    }
    let mut live = BTreeSet::new();
    for (event, at) in &events {
        let id = event["id"].as_str().unwrap();
        let actions = store.actions_of(id).unwrap();
        let requests = (actions.pending.into_iter().map(|p| p.request))
            .chain(actions.finished.into_iter().map(|h| h.request));
        for r in requests {
            let due = rfc3339(r.not_before_ms.unwrap_or(*at).max(*at));
            live.insert((
                r.event_id,
                r.rule,
                r.index,
                r.action,
                r.params.to_string(),
                due,
            ));
        }
    }
    let recorded = store.recorded_events(0, i64::MAX, None, 1_000).unwrap();
    let lines: String = (recorded.events.iter())
        .map(|e| serde_json::to_string(&RecordedLine::of(e)).unwrap() + "\n")
        .collect();
    router.shutdown().await.unwrap();
    assert_eq!(recorded.events.len(), events.len());
    assert_eq!(
        recorded.events[10].received_at_ms, events[10].1,
        "received on the clock"
    );

    let plan = kairo::plan::Plan::compile(
        &config,
        &repo("scripts"),
        &repo("handlers"),
        &[],
        reqwest::Client::new(),
    )
    .unwrap();
    let (recorded, times): (Vec<_>, Vec<_>) = read_lines(&lines).unwrap().into_iter().unzip();
    let replayed = kairo_router::replay::replay(&mut Replayer::new(&plan), &recorded, &times);
    let replayed: BTreeSet<Row> = (replayed.actions.into_iter())
        .map(|p| {
            (
                p.event_id,
                p.rule,
                p.index,
                p.action,
                p.params.to_string(),
                p.due_at,
            )
        })
        .collect();
    assert_eq!(replayed, live);
    let delayed = |rows: &BTreeSet<Row>| {
        rows.iter()
            .filter(|r| r.5 == "2026-04-01T00:00:00.000Z" && r.1 == "handler:sim-monthly-cap")
            .count()
    };
    assert!(
        delayed(&live) >= 1,
        "the month cap restores at the start of April: {live:#?}"
    );
    let daily = live
        .iter()
        .filter(|r| r.1 == "daily_traffic_throttle")
        .count();
    assert!(
        daily >= 4,
        "the daily throttle fired on several days: {live:#?}"
    );
}

#[test]
fn against_another_rules_directory_a_changed_group_id_is_a_changed_action() {
    let events = tempfile::NamedTempFile::new().unwrap();
    let lines: String = events_lines();
    std::fs::write(events.path(), lines).unwrap();
    let changed = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo("scripts")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let target = changed.path().join(path.file_name().unwrap());
        std::fs::write(target, text.replace("group-to-id", "group-v2")).unwrap();
    }
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(kairo_bin())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("replay")
            .arg(events.path())
            .args([
                "--rules",
                changed.path().to_str().unwrap(),
                "--against",
                "scripts",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let text = run(&[]);
    assert!(
        text.starts_with("rule ota_finished_set_group\n  changed  o3  set_group"),
        "{text}"
    );
    assert!(
        text.contains("-> set_group {\"groupId\":\"group-v2\""),
        "{text}"
    );
    assert!(
        text.ends_with("0 added, 0 removed, 4 changed, in 1 rule(s), over 28 event(s)\n"),
        "{text}"
    );
    let json: Vec<Value> = run(&["--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 4);
    assert_eq!(json[0]["change"], "changed");
    assert_eq!(json[0]["rule"], "ota_finished_set_group");
    assert_eq!(json[0]["old"]["params"]["groupId"], "group-to-id");
    assert_eq!(json[0]["new"]["params"]["groupId"], "group-v2");
}

/// The events as recorded lines.
fn events_lines() -> String {
    events()
        .into_iter()
        .map(|(event, at)| json!({"receivedAtMs": at, "event": event}).to_string() + "\n")
        .collect()
}
