//! Recorded events: `GET /v1/events` (JSON lines, paged) and
//! `kairo events export` beside a running router and on the store file.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["event"]["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn received_events_are_exported_in_order_by_page_beside_the_router_and_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = idle_process_config(dir.path(), port);
    let mut kairo = KairoProcess::start(dir.path(), &config, port);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(format!("{}/v1/events", kairo.url))
            .json(&body)
            .send()
    };
    post(json!([{"id": "a1"}, {"id": "a2"}, {"id": "a3"}]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(20)).await;
    post(json!({"id": "b1", "eventType": "X"})).await.unwrap();
    post(json!({"id": "b2"})).await.unwrap();

    let all = format!("{}/v1/events", kairo.url);
    let mut recorded = Vec::new();
    for _ in 0..200 {
        recorded = lines(&http.get(&all).send().await.unwrap().text().await.unwrap());
        if recorded.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(ids(&recorded), ["a1", "a2", "a3", "b1", "b2"]);
    assert_eq!(recorded[3]["source"], "webhook");
    assert_eq!(recorded[3]["event"]["eventType"], "X");
    assert!(recorded[0]["receivedAt"].as_str().unwrap().ends_with('Z'));

    let first = http.get(format!("{all}?limit=2")).send().await.unwrap();
    let link = first.headers()["link"].to_str().unwrap().to_string();
    assert_eq!(ids(&lines(&first.text().await.unwrap())), ["a1", "a2"]);
    let path = link.trim_start_matches('<').split('>').next().unwrap();
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    let second = http
        .get(format!("{}{path}", kairo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&lines(&second.text().await.unwrap())), ["a3", "b1"]);
    let bad = http
        .get(format!("{all}?since=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let config_file = dir.path().join("kairo.toml");
    let (code, online, err) =
        kairo_with_config(&["events", "export", "--since", &between], &config_file);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(ids(&lines(&online)), ["b1", "b2"]);

    kairo.terminate();
    let (code, offline, err) = kairo_with_config(&["events", "export"], &config_file);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        lines(&offline),
        recorded,
        "the file holds what the router served"
    );
}
