//! Ingest throughput with durability on: events/s accepted through the webhook
//! (8 concurrent clients posting batches of 100) and through a JetStream
//! durable consumer, each committed to the redb store before acknowledgement.
//!
//! `cargo bench --bench ingest` (JetStream needs `nats-server` on PATH or NATS_SERVER_BIN).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kairo::KairoConfig;

const BATCH: u64 = 100;
const CLIENTS: u64 = 8;

fn config(dir: &std::path::Path) -> KairoConfig {
    let mut config = KairoConfig::default();
    config.server.listen = "127.0.0.1:0".into();
    config.rules.dir = dir.join("scripts");
    config.rules.watch = false;
    config.store.path = dir.join("kairo");
    std::fs::create_dir_all(&config.rules.dir).unwrap();
    config
}

fn batch_body(next: &AtomicU64) -> String {
    let start = next.fetch_add(BATCH, Ordering::Relaxed);
    let events: Vec<String> = (start..start + BATCH)
        .map(|i| format!(r#"{{"id":"ev-{i}","simId":"8981100000{i:09}","eventType":"SimSubscriptionStatus","payload":{{"otaStatus":"finished"}}}}"#))
        .collect();
    format!("[{}]", events.join(","))
}

fn webhook(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let router = runtime
        .block_on(kairo::Router::builder().config(config(dir.path())).start())
        .unwrap();
    let url = format!("http://{}/v1/events", router.local_addr());
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("webhook_batch100_8clients", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            async move {
                let start = Instant::now();
                let per_client = iters.div_ceil(CLIENTS);
                let tasks: Vec<_> = (0..CLIENTS)
                    .map(|_| {
                        let (client, url, next) = (client.clone(), url.clone(), next.clone());
                        tokio::spawn(async move {
                            for _ in 0..per_client {
                                let response = client
                                    .post(&url)
                                    .body(batch_body(&next))
                                    .send()
                                    .await
                                    .unwrap();
                                assert_eq!(response.status(), 202);
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_client * CLIENTS) as f64)
            }
        })
    });
    group.finish();
    runtime.block_on(router.shutdown()).unwrap();
}

struct NatsServer(Child);

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn jetstream(c: &mut Criterion) {
    let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nats_dir = tempfile::tempdir().unwrap();
    let child = Command::new(&binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(nats_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("the JetStream bench needs nats-server ({binary}): {e}"));
    let _server = NatsServer(child);
    let url = format!("nats://127.0.0.1:{port}");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.nats.url = Some(url.clone());
    config.nats.subject = "soracom.events.>".into();
    config.nats.stream = Some("SORACOM_EVENTS".into());
    config.nats.create_stream = true;
    config.nats.max_ack_pending = 10_000;
    let router = runtime
        .block_on(kairo::Router::builder().config(config).start())
        .unwrap();
    let js = runtime
        .block_on(async { async_nats::jetstream::new(async_nats::connect(&url).await.unwrap()) });
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    group.bench_function("jetstream_event", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let js = js.clone();
            let first = next.fetch_add(iters, Ordering::Relaxed);
            let accepted = &router.metrics().events_accepted;
            let target = accepted.get() + iters;
            async move {
                let start = Instant::now();
                let mut acks = Vec::new();
                for i in first..first + iters {
                    let body =
                        format!(r#"{{"id":"js-{i}","simId":"sim-{i}","otaStatus":"finished"}}"#);
                    acks.push(js.publish("soracom.events.ota", body.into()).await.unwrap());
                    if acks.len() >= 2_000 {
                        for ack in acks.drain(..) {
                            ack.await.unwrap();
                        }
                    }
                }
                for ack in acks {
                    ack.await.unwrap();
                }
                while accepted.get() < target {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                start.elapsed()
            }
        })
    });
    group.finish();
    runtime.block_on(router.shutdown()).unwrap();
}

criterion_group!(benches, webhook, jetstream);
criterion_main!(benches);
