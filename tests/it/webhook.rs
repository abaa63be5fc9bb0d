//! The webhook over a real socket.

use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn malformed_json_is_400_naming_line_and_column() {
    let kairo = start_kairo(&[], |_| {}).await;
    let (status, body) = kairo
        .post("{\n  \"simId\": \"s1\",\n  \"otaStatus\": finished\n}")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("invalid JSON at line 3 column 17: expected ident"),
        "{error}"
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let kairo = start_kairo(&[], |c| c.server.max_body_bytes = 1_000).await;
    let (status, body) = kairo
        .post(&format!(r#"{{"pad": "{}"}}"#, "x".repeat(2_000)))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("1000 bytes"));
    let (status, _) = kairo.post(r#"{"pad": "small"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn bearer_token_is_enforced_when_configured() {
    let kairo = start_kairo(&[], |c| c.server.token = Some("fleet-secret".into())).await;
    assert_eq!(kairo.post("{}").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        kairo.post_with("{}", Some("nope")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        kairo.post_with("{}", Some("fleet-secret")).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let kairo = start_kairo(&[], |_| {}).await;
    kairo.post("[{}, {\"a\": 1}]").await;
    kairo.post("{\"a\": 1}").await;
    kairo.post("nope").await;
    kairo.router.idle().await;
    let health = kairo
        .http
        .get(format!("{}/healthz", kairo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = kairo.metrics_text().await;
    assert!(
        metrics.contains("kairo_events_accepted_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kairo_events_rejected_total{reason="malformed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("kairo_events_duplicate_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn shutdown_finishes_accepted_work_and_stops_listening() {
    let slack = catcher().await;
    let kairo = start_kairo(&[("n.rhai", r#"slack("x");"#)], |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    let body = format!(
        "[{}]",
        vec!["{}"; 50]
            .iter()
            .enumerate()
            .map(|(i, _)| format!(r#"{{"i": {i}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(kairo.post(&body).await.0, StatusCode::ACCEPTED);
    let url = kairo.url.clone();
    kairo.router.shutdown().await.unwrap();
    assert_eq!(
        slack.bodies().len(),
        50,
        "every accepted event's action ran before exit"
    );
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let kairo = start_kairo(&[], |c| {
        c.server.token = Some("fleet-secret".into());
        c.server.metrics_require_token = true;
    })
    .await;
    let url = format!("{}/metrics", kairo.url);
    assert_eq!(kairo.http.get(&url).send().await.unwrap().status(), 401);
    let answer = kairo
        .http
        .get(&url)
        .bearer_auth("fleet-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("kairo_events_accepted_total")
    );
}

#[tokio::test]
async fn at_debug_level_an_event_that_fired_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = idle_process_config(dir.path(), port).replace(
        "level = \"info\"",
        "level = \"kairo=debug,kairo_router=debug,info\"",
    );
    let kairo = KairoProcess::start(dir.path(), &config, port);
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/events", kairo.url))
        .body(r#"{"id": "quiet-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    eventually("the debug line", std::time::Duration::from_secs(10), || {
        kairo
            .log()
            .lines()
            .any(|l| l.contains("the event fired nothing") && l.contains("quiet-1"))
    })
    .await;
}

#[test]
fn json_logs_keep_lists_as_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = idle_process_config(dir.path(), port)
        .replace("level = \"info\"", "level = \"info\"\nformat = \"json\"");
    std::fs::write(dir.path().join("scripts/a.rhai"), "slack(\"x\");").unwrap();
    let kairo = KairoProcess::start(dir.path(), &config, port);
    let lines: Vec<serde_json::Value> = kairo
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let reloaded = lines
        .iter()
        .find(|l| l["message"] == "rules reloaded")
        .expect("a rules reloaded line");
    assert_eq!(reloaded["added"], serde_json::json!(["a"]));
    assert_eq!(reloaded["removed"], serde_json::json!([]));
}

#[tokio::test]
async fn a_configuration_built_in_code_is_checked_before_anything_starts() {
    let mut config = kairo::KairoConfig::default();
    config.server.listen = "nowhere".into();
    config.server.token = Some(String::new());
    let error = match kairo::Router::builder().config(config).start().await {
        Ok(_) => panic!("a broken configuration started"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("server.listen: not a socket address"),
        "{error}"
    );
    assert!(error.contains("server.token: is empty"), "{error}");
}
