//! The matching core: naive (every rule) vs indexed evaluation across rule
//! counts, event decoding, and the in-process pipeline for a webhook batch:
//! decode → durable inbox commit → match → durable outbox commit.
//!
//! `cargo bench --bench matching`; ids are stable across versions:
//! `matching/naive/{1,100,10000}`, `matching/indexed/{1,100,1000,10000,100000}`,
//! `decode/event`, `pipeline/webhook_batch`.

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kairo_core::Event;
use kairo_store::{Batch, Store};

const EVENTS: usize = 1_000;

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("matching");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (mode, counts) in [
        ("naive", &[1usize, 100, 10_000][..]),
        ("indexed", &[1, 100, 1_000, 10_000, 100_000][..]),
    ] {
        for &count in counts {
            let rules = support::rule_set(count);
            let events = support::events(EVENTS, count);
            let mut n = 0usize;
            group.bench_function(BenchmarkId::new(mode, count), |b| {
                b.iter(|| {
                    let event = &events[n % EVENTS];
                    n += 1;
                    let evaluation = if mode == "naive" {
                        rules.evaluate_naive(event)
                    } else {
                        rules.evaluate(event)
                    };
                    black_box(evaluation.requests)
                })
            });
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let bodies = support::event_bodies(EVENTS, 10_000);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let mut n = 0usize;
    group.bench_function("event", |b| {
        b.iter(|| {
            let body = &bodies[n % EVENTS];
            n += 1;
            black_box(Event::from_slice(body.as_bytes()).unwrap())
        })
    });
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    const BATCH: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("bench")).unwrap();
    let rules = support::rule_set(10_000);
    let bodies: Vec<String> = support::event_bodies(BATCH * 50, 10_000);
    let batches: Vec<String> = bodies
        .chunks(BATCH)
        .map(|chunk| format!("[{}]", chunk.join(",")))
        .collect();
    let mut group = c.benchmark_group("pipeline");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    // Evaluation alone (no store), with and without building each event's
    // record and trace: the CPU cost of tracing at 10,000 rules.
    let events: Vec<Event> = batches
        .iter()
        .take(10)
        .flat_map(|b| kairo_ingest::webhook::parse_events(b.as_bytes()).unwrap())
        .collect();
    for traced in [false, true] {
        let mut n = 0usize;
        let name = if traced {
            "evaluate_traced"
        } else {
            "evaluate"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let chunk = &events[(n % 10) * BATCH..(n % 10 + 1) * BATCH];
                n += 1;
                black_box(if traced {
                    support::traced_batch(&rules, chunk)
                } else {
                    support::untraced_batch(&rules, chunk)
                })
            })
        });
    }
    // The same work with and without recording each event's trace (what the
    // router keeps for `GET /v1/events/{id}`): their ratio is the cost of tracing.
    for traced in [false, true] {
        let mut n = 0usize;
        let name = if traced {
            "webhook_batch_traced"
        } else {
            "webhook_batch"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                // Unique ids each round, so deduplication does not skip the work.
                let body = batches[n % batches.len()].replace("\"ev-", &format!("\"{name}{n}-"));
                n += 1;
                let events = kairo_ingest::webhook::parse_events(body.as_bytes()).unwrap();
                let accept = events.iter().map(support::stored).collect();
                // Acknowledge only after the accept commit, as the webhook does.
                store
                    .commit(
                        &Batch {
                            accept,
                            ..Batch::default()
                        },
                        0,
                        0,
                    )
                    .unwrap();
                let batch = if traced {
                    support::traced_batch(&rules, &events)
                } else {
                    support::untraced_batch(&rules, &events)
                };
                black_box(store.commit(&batch, 0, 0).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, matching, pipeline);
criterion_main!(benches);
