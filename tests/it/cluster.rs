//! Cluster mode on a real nats-server: events partitioned by SIM, each
//! partition evaluated by one instance at a time, taken over when an
//! instance dies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const SIMS: usize = 50;
const EVENTS_PER_SIM: usize = 30;

/// A handler that calls `url` once a month per SIM past 100 MiB.
pub(crate) fn monthly_limit(url: &str) -> Value {
    json!({
        "name": "monthly-100", "handlerId": "m-1", "status": "active", "targetOperatorId": "OP1",
        "ruleConfig": {"type": "SimMonthlyTotalTrafficRule",
            "properties": {"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalTrafficMegaByte": "100"}},
        "actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "url": url, "httpMethod": "POST",
            "contentType": "application/json", "body": "{\"simId\":\"${simId}\"}"}}]
    })
}

/// A month of traffic for 50 SIMs, a day's usage (0–8 MiB, fixed by the
/// SIM and day: 15–225 MiB a month) per event, in the order they happened.
pub(crate) fn fleet_traffic() -> Vec<Value> {
    let mut events = Vec::new();
    for day in 0..EVENTS_PER_SIM {
        for sim in 0..SIMS {
            let mib = sim % 8 + day % 2;
            events.push(json!({
                "id": format!("t-{sim}-{day}"), "eventType": "TrafficUsage",
                "simId": format!("sim-{sim:02}"), "imsi": format!("4401000000{sim:05}"),
                "operatorId": "OP1", "payload": {"bytes": mib * 1024 * 1024}
            }));
        }
    }
    events
}

/// The cluster settings of an instance on `nats`.
pub(crate) fn clustered(config: &mut kairo::KairoConfig, nats: &NatsServer) {
    config.nats.url = Some(nats.url.clone());
    config.nats.subject = "kairo.unused.>".into();
    config.cluster.backend = kairo::ingest::cluster::Backend::Jetstream;
    config.cluster.partitions = 8;
    config.cluster.takeover_seconds = 2;
    config.cluster.heartbeat_seconds = 1;
}

/// A rule that tells Slack each event's id.
pub(crate) const SLACK_EACH: (&str, &str) = ("n.rhai", "slack(`${event.id}`);");

/// `n` routers of one cluster on `nats` (`node-0`, …) running `rules`, each
/// configured by `configure` after the cluster settings, and `settle` given
/// for them to find each other and spread the partitions.
pub(crate) async fn cluster_of(
    n: usize,
    nats: &NatsServer,
    rules: &[(&str, &str)],
    settle: Duration,
    configure: impl Fn(&mut kairo::KairoConfig),
) -> Vec<Kairo> {
    let mut instances = Vec::new();
    for i in 0..n {
        let kairo = start_kairo(rules, |c| {
            clustered(c, nats);
            c.cluster.node = Some(format!("node-{i}"));
            configure(c);
        })
        .await;
        instances.push(kairo);
    }
    tokio::time::sleep(settle).await;
    instances
}

/// Routers sharing one handler directory, each with its own store.
pub(crate) async fn routers(n: usize, catcher: &Catcher, nats: Option<&NatsServer>) -> Vec<Kairo> {
    routers_with(n, &[monthly_limit(&catcher.url)], nats).await
}

/// Routers sharing one directory of `handlers`, each with its own store.
pub(crate) async fn routers_with(
    n: usize,
    handlers: &[Value],
    nats: Option<&NatsServer>,
) -> Vec<Kairo> {
    let dir = tempfile::tempdir().unwrap().keep();
    for (i, handler) in handlers.iter().enumerate() {
        std::fs::write(dir.join(format!("h{i}.json")), handler.to_string()).unwrap();
    }
    let handlers = dir;
    let mut started = Vec::new();
    for i in 0..n {
        let handlers = handlers.clone();
        started.push(
            start_kairo(&[], |c| {
                c.handlers.dir = handlers;
                if let Some(nats) = nats {
                    clustered(c, nats);
                    c.cluster.node = Some(format!("node-{i}"));
                }
            })
            .await,
        );
    }
    started
}

/// Which SIMs the handler fired for, and how often.
pub(crate) fn fires(catcher: &Catcher) -> BTreeMap<String, usize> {
    let mut fires = BTreeMap::new();
    for body in catcher.bodies() {
        *fires
            .entry(body["simId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    fires
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_count_a_fleets_traffic_exactly_like_one_process() {
    let events = fleet_traffic();
    // One process: the reference.
    let alone = catcher().await;
    let single = routers(1, &alone, None).await;
    for event in &events {
        assert_eq!(single[0].post(&event.to_string()).await.0, 202);
    }
    single[0].router.idle().await;
    let expected = fires(&alone);
    assert!(
        expected.len() > 5 && expected.len() < SIMS,
        "some SIMs pass 100 MiB, not all: {expected:?}"
    );

    // Three instances on one NATS server, events sent to each in turn.
    let nats = nats_server();
    let caught = catcher().await;
    let cluster = routers(3, &caught, Some(&nats)).await;
    // Let the members find each other and the partitions settle.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (i, event) in events.iter().enumerate() {
        let (status, answer) = cluster[i % 3].post(&event.to_string()).await;
        assert_eq!(status, 202, "{answer}");
    }
    let ids: Vec<String> = (events.iter())
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let evaluated_by = |id: &str| -> Vec<usize> {
        (0..3)
            .filter(|&i| {
                cluster[i]
                    .router
                    .store()
                    .event_record(id)
                    .unwrap()
                    .is_some()
            })
            .collect()
    };
    eventually("every event evaluated", Duration::from_secs(60), || {
        ids.iter().all(|id| !evaluated_by(id).is_empty())
    })
    .await;
    for kairo in &cluster {
        kairo.router.idle().await;
    }
    assert_eq!(fires(&caught), expected, "the same fires as one process");

    // Each SIM's events were evaluated by one instance, exactly once: the
    // one rendezvous hashing gives its partition.
    let members: Vec<String> = (0..3).map(|i| format!("node-{i}")).collect();
    let owner = |event: &Value| -> usize {
        let event = kairo::core::Event::from_value(event.clone()).unwrap();
        let partition = kairo::ingest::cluster::partition_of(&event, 8);
        let name = kairo::ingest::cluster::owner_of(partition, &members).unwrap();
        members.iter().position(|m| m == name).unwrap()
    };
    let mut used = BTreeSet::new();
    for event in &events {
        let at = evaluated_by(event["id"].as_str().unwrap());
        assert_eq!(at, [owner(event)], "{event}");
        used.insert(at[0]);
    }
    assert!(used.len() > 1, "partitions spread over the instances");

    // Each instance's metrics count what it evaluated (served through the
    // partition publisher, which is the webhook's sink in cluster mode).
    let mut counted = 0;
    for kairo in &cluster {
        let text = kairo.metrics_text().await;
        let line = (text
            .lines()
            .find(|l| l.starts_with("kairo_events_accepted_total ")))
        .unwrap_or_else(|| panic!("no accepted count in the metrics:\n{text}"));
        counted += line.split(' ').nth(1).unwrap().parse::<usize>().unwrap();
    }
    assert_eq!(counted, events.len());

    // An id sent again to another instance is a duplicate cluster-wide.
    let (status, answer) = cluster[1].post(&events[0].to_string()).await;
    assert_eq!(status, 202);
    assert_eq!(answer["duplicates"], 1, "{answer}");
}

/// `n` `kairo run` processes of one cluster on `nats` (`node-0`, …), each
/// in a directory of its own that `prepare` fills (rules), with `extra`
/// added to each configuration.
pub(crate) fn cluster_processes(
    n: usize,
    nats: &NatsServer,
    slack_url: &str,
    extra: &str,
    prepare: impl Fn(&std::path::Path),
) -> (Vec<tempfile::TempDir>, Vec<KairoProcess>) {
    let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let processes = (dirs.iter().enumerate())
        .map(|(i, dir)| {
            let port = free_port();
            let extra = format!(
                "{extra}[nats]\nurl = \"{}\"\nsubject = \"kairo.unused.>\"\n[cluster]\n\
                 backend = \"jetstream\"\npartitions = 8\ntakeover_seconds = 2\n\
                 heartbeat_seconds = 1\nnode = \"node-{i}\"\n",
                nats.url
            );
            let config = process_config(dir.path(), port, "http://127.0.0.1:9", slack_url, &extra);
            prepare(dir.path());
            KairoProcess::start(dir.path(), &config, port)
        })
        .collect();
    (dirs, processes)
}

/// Posts `events` one by one, to each of `urls` in turn.
pub(crate) async fn post_round_robin(events: &[Value], urls: &[String]) {
    let http = reqwest::Client::new();
    for (i, event) in events.iter().enumerate() {
        let answer = (http.post(format!("{}/v1/events", urls[i % urls.len()])))
            .json(event)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
    }
}

/// Posts `events` to each of `cluster` in turn, and waits until every one
/// is evaluated and its actions are performed.
pub(crate) async fn post_and_settle(events: &[Value], cluster: &[Kairo], nats: &NatsServer) {
    let urls: Vec<String> = cluster.iter().map(|k| k.url.clone()).collect();
    post_round_robin(events, &urls).await;
    eventually_async("every event evaluated", Duration::from_secs(30), || async {
        partitions_backlog(nats).await == 0
    })
    .await;
    for kairo in cluster {
        kairo.router.idle().await;
    }
    // Actions pulled by another instance than the one that asked for them.
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Messages in the partition stream not yet acknowledged by their partition's owner.
pub(crate) async fn partitions_backlog(nats: &NatsServer) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let mut stream = js.get_stream("KAIRO_PARTITIONS").await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_partitions_are_taken_over_and_nothing_is_lost() {
    let nats = nats_server();
    let slack = catcher().await;
    let (_dirs, mut processes) = cluster_processes(2, &nats, &slack.url, "", |dir| {
        std::fs::write(dir.join("scripts/n.rhai"), "slack(`${event.id}`);").unwrap();
    });
    tokio::time::sleep(Duration::from_secs(5)).await;

    let http = reqwest::Client::new();
    let survivor = processes[1].url.clone();
    let post = |part: usize| {
        let (http, url) = (http.clone(), survivor.clone());
        async move {
            let events: Vec<Value> = (0..100)
                .map(|i| json!({"id": format!("k-{part}-{i}"), "simId": format!("sim-{:02}", i % 20)}))
                .collect();
            let answer = (http
                .post(format!("{url}/v1/events"))
                .json(&events)
                .send()
                .await)
                .unwrap();
            assert_eq!(answer.status(), 202);
        }
    };
    // Both instances hold partitions; one dies while its share is under way,
    // and more events follow for its partitions.
    post(0).await;
    let held = processes[0].log().matches("pulling partition").count();
    assert!(held > 0, "the instance to be killed holds partitions");
    processes[0].kill9();
    let killed = std::time::Instant::now();
    post(1).await;
    let delivered = || -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for body in slack.bodies() {
            *seen
                .entry(body["text"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        seen
    };
    eventually(
        "every event's action performed",
        Duration::from_secs(60),
        || delivered().len() == 200,
    )
    .await;
    eprintln!(
        "taken over and delivered {:?} after the kill",
        killed.elapsed()
    );
    let repeated = delivered().values().filter(|&&n| n > 1).count();
    assert!(
        delivered().values().all(|&n| n <= 2) && repeated <= 100,
        "repeats only of what was in flight at the kill: {repeated}"
    );
    let log = processes[1].log();
    let pulled: BTreeSet<&str> = (log.lines())
        .filter(|line| line.contains("pulling partition"))
        .filter_map(|line| line.split("partition=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(
        pulled.len(),
        8,
        "the survivor pulls every partition: {pulled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_dies_and_every_accepted_event_is_still_evaluated() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,async_nats=warn")
        .with_test_writer()
        .try_init();
    let mut nats = nats_cluster();
    nats.ready().await;
    let slack = catcher().await;
    let urls = nats.urls();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let urls = urls.clone();
        let slack = slack.url.clone();
        instances.push(
            start_kairo(&[SLACK_EACH], move |c| {
                c.nats.url = Some(urls);
                c.nats.subject = "kairo.unused.>".into();
                c.plugins.slack.webhook_url = Some(slack);
                c.cluster.backend = kairo::ingest::cluster::Backend::Jetstream;
                c.cluster.partitions = 4;
                c.cluster.replicas = 3;
                c.cluster.takeover_seconds = 2;
                c.cluster.heartbeat_seconds = 1;
            })
            .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Events go in before, while and after a node dies; a refused batch is
    // sent again, as senders do.
    let mut accepted = BTreeSet::new();
    for round in 0..30 {
        if round == 10 {
            nats.kill(0);
        }
        let events: Vec<Value> = (0..20)
            .map(|i| json!({"id": format!("n-{round}-{i}"), "simId": format!("sim-{i:02}")}))
            .collect();
        let body = serde_json::to_string(&events).unwrap();
        let kairo = &instances[round % 2];
        let mut tries = 0;
        loop {
            let (status, answer) = kairo.post(&body).await;
            if status == 202 {
                break;
            }
            tries += 1;
            assert!(tries < 60, "refused for a minute: {status} {answer}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        accepted.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
    }
    eventually(
        "every accepted event's action performed",
        Duration::from_secs(60),
        || {
            let done: BTreeSet<String> = (slack.bodies().iter())
                .map(|b| b["text"].as_str().unwrap().to_string())
                .collect();
            accepted.is_subset(&done)
        },
    )
    .await;
    assert_eq!(accepted.len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_pull_ended_is_pulled_again() {
    let nats = nats_server();
    let slack = catcher().await;
    let url = slack.url.clone();
    let kairo = start_kairo(&[SLACK_EACH], |c| {
        clustered(c, &nats);
        c.plugins.slack.webhook_url = Some(url);
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Every partition's consumer is deleted under the instance (an operator's
    // mistake, a stream recreated): its pulls end.
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let stream = js.get_stream("KAIRO_PARTITIONS").await.unwrap();
    for p in 0..8 {
        stream
            .delete_consumer(&format!("kairo-p{p}"))
            .await
            .unwrap();
    }
    for i in 0..16 {
        let event = json!({"id": format!("d-{i}"), "simId": format!("sim-{i:02}")});
        assert_eq!(kairo.post(&event.to_string()).await.0, 202);
    }
    eventually(
        "every event evaluated after its partition is pulled again",
        Duration::from_secs(30),
        || slack.bodies().len() == 16,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_instance_takes_its_partitions_without_waiting_for_the_takeover() {
    let nats = nats_server();
    let slack = catcher().await;
    let start = |i: usize| {
        let (slack, nats) = (slack.url.clone(), &nats);
        async move {
            start_kairo(&[SLACK_EACH], |c| {
                clustered(c, nats);
                // A dead instance's partitions would wait a minute.
                c.cluster.takeover_seconds = 60;
                c.cluster.node = Some(format!("node-{i}"));
                c.plugins.slack.webhook_url = Some(slack);
            })
            .await
        }
    };
    let first = start(0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = |part: &str| -> Vec<Value> {
        (0..100)
            .map(|i| json!({"id": format!("{part}-{i}"), "simId": format!("sim-{:02}", i % 25)}))
            .collect()
    };
    post_round_robin(&events("before"), std::slice::from_ref(&first.url)).await;
    eventually(
        "the first instance performs all",
        Duration::from_secs(30),
        || slack.bodies().len() == 100,
    )
    .await;
    let second = start(1).await;
    // The members see each other within a few beats.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let joined = std::time::Instant::now();
    post_round_robin(&events("after"), std::slice::from_ref(&first.url)).await;
    eventually(
        "every event evaluated and performed after the join",
        Duration::from_secs(30),
        || slack.bodies().len() == 200,
    )
    .await;
    eprintln!("performed {:?} after the join", joined.elapsed());
    let moved = (0..100)
        .filter(|i| {
            let id = format!("after-{i}");
            second.router.store().event_record(&id).unwrap().is_some()
        })
        .count();
    assert!(moved > 0, "the joining instance evaluates its share");
}

/// An instance that received events from the `[nats]` source and died before
/// passing them on: it never answers.
struct Stuck;

#[async_trait::async_trait]
impl kairo::ingest::EventSink for Stuck {
    async fn accept(
        &self,
        _events: Vec<kairo::core::Event>,
    ) -> Result<usize, kairo::ingest::SinkError> {
        futures::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_source_passes_a_dead_instances_events_on_before_newer_ones() {
    let nats = nats_server();
    let source = |c: &mut kairo::KairoConfig| {
        clustered(c, &nats);
        c.nats.subject = "fleet.events.>".into();
        c.nats.stream = Some("FLEET".into());
        c.nats.create_stream = true;
        // Longer than the pin (takeover_seconds = 2), as when a pull
        // request came well before its last messages.
        c.nats.ack_wait_seconds = 4;
    };
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let publish = |from: usize, to: usize| {
        let js = js.clone();
        async move {
            for i in from..=to {
                let event = json!({"id": format!("s-{i}"), "simId": "sim-1"});
                let ack = js.publish("fleet.events.x", event.to_string().into()).await;
                ack.unwrap().await.unwrap();
            }
        }
    };
    // The source's first instance is given events 1-5 and dies with them.
    let mut config = kairo::KairoConfig::default();
    source(&mut config);
    let dead = async_nats::connect(&nats.url).await.unwrap();
    let pinned = Some(Duration::from_secs(2));
    let subscribed = kairo::ingest::nats::subscribe(dead.clone(), &config.nats, pinned).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(kairo::ingest::nats::run(
        subscribed.unwrap(),
        std::sync::Arc::new(Stuck),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(1, 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.abort();
    drop(dead);
    // The next instance is given 6-8 at once, 1-5 after their ack wait.
    let kairo = start_kairo(&[], |c| source(c)).await;
    publish(6, 8).await;
    let order = || async {
        let lines = kairo.get_text("/v1/events?last=20").await;
        let mut ids: Vec<String> = (lines.lines())
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .map(|r| r["event"]["id"].as_str().unwrap().to_string())
            .collect();
        ids.reverse();
        ids
    };
    eventually_async("every event evaluated", Duration::from_secs(30), || async {
        order().await.len() == 8
    })
    .await;
    let expected: Vec<String> = (1..=8).map(|i| format!("s-{i}")).collect();
    assert_eq!(order().await, expected, "the SIM's events in order");
    stop.cancel();
}
