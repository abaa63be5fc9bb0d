//! Load for `benches/http/run.sh` where wrk does not fit.
//!
//! - `bench_load rate URL RATE SECONDS CONNECTIONS`: single-event POSTs at a
//!   fixed rate (open loop: latency counts from when each request was due, so
//!   a stall is not hidden by sending less); prints the p50/p99 latency.
//! - `bench_load js-raw NATS_URL COUNT`: publishes COUNT events to a
//!   file-backed JetStream stream nobody consumes, waiting for every ack.
//! - `bench_load js-kairo NATS_URL COUNT METRICS_URL`: publishes COUNT events
//!   to `soracom.events.bench` and waits until the router's
//!   `kairo_events_accepted_total` has grown by COUNT (each acknowledged to
//!   JetStream only after its durable commit).
//!
//! Each prints one `BENCH key=value ...` line.

use std::time::{Duration, Instant};

use async_nats::jetstream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Unacknowledged publishes at once (async-nats waits beyond 5,000).
const WINDOW: usize = 4_000;

/// The same SORACOM-style event as `benches/http/events.lua`.
fn event(run: &str, i: u64) -> String {
    format!(
        concat!(
            r#"{{"id":"{}-{}","eventType":"SimSubscriptionStatus","simId":"89811000{:011}","#,
            r#""imsi":"44010{:010}","operatorId":"OP0012345678","timestamp":1764590000000,"#,
            r#""groupId":"group-3","payload":{{"otaStatus":"started","subscription":"planX3","#,
            r#""primaryImsi":"440100000000001","iccid":"8981100000000000001","#,
            r#""tags":{{"name":"device-{}","site":"tokyo-3"}},"note":"bench event padded to a realistic size"}}}}"#
        ),
        run,
        i,
        i % 100_000,
        i % 100_000,
        i % 1_000
    )
}

fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}", now.as_millis())
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: {what}"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("rate") => {
            let url: String = arg(&args, 2, "URL");
            fixed_rate(
                &url,
                arg(&args, 3, "RATE"),
                arg(&args, 4, "SECONDS"),
                arg(&args, 5, "CONNECTIONS"),
            )
            .await
        }
        Some("js-raw") => {
            js_raw(&arg::<String>(&args, 2, "NATS_URL"), arg(&args, 3, "COUNT")).await
        }
        Some("js-kairo") => {
            js_kairo(
                &arg::<String>(&args, 2, "NATS_URL"),
                arg(&args, 3, "COUNT"),
                &arg::<String>(&args, 4, "METRICS_URL"),
            )
            .await
        }
        _ => panic!("usage: bench_load rate|js-raw|js-kairo ..."),
    }
}

async fn fixed_rate(url: &str, rate: u64, seconds: u64, connections: u64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections as usize)
        .build()
        .unwrap();
    let run = run_id();
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let workers: Vec<_> = (0..connections)
        .map(|k| {
            let (client, url, run) = (client.clone(), url.to_string(), run.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0u64;
                let mut due = start + interval.mul_f64(k as f64 / connections as f64);
                let mut i = k;
                while i < total {
                    tokio::time::sleep_until(due.into()).await;
                    let response = client.post(&url).body(event(&run, i)).send().await;
                    match response {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies.push(due.elapsed().as_micros() as u64);
                        }
                        _ => failed += 1,
                    }
                    due += interval;
                    i += connections;
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total as usize);
    let mut failed = 0;
    for worker in workers {
        let (latencies, f) = worker.await.unwrap();
        all.extend(latencies);
        failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "BENCH requests={} failed={failed} achieved={:.0} p50_us={} p99_us={} max_us={}",
        all.len(),
        all.len() as f64 / elapsed,
        at(0.50),
        at(0.99),
        all.last().copied().unwrap_or(0)
    );
}

async fn publish_all(js: &jetstream::Context, subject: &str, count: u64) -> Instant {
    let run = run_id();
    let start = Instant::now();
    let mut acks = std::collections::VecDeque::with_capacity(WINDOW);
    for i in 0..count {
        if acks.len() >= WINDOW {
            let ack: jetstream::context::PublishAckFuture = acks.pop_front().unwrap();
            ack.await.expect("publish acknowledged");
        }
        let body = event(&run, i);
        acks.push_back(
            js.publish(subject.to_string(), body.into())
                .await
                .expect("publish"),
        );
    }
    for ack in acks {
        ack.await.expect("publish acknowledged");
    }
    start
}

async fn js_raw(url: &str, count: u64) {
    let js = jetstream::new(async_nats::connect(url).await.expect("connect to NATS"));
    let _ = js.delete_stream("BENCH_RAW").await;
    js.create_stream(jetstream::stream::Config {
        name: "BENCH_RAW".into(),
        subjects: vec!["bench.raw.>".into()],
        ..Default::default()
    })
    .await
    .expect("create the stream");
    let start = publish_all(&js, "bench.raw.ota", count).await;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "BENCH events={count} seconds={seconds:.3} events_per_s={:.0}",
        count as f64 / seconds
    );
    let _ = js.delete_stream("BENCH_RAW").await;
}

async fn accepted(client: &reqwest::Client, metrics: &str) -> u64 {
    let text = client
        .get(metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("kairo_events_accepted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

async fn js_kairo(url: &str, count: u64, metrics: &str) {
    let js = jetstream::new(async_nats::connect(url).await.expect("connect to NATS"));
    let client = reqwest::Client::new();
    let before = accepted(&client, metrics).await;
    let start = publish_all(&js, "soracom.events.bench", count).await;
    let published = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    while accepted(&client, metrics).await < before + count {
        assert!(
            Instant::now() < deadline,
            "the router did not accept every event within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "BENCH events={count} published_s={published:.3} seconds={seconds:.3} events_per_s={:.0}",
        count as f64 / seconds
    );
}
