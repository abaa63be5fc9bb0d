//! NATS ingest (core and JetStream), scale-out and the publish action, against a real nats-server.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use kairo_store::DeadLetterKind;
use serde_json::json;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

fn moved(soracom: &Soracom, sims: &[String]) -> bool {
    soracom.emulator.with_state(|s| {
        sims.iter().all(|id| {
            s.sims
                .get(id)
                .is_some_and(|sim| sim.group_id.as_deref() == Some("group-to-id"))
        })
    })
}

fn set_group_calls(soracom: &Soracom) -> usize {
    soracom
        .emulator
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/set_group") && r.status == 200)
        .count()
}

fn sims(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("sim-{i:04}")).collect()
}

fn ota_event(i: usize) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"id": format!("ev-{i}"), "simId": format!("sim-{i:04}"), "otaStatus": "finished"}),
    )
    .unwrap()
}

#[tokio::test]
async fn core_subject_events_are_routed_and_bad_messages_become_dead_letters() {
    let nats = nats_server();
    let soracom = soracom(false).await;
    let kairo = start_kairo(&[("ota.rhai", OTA_RULE)], |c| {
        use_soracom(c, &soracom);
        c.nats.url = Some(nats.url.clone());
        c.nats.subject = "soracom.events.>".into();
    })
    .await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    client
        .publish("soracom.events.ota", ota_event(1).into())
        .await
        .unwrap();
    client
        .publish("soracom.events.bad", "not json".into())
        .await
        .unwrap();
    client
        .publish("soracom.events.bad", "42".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    eventually("SIM moved", LIMIT, || moved(&soracom, &sims(2)[1..])).await;
    let inputs = || -> Vec<_> {
        let letters = kairo.router.store().dead_letters().unwrap();
        letters
            .into_iter()
            .filter(|l| l.kind == DeadLetterKind::Input)
            .collect()
    };
    eventually("two input dead letters", LIMIT, || inputs().len() == 2).await;
    let letters = inputs();

    assert!(
        letters
            .iter()
            .all(|l| l.source.as_deref() == Some("nats:soracom.events.bad"))
    );
    let errors: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("invalid JSON at line 1 column 2")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("found a number")),
        "{errors:?}"
    );
    assert_eq!(
        letters
            .iter()
            .filter_map(|l| l.input.as_deref())
            .collect::<Vec<_>>()
            .len(),
        2
    );
}

#[tokio::test]
async fn jetstream_consumer_delivers_at_least_once_and_dedupes() {
    const N: usize = 300;
    let nats = nats_server();
    let soracom = soracom(false).await;
    let kairo = start_kairo(&[("ota.rhai", OTA_RULE)], |c| {
        use_soracom(c, &soracom);
        c.nats.url = Some(nats.url.clone());
        c.nats.subject = "soracom.events.>".into();
        c.nats.stream = Some("SORACOM_EVENTS".into());
        c.nats.create_stream = true;
        c.nats.max_ack_pending = 50;
        c.dispatch.limits.clear();
    })
    .await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = jetstream::new(client);
    for i in 0..N {
        js.publish("soracom.events.ota", ota_event(i).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // The same event again (a producer retry): deduplicated by id.
    js.publish("soracom.events.ota", ota_event(7).into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Not an event: kept as a dead letter and acknowledged, never redelivered forever.
    js.publish("soracom.events.bad", "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();

    eventually("every SIM moved", LIMIT, || moved(&soracom, &sims(N))).await;
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream("SORACOM_EVENTS")
        .await
        .unwrap()
        .get_consumer("kairo")
        .await
        .unwrap();
    eventually_async(
        "every message acknowledged",
        Duration::from_secs(10),
        || {
            let consumer = consumer.clone();
            async move {
                let info = consumer.get_info().await.unwrap();
                info.num_pending == 0 && info.num_ack_pending == 0
            }
        },
    )
    .await;
    kairo.router.idle().await;
    assert_eq!(
        set_group_calls(&soracom),
        N,
        "one set_group per event, the duplicate ignored"
    );
    let letters: Vec<_> = kairo
        .router
        .store()
        .dead_letters()
        .unwrap()
        .into_iter()
        .filter(|l| l.kind == DeadLetterKind::Input)
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].source.as_deref(),
        Some("jetstream:soracom.events.bad")
    );
    assert_eq!(letters[0].input.as_deref(), Some("{not json"));
}

#[tokio::test]
async fn missing_stream_fails_the_start_with_the_key_to_set() {
    let nats = nats_server();
    let rules = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(rules.path(), data.path());
    config.nats.url = Some(nats.url.clone());
    config.nats.stream = Some("NOPE".into());
    let error = kairo::Router::builder()
        .config(config)
        .start()
        .await
        .err()
        .unwrap();
    assert!(
        format!("{error:#}").contains("nats.create_stream = true"),
        "{error:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_durable_consumer_and_act_once_per_event() {
    const N: usize = 400;
    let nats = nats_server();
    let soracom = soracom(false).await;
    let slack = catcher().await;
    let extra = format!(
        "[nats]\nurl = \"{}\"\nsubject = \"soracom.events.>\"\nstream = \"SORACOM_EVENTS\"\ncreate_stream = true\nmax_ack_pending = 20\n\
         [dispatch.limits.soracom]\nconcurrency = 8\nper_second = 1000000.0\n",
        nats.url
    );
    let mut processes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = process_config(dir.path(), port, &soracom.url, &slack.url, &extra);
        std::fs::write(
            dir.path().join("scripts/ota.rhai"),
            r#"if payload.otaStatus == "finished" { set_group(simId, "group-to-id"); }"#,
        )
        .unwrap();
        processes.push(KairoProcess::start(dir.path(), &config, port));
        dirs.push(dir);
    }
    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    for i in 0..N {
        js.publish("soracom.events.ota", ota_event(i).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually("every SIM moved", Duration::from_secs(60), || {
        moved(&soracom, &sims(N))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        set_group_calls(&soracom),
        N,
        "each event's action performed once in total"
    );

    let http = reqwest::Client::new();
    let mut per_process = Vec::new();
    for process in &processes {
        let history: Vec<serde_json::Value> = http
            .get(format!("{}/v1/history?limit=10000", process.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        per_process.push(history.len());
    }
    assert_eq!(per_process.iter().sum::<usize>(), N, "{per_process:?}");
    assert!(
        per_process.iter().all(|n| *n > 0),
        "both instances took a share: {per_process:?}"
    );
}

#[tokio::test]
async fn publish_action_reaches_core_nats_and_jetstream() {
    let nats = nats_server();
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut subscriber = client.subscribe("kairo.out.>").await.unwrap();
    client.flush().await.unwrap();
    let rule = r#"publish(`kairo.out.${simId}`, #{ simId: simId, status: payload.status });"#;
    let kairo = start_kairo(&[("fwd.rhai", rule)], |c| {
        c.plugins.nats.url = Some(nats.url.clone())
    })
    .await;
    kairo.post(r#"{"simId": "s1", "status": "active"}"#).await;
    let message = tokio::time::timeout(LIMIT, subscriber.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.subject.as_str(), "kairo.out.s1");
    let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(body, json!({"simId": "s1", "status": "active"}));

    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "OUT".into(),
        subjects: vec!["kairo.js.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let kairo = start_kairo(
        &[("fwd.rhai", r#"publish("kairo.js.done", payload);"#)],
        |c| {
            c.plugins.nats.url = Some(nats.url.clone());
            c.plugins.nats.jetstream = true;
        },
    )
    .await;
    kairo.post(r#"{"x": 1}"#).await;
    kairo.router.idle().await;
    let history = kairo.router.history();
    assert!(history[0].succeeded, "{history:?}");
    assert_eq!(history[0].detail["stream"], "OUT");
    let mut stream = js.get_stream("OUT").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

/// A sink that refuses its first chunk (the partition stream unreachable,
/// say) and records the ids of what it accepts after.
#[derive(Default)]
struct RefusesFirst {
    refused: std::sync::atomic::AtomicBool,
    accepted: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl kairo::ingest::EventSink for RefusesFirst {
    async fn accept(
        &self,
        events: Vec<kairo::core::Event>,
    ) -> Result<usize, kairo::ingest::SinkError> {
        if !self.refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let down = std::io::Error::other("the partition stream is unreachable");
            return Err(kairo::ingest::SinkError::new(down));
        }
        let mut accepted = self.accepted.lock().unwrap();
        accepted.extend(events.into_iter().map(|e| e.id));
        Ok(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_source_sends_a_refused_chunk_back_before_passing_later_ones() {
    let nats = nats_server();
    let config = kairo::ingest::nats::NatsConfig {
        url: Some(nats.url.clone()),
        subject: "fleet.events.>".into(),
        stream: Some("FLEET".into()),
        create_stream: true,
        ..Default::default()
    };
    let client = async_nats::connect(&nats.url).await.unwrap();
    let pinned = Some(Duration::from_secs(2));
    let source = kairo::ingest::nats::subscribe(client.clone(), &config, pinned)
        .await
        .unwrap();
    let sink = std::sync::Arc::new(RefusesFirst::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(kairo::ingest::nats::run(source, sink.clone(), stop.clone()));
    let js = jetstream::new(client);
    for i in 1..=8 {
        let event = json!({"id": format!("r-{i}"), "simId": "sim-1"});
        let ack = js.publish("fleet.events.x", event.to_string().into()).await;
        ack.unwrap().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("every event passed on", LIMIT, || {
        sink.accepted.lock().unwrap().len() >= 8
    })
    .await;
    let expected: Vec<String> = (1..=8).map(|i| format!("r-{i}")).collect();
    assert_eq!(
        *sink.accepted.lock().unwrap(),
        expected,
        "the refused chunk first, once, then the rest in order"
    );
    stop.cancel();
    run.await.unwrap();
}
