//! Cluster mode's actions on a real nats-server: delayed ones scheduled in
//! JetStream, the schedule and dead letters any instance lists and changes,
//! each outliving the instance that asked for it, and each family's limits
//! held for the whole cluster.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::*;
use crate::cluster_state::group_handler;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_action_asked_for_on_a_killed_instance_runs_on_time_elsewhere() {
    let nats = nats_server();
    let caught = catcher().await;
    // Past 1 MiB a month: call the catcher one minute later.
    let handler = json!({
        "name": "later", "handlerId": "l-1", "status": "active", "targetOperatorId": "OP1",
        "ruleConfig": {"type": "SimMonthlyTotalTrafficRule",
            "properties": {"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalTrafficMegaByte": "1"}},
        "actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "executionOffsetMinutes": "1",
            "url": caught.url, "httpMethod": "POST",
            "contentType": "application/json", "body": "{\"simId\":\"${simId}\"}"}}]
    });
    let handlers = tempfile::tempdir().unwrap();
    std::fs::write(handlers.path().join("l.json"), handler.to_string()).unwrap();
    let extra = format!("[handlers]\ndir = \"{}\"\n", handlers.path().display());
    let (_dirs, mut processes) = cluster_processes(2, &nats, "http://127.0.0.1:9", &extra, |_| {});
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A SIM whose partition the instance to be killed evaluates.
    let members = ["node-0".to_string(), "node-1".to_string()];
    let event = (0..100)
        .map(|i| {
            json!({"id": format!("l-{i}"), "eventType": "TrafficUsage", "simId": format!("sim-{i:02}"),
                   "operatorId": "OP1", "payload": {"bytes": 2 * 1024 * 1024}})
        })
        .find(|e| {
            let event = kairo::core::Event::from_value(e.clone()).unwrap();
            let partition = kairo::ingest::cluster::partition_of(&event, 8);
            kairo::ingest::cluster::owner_of(partition, &members) == Some("node-0")
        })
        .unwrap();
    let asked = std::time::Instant::now();
    post_round_robin(&[event], &[processes[1].url.clone()]).await;
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let mut actions = js.get_stream("KAIRO_ACTIONS").await.unwrap();
    eventually_async(
        "the event evaluated, its action scheduled",
        Duration::from_secs(20),
        || async { partitions_backlog(&nats).await == 0 },
    )
    .await;
    assert_eq!(
        actions.info().await.unwrap().state.messages,
        1,
        "one schedule"
    );
    processes[0].kill9();
    eventually(
        "the delayed action performed by the instance left",
        Duration::from_secs(90),
        || caught.bodies().len() == 1,
    )
    .await;
    let after = asked.elapsed();
    assert!(
        after >= Duration::from_secs(59) && after <= Duration::from_secs(70),
        "due a minute after it was asked for, performed after {after:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(caught.bodies().len(), 1, "performed once");
    assert!(processes[1].log().contains("action succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_scheduled_in_the_cluster_is_listed_and_cancelled_by_any_instance() {
    let nats = nats_server();
    let caught = catcher().await;
    let mut later = group_handler("later", "SimMonthlyTotalTrafficRule", 1, &caught.url);
    let action = &mut later["actionConfigList"][0]["properties"];
    action["executionOffsetMinutes"] = json!("5");
    let cluster = routers_with(2, &[later], Some(&nats)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let event = json!({"id": "s-1", "eventType": "TrafficUsage", "groupId": "G1",
                       "simId": "sim-01", "payload": {"bytes": 2 * 1024 * 1024}});
    post_round_robin(&[event], &[cluster[0].url.clone()]).await;
    eventually_async(
        "the delayed action listed by both instances",
        Duration::from_secs(20),
        || async {
            cluster[0].scheduled().await.len() == 1 && cluster[1].scheduled().await.len() == 1
        },
    )
    .await;
    let listed = cluster[1].scheduled().await;
    assert_eq!(listed[0]["state"], "delayed", "{listed:?}");
    assert_eq!(listed[0]["eventId"], "s-1");
    let key = listed[0]["key"].as_str().unwrap().to_string();
    // Cancelled on one instance, whichever evaluated the event.
    for kairo in &cluster {
        let mut url = reqwest::Url::parse(&format!("{}/v1/scheduled", kairo.url)).unwrap();
        url.path_segments_mut().unwrap().push(&key);
        let answer = kairo.http.delete(url.clone()).send().await.unwrap();
        if kairo.url == cluster[0].url {
            assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
            assert_eq!(
                kairo.http.delete(url).send().await.unwrap().status(),
                404,
                "once"
            );
        }
        if kairo.url == cluster[1].url {
            assert_eq!(answer.status(), 404, "already cancelled");
        }
    }
    assert!(cluster[1].scheduled().await.is_empty());
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let mut actions = js.get_stream("KAIRO_ACTIONS").await.unwrap();
    assert_eq!(
        actions.info().await.unwrap().state.messages,
        0,
        "nothing left to run"
    );
    let history = cluster[0].router.history();
    assert!(
        history.iter().any(|h| h.request.event_id == "s-1"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_kept_in_the_cluster_and_retried_from_any_instance() {
    let nats = nats_server();
    let slack = catcher().await;
    // Refused for good once, then accepted.
    slack.fail_with(&[400]);
    let instances = cluster_of(2, &nats, &[SLACK_EACH], Duration::from_secs(4), |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    let event = json!({"id": "d-1", "simId": "sim-01"});
    post_round_robin(&[event], &[instances[0].url.clone()]).await;
    let dead = |kairo: &Kairo| {
        let (http, url) = (kairo.http.clone(), format!("{}/v1/dead-letters", kairo.url));
        async move {
            let answer = http.get(url).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Vec<Value>>().await.unwrap()
        }
    };
    eventually_async(
        "the dead letter listed by both instances",
        Duration::from_secs(20),
        || async { dead(&instances[0]).await.len() == 1 && dead(&instances[1]).await.len() == 1 },
    )
    .await;
    let letter = dead(&instances[1]).await.remove(0);
    assert_eq!(letter["action"]["request"]["eventId"], "d-1", "{letter}");
    let id = letter["id"].as_str().unwrap().to_string();
    for kairo in &instances {
        let local = kairo.router.store().dead_letters().unwrap();
        assert!(
            local.is_empty(),
            "kept in the cluster, not in a store: {local:?}"
        );
    }
    // Retried from either instance: performed once, gone from both lists.
    let answer = (instances[1].http)
        .post(format!("{}/v1/dead-letters/retry", instances[1].url))
        .json(&json!({"ids": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    eventually(
        "the retried action performed",
        Duration::from_secs(20),
        || slack.bodies().len() == 2,
    )
    .await;
    assert!(dead(&instances[0]).await.is_empty());
    assert!(dead(&instances[1]).await.is_empty());
}

/// `GET /v1/dead-letters` of `kairo`.
async fn dead_letters(kairo: &Kairo) -> Vec<Value> {
    kairo.get_json("/v1/dead-letters").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_input_is_a_dead_letter_every_instance_lists_and_drops() {
    let nats = nats_server();
    let instances = cluster_of(2, &nats, &[], Duration::from_secs(4), |_| {}).await;
    // A partition message that holds no event, published past the intake.
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    (js.publish("kairo.partition.0", "not an event".into()).await)
        .unwrap()
        .await
        .unwrap();
    eventually_async(
        "the dead letter listed by both instances",
        Duration::from_secs(20),
        || async {
            dead_letters(&instances[0]).await.len() == 1
                && dead_letters(&instances[1]).await.len() == 1
        },
    )
    .await;
    let letter = dead_letters(&instances[1]).await.remove(0);
    assert_eq!(letter["kind"], "input", "{letter}");
    assert_eq!(letter["input"], "not an event", "{letter}");
    for kairo in &instances {
        let local = kairo.router.store().dead_letters().unwrap();
        assert!(
            local.is_empty(),
            "kept in the cluster, not in a store: {local:?}"
        );
    }
    // Dropped from either instance: gone from both.
    let id = letter["id"].as_str().unwrap();
    let answer = (instances[0].http)
        .delete(format!("{}/v1/dead-letters/{id}", instances[0].url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert!(dead_letters(&instances[0]).await.is_empty());
    assert!(dead_letters(&instances[1]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_familys_rate_limit_holds_for_the_whole_cluster() {
    let nats = nats_server();
    let slack = catcher().await;
    let instances = cluster_of(2, &nats, &[SLACK_EACH], Duration::from_secs(4), |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
        let limit = kairo::limits::FamilyLimit {
            concurrency: 4,
            per_second: Some(5.0),
        };
        c.dispatch.limits.insert("slack".into(), limit);
    })
    .await;
    let started = std::time::Instant::now();
    for i in 0..20 {
        let event = json!({"id": format!("r-{i}"), "simId": format!("sim-{i:02}")});
        assert_eq!(instances[i % 2].post(&event.to_string()).await.0, 202);
    }
    eventually("every message sent", Duration::from_secs(30), || {
        slack.bodies().len() == 20
    })
    .await;
    let took = started.elapsed();
    for kairo in &instances {
        kairo.router.idle().await;
        assert!(
            !kairo.router.history().is_empty(),
            "both instances perform actions"
        );
    }
    // 5 a second for the cluster: 19 intervals of 200 ms after the first start.
    assert!(
        took >= Duration::from_millis(3_600),
        "20 starts took only {took:?}"
    );
}

/// Calls at once, at most, and calls done, of a [`slow_server`].
#[derive(Default)]
struct Busy {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    done: std::sync::atomic::AtomicUsize,
}

/// An HTTP server on loopback that answers every request after `delay`.
async fn slow_server(delay: Duration) -> (String, std::sync::Arc<Busy>) {
    use std::sync::atomic::Ordering::SeqCst;
    let busy = std::sync::Arc::new(Busy::default());
    let counts = busy.clone();
    let app = axum::Router::new().fallback(move || {
        let busy = counts.clone();
        async move {
            let now = busy.now.fetch_add(1, SeqCst) + 1;
            busy.most.fetch_max(now, SeqCst);
            tokio::time::sleep(delay).await;
            busy.now.fetch_sub(1, SeqCst);
            busy.done.fetch_add(1, SeqCst);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_familys_concurrency_holds_for_the_whole_cluster() {
    use std::sync::atomic::Ordering::SeqCst;
    let nats = nats_server();
    let (url, busy) = slow_server(Duration::from_millis(300)).await;
    let instances = cluster_of(2, &nats, &[SLACK_EACH], Duration::from_secs(4), |c| {
        c.plugins.slack.webhook_url = Some(url.clone());
        let limit = kairo::limits::FamilyLimit {
            concurrency: 2,
            per_second: None,
        };
        c.dispatch.limits.insert("slack".into(), limit);
    })
    .await;
    let events: Vec<Value> = (0..16)
        .map(|i| json!({"id": format!("b-{i}"), "simId": format!("sim-{i:02}")}))
        .collect();
    let urls: Vec<String> = instances.iter().map(|k| k.url.clone()).collect();
    post_round_robin(&events, &urls).await;
    eventually("every message sent", Duration::from_secs(60), || {
        busy.done.load(SeqCst) == 16
    })
    .await;
    for kairo in &instances {
        assert!(
            !kairo.router.history().is_empty(),
            "both instances perform actions"
        );
    }
    assert_eq!(
        busy.most.load(SeqCst),
        2,
        "two at once for the whole cluster, not two per instance"
    );
    // Each instance's history shows every instance's performed actions.
    for kairo in &instances {
        let url = format!("{}/v1/history?limit=100", kairo.url);
        let answer = kairo.http.get(url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let history = answer.json::<Vec<Value>>().await.unwrap();
        assert_eq!(history.len(), 16, "{history:?}");
        assert!(
            kairo.router.history().len() < 16,
            "its own store has its share"
        );
    }
}
