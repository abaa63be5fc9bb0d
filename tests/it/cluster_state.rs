//! Cluster mode's shared state on a real nats-server: a partition's
//! handler state in its journal, and group-wide counters and suppressions,
//! each outliving an instance.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::cluster::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_with_an_instance_killed_midway_fires_like_one_process() {
    let events = fleet_traffic();
    let (first_half, second_half) = events.split_at(events.len() / 2);
    // One process: the reference, after each half.
    let alone = catcher().await;
    let single = routers(1, &alone, None).await;
    post_round_robin(first_half, std::slice::from_ref(&single[0].url)).await;
    single[0].router.idle().await;
    let after_first = fires(&alone);
    post_round_robin(second_half, std::slice::from_ref(&single[0].url)).await;
    single[0].router.idle().await;
    let expected = fires(&alone);
    assert!(
        after_first.len() < expected.len(),
        "some SIMs pass the limit in each half: {after_first:?} then {expected:?}"
    );

    // Three processes; the first half of the month, then one is killed, then
    // the second half goes to the two left.
    let nats = nats_server();
    let caught = catcher().await;
    let handlers = tempfile::tempdir().unwrap();
    let handler = monthly_limit(&caught.url).to_string();
    std::fs::write(handlers.path().join("m.json"), handler).unwrap();
    let extra = format!("[handlers]\ndir = \"{}\"\n", handlers.path().display());
    let (_dirs, mut processes) = cluster_processes(3, &nats, "http://127.0.0.1:9", &extra, |_| {});
    tokio::time::sleep(Duration::from_secs(5)).await;
    let urls: Vec<String> = processes.iter().map(|p| p.url.clone()).collect();
    post_round_robin(first_half, &urls).await;
    eventually(
        "the first half evaluated, its fires performed",
        Duration::from_secs(60),
        || fires(&caught) == after_first,
    )
    .await;
    eventually_async(
        "every first-half event acknowledged",
        Duration::from_secs(30),
        || async { partitions_backlog(&nats).await == 0 },
    )
    .await;
    assert!(
        processes[0].log().contains("pulling partition"),
        "the instance to be killed holds partitions"
    );
    processes[0].kill9();
    post_round_robin(second_half, &urls[1..]).await;
    eventually(
        "the month's fires performed",
        Duration::from_secs(60),
        || fires(&caught).len() >= expected.len(),
    )
    .await;
    // Late or repeated fires would show up now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fires(&caught), expected, "the same fires as one process");
}

/// A handler for group `G1` that calls `url` with its id and the SIM.
pub(crate) fn group_handler(id: &str, rule: &str, limit_mib: u64, url: &str) -> Value {
    json!({
        "name": id, "handlerId": id, "status": "active", "targetGroupId": "G1",
        "ruleConfig": {"type": rule, "properties": {
            "runOnceAmongTarget": "true",
            "inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH",
            "limitTotalTrafficMegaByte": limit_mib.to_string()}},
        "actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "url": url, "httpMethod": "POST",
            "contentType": "application/json",
            "body": format!("{{\"handler\":\"{id}\",\"simId\":\"${{simId}}\"}}")}}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_counters_and_run_once_hold_for_the_whole_cluster() {
    let nats = nats_server();
    let caught = catcher().await;
    // Once for the group when any of its SIMs passes 1 MiB a month; once
    // for the group when the group passes 60 MiB.
    let handlers = [
        group_handler("sim-over", "SimMonthlyTotalTrafficRule", 1, &caught.url),
        group_handler("group-over", "MonthlyTotalTrafficRule", 60, &caught.url),
    ];
    let cluster = routers_with(3, &handlers, Some(&nats)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // 40 SIMs of the group, 2 MiB each, twice: 160 MiB in all.
    let events: Vec<Value> = (0..80)
        .map(|i| {
            json!({"id": format!("g-{i}"), "eventType": "TrafficUsage", "groupId": "G1",
                   "simId": format!("sim-{:02}", i % 40), "operatorId": "OP1",
                   "payload": {"bytes": 2 * 1024 * 1024}})
        })
        .collect();
    post_and_settle(&events, &cluster, &nats).await;
    let fired: Vec<String> = (caught.bodies().iter())
        .map(|b| b["handler"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fired.iter().filter(|h| *h == "sim-over").count(),
        1,
        "runOnceAmongTarget fires once for the whole cluster: {fired:?}"
    );
    assert_eq!(
        fired.iter().filter(|h| *h == "group-over").count(),
        1,
        "the group's traffic, counted across the instances, passes its limit once: {fired:?}"
    );
    // The group's month counter holds every event's bytes, once.
    let month = chrono::Utc::now().format("%Y%m");
    let key = format!("c/group/G1/m{month}");
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let shared = kairo::ingest::cluster::SharedState::open(
        js,
        kairo::ingest::cluster::ClusterConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(shared.counters(&[key]).await.unwrap(), [160 * 1024 * 1024]);
}

/// A rule that holds itself back for the day on events naming no SIM, which
/// are partitioned by their ids and so spread over every instance.
const ALARM_RULE: &str = r#"if eventType == "Alarm" && simId == () && imsi == () {
    slack(`alarm ${event.id}`);
    reevaluate("BEGINNING_OF_NEXT_DAY");
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_reevaluate_on_events_naming_no_sim_holds_for_the_whole_cluster() {
    let nats = nats_server();
    let slack = catcher().await;
    let rules = [("alarm.rhai", ALARM_RULE)];
    let cluster = cluster_of(3, &nats, &rules, Duration::from_secs(5), |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("alarm-{i}"), "eventType": "Alarm", "payload": {"n": i}}))
        .collect();
    post_and_settle(&events, &cluster, &nats).await;
    let sent = slack.bodies();
    assert_eq!(sent.len(), 1, "once a day for the whole cluster: {sent:?}");
    // Every other event's trace says the rule was held back.
    let mut held = 0;
    for kairo in &cluster {
        for event in &events {
            let id = event["id"].as_str().unwrap();
            let Some(record) = kairo.router.store().event_record(id).unwrap() else {
                continue;
            };
            let trace = record.trace.get();
            if trace.contains("suppressed") {
                held += 1;
            } else {
                assert!(trace.contains("fired"), "{id}: {trace}");
            }
        }
    }
    assert_eq!(
        held,
        events.len() - 1,
        "every event but the one that fired is held back"
    );
}

/// A partition sink to drive partitions with directly: it records the
/// events it evaluates and the state it is given back, counts each SIM's
/// events in one state value (and, when `group` is set, adds 1 a event to
/// that group's shared counter), and refuses its first chunk when asked to.
#[derive(Default)]
struct Recorder {
    refuse_first: bool,
    group: Option<String>,
    refused: std::sync::atomic::AtomicBool,
    evaluated: std::sync::Mutex<Vec<String>>,
    counts: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    restored: std::sync::Mutex<Vec<(String, Option<i64>)>>,
}

#[async_trait::async_trait]
impl kairo::ingest::EventSink for Recorder {
    async fn accept(
        &self,
        _events: Vec<kairo::core::Event>,
    ) -> Result<usize, kairo::ingest::SinkError> {
        unreachable!("a partition's events are evaluated, not accepted")
    }
}

#[async_trait::async_trait]
impl kairo::ingest::cluster::PartitionSink for Recorder {
    async fn evaluate(
        &self,
        events: Vec<kairo::core::Event>,
    ) -> Result<kairo::ingest::cluster::PartitionEvaluation, kairo::ingest::SinkError> {
        if self.refuse_first && !self.refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let full = std::io::Error::other("the store is full");
            return Err(kairo::ingest::SinkError::new(full));
        }
        let mut counts = self.counts.lock().unwrap();
        let mut state = Vec::new();
        for event in events {
            let key = format!("c/sim/{}/all", event.sim_id.clone().unwrap());
            let count = counts.entry(key.clone()).or_default();
            *count += 1;
            state.push((key, *count));
            self.evaluated.lock().unwrap().push(event.id);
        }
        let adds = (self.group.iter())
            .map(|group| (format!("c/group/{group}/all"), state.len() as i64))
            .collect();
        Ok(kairo::ingest::cluster::PartitionEvaluation {
            state,
            actions: Vec::new(),
            adds,
        })
    }

    async fn restore(
        &self,
        values: Vec<(String, Option<i64>)>,
    ) -> Result<(), kairo::ingest::SinkError> {
        self.restored.lock().unwrap().extend(values);
        Ok(())
    }

    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A cluster of one partition on `nats`, its publisher (whose local sink is
/// `sink`), and the settings.
async fn one_partition(
    nats: &NatsServer,
    sink: std::sync::Arc<Recorder>,
) -> (
    async_nats::jetstream::Context,
    kairo::ingest::cluster::ClusterConfig,
    kairo::ingest::cluster::PartitionPublisher,
) {
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let config = kairo::ingest::cluster::ClusterConfig {
        backend: kairo::ingest::cluster::Backend::Jetstream,
        partitions: 1,
        takeover_seconds: 2,
        heartbeat_seconds: 1,
        ..Default::default()
    };
    let publisher =
        kairo::ingest::cluster::PartitionPublisher::open(js.clone(), config.clone(), WINDOW, sink)
            .await
            .unwrap();
    (js, config, publisher)
}

/// The dedupe and history windows of [`one_partition`].
const WINDOW: Duration = Duration::from_secs(600);

/// Pulls the partitions of `config` into `sink` until the token is cancelled.
async fn own(
    js: &async_nats::jetstream::Context,
    config: &kairo::ingest::cluster::ClusterConfig,
    sink: std::sync::Arc<Recorder>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio_util::sync::CancellationToken,
) {
    use kairo::ingest::cluster::{ActionQueue, Members};
    let actions = ActionQueue::open(js.clone(), config.clone(), WINDOW, WINDOW)
        .await
        .unwrap();
    let members = Members::join(js, config).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let run = kairo::ingest::cluster::run(
        js.clone(),
        config.clone(),
        members,
        sink,
        actions,
        stop.clone(),
    );
    (tokio::spawn(run), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_evaluates_what_a_dead_owner_held_before_newer_events() {
    let nats = nats_server();
    let sink = std::sync::Arc::new(Recorder::default());
    let (js, config, publisher) = one_partition(&nats, sink.clone()).await;
    let event = |i: usize| {
        kairo::core::Event::from_value(json!({"id": format!("o-{i}"), "simId": "sim-1"})).unwrap()
    };
    // An owner asks for up to 5 messages and gets them 1.5 s later: its pin
    // lapses 2 s after it asked, their acknowledgement time 2 s after they
    // came. Then it dies with them.
    let consumer = kairo::ingest::cluster::partition_consumer(&js, &config, 0)
        .await
        .unwrap();
    let dead = async_nats::connect(&nats.url).await.unwrap();
    let inbox = dead.new_inbox();
    let mut delivered = dead.subscribe(inbox.clone()).await.unwrap();
    let next = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
        config.stream,
        consumer.cached_info().name
    );
    let pull = json!({"batch": 5, "expires": 10_000_000_000u64, "group": "kairo"});
    (dead.publish_with_reply(next, inbox, pull.to_string().into()))
        .await
        .unwrap();
    dead.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kairo::ingest::EventSink::accept(&publisher, (1..=5).map(event).collect())
        .await
        .unwrap();
    let mut received = 0;
    while received < 5 {
        let message = delivered.next().await.unwrap();
        received += usize::from(!message.payload.is_empty());
    }
    drop(delivered);
    dead.drain().await.unwrap();
    // The next owner is given newer events of the same SIM at once.
    let (run, stop) = own(&js, &config, sink.clone()).await;
    kairo::ingest::EventSink::accept(&publisher, (6..=8).map(event).collect())
        .await
        .unwrap();
    eventually("every event evaluated", Duration::from_secs(30), || {
        sink.evaluated.lock().unwrap().len() >= 8
    })
    .await;
    let order: Vec<String> = (1..=8).map(|i| format!("o-{i}")).collect();
    assert_eq!(
        *sink.evaluated.lock().unwrap(),
        order,
        "the SIM's events in order"
    );
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_entrys_shared_counts_are_added_once_whoever_adds_them() {
    let nats = nats_server();
    let sink = std::sync::Arc::new(Recorder {
        group: Some("G".into()),
        ..Recorder::default()
    });
    let (js, config, publisher) = one_partition(&nats, sink.clone()).await;
    let shared = kairo::ingest::cluster::SharedState::open(js.clone(), config.clone())
        .await
        .unwrap();
    let counter = || async {
        let key = "c/group/G/all".to_string();
        shared.counters(&[key]).await.unwrap()[0]
    };
    let events = (0..10)
        .map(|i| kairo::core::Event::from_value(json!({"id": format!("j-{i}"), "simId": "sim-1"})))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    kairo::ingest::EventSink::accept(&publisher, events)
        .await
        .unwrap();
    let (run, stop) = own(&js, &config, sink.clone()).await;
    eventually_async("each event counted", Duration::from_secs(30), || async {
        counter().await == 10
    })
    .await;
    stop.cancel();
    run.await.unwrap();

    // An owner stored an entry adding 5 and died before adding it.
    let entry = json!({"sequences": [], "values": [], "adds": [["c/group/G/all", 5]]});
    let subject = format!("{}.0", config.state_subject_prefix);
    (js.publish(subject, entry.to_string().into()).await)
        .unwrap()
        .await
        .unwrap();
    let restores = || sink.restored.lock().unwrap().len();
    for _ in 0..2 {
        // Each next owner adds the last entry's counts again: once in all.
        let before = restores();
        let (run, stop) = own(&js, &config, sink.clone()).await;
        eventually("the journal read", Duration::from_secs(30), || {
            restores() > before
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(counter().await, 15);
        stop.cancel();
        run.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_could_not_be_evaluated_is_evaluated_later_not_skipped() {
    let nats = nats_server();
    let sink = std::sync::Arc::new(Recorder {
        refuse_first: true,
        ..Recorder::default()
    });
    let (js, config, publisher) = one_partition(&nats, sink.clone()).await;
    // Stored before the partition is pulled: more than one chunk waits.
    let ids: BTreeSet<String> = (0..300).map(|i| format!("c-{i}")).collect();
    let events = (ids.iter())
        .map(|id| kairo::core::Event::from_value(json!({"id": id, "simId": "sim-1"})).unwrap())
        .collect();
    kairo::ingest::EventSink::accept(&publisher, events)
        .await
        .unwrap();
    let (run, stop) = own(&js, &config, sink.clone()).await;
    eventually("every event evaluated", Duration::from_secs(30), || {
        sink.evaluated.lock().unwrap().len() >= ids.len()
    })
    .await;
    stop.cancel();
    run.await.unwrap();
    let evaluated = sink.evaluated.lock().unwrap().clone();
    assert_eq!(evaluated.iter().cloned().collect::<BTreeSet<_>>(), ids);
    assert_eq!(evaluated.len(), ids.len(), "each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_journal_is_rolled_up_and_read_back_whole() {
    let nats = nats_server();
    let first = std::sync::Arc::new(Recorder::default());
    let (js, config, publisher) = one_partition(&nats, first.clone()).await;
    let (run, stop) = own(&js, &config, first.clone()).await;
    // One event at a time: one journal entry each, past a roll-up.
    for i in 0..100 {
        let event = json!({"id": format!("j-{i}"), "simId": format!("sim-{}", i % 3)});
        let event = kairo::core::Event::from_value(event).unwrap();
        kairo::ingest::EventSink::accept(&publisher, vec![event])
            .await
            .unwrap();
        let evaluated = || first.counts.lock().unwrap().values().sum::<i64>() == i + 1;
        eventually("the event evaluated", Duration::from_secs(10), evaluated).await;
    }
    stop.cancel();
    run.await.unwrap();
    let mut journal = js.get_stream("KAIRO_STATE").await.unwrap();
    let entries = journal.info().await.unwrap().state.messages;
    assert!(entries < 64, "rolled up: {entries} entries left");

    // The next owner reads every SIM's count back.
    let next = std::sync::Arc::new(Recorder::default());
    let (run, stop) = own(&js, &config, next.clone()).await;
    eventually("the state read back", Duration::from_secs(10), || {
        next.restored.lock().unwrap().len() == 3
    })
    .await;
    stop.cancel();
    run.await.unwrap();
    let mut restored = next.restored.lock().unwrap().clone();
    restored.sort();
    assert_eq!(
        restored,
        [
            ("c/sim/sim-0/all".to_string(), Some(34)),
            ("c/sim/sim-1/all".to_string(), Some(33)),
            ("c/sim/sim-2/all".to_string(), Some(33)),
        ]
    );
}
