//! Replay throughput against the live router's evaluation, in one run:
//! `benches/replay.sh` prints events/s for each and the ratio.
//!
//! - `replay/replay/1000`: `kairo replay`'s work, 10,000 recorded events
//!   (one every second) through the pipeline on the virtual clock;
//! - `replay/live_evaluation/1000`: the same events through the pipeline
//!   as the router's matcher evaluates them (batches of 256, one clock time).

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kairo_core::handler::HandlerSet;
use kairo_router::dry_run::Replayer;
use kairo_router::pipeline::Pipeline;

const EVENTS: usize = 10_000;
const RULES: usize = 1_000;
/// 2026-03-01T00:00:00Z.
const START: i64 = 1_772_323_200_000;

fn replay(c: &mut Criterion) {
    let rules = Arc::new(support::rule_set(RULES));
    let handlers = Arc::new(HandlerSet::default());
    let events = support::events(EVENTS, RULES);
    let times: Vec<i64> = (0..EVENTS as i64).map(|i| START + i * 1_000).collect();
    let mut group = c.benchmark_group("replay");
    group
        .throughput(Throughput::Elements(EVENTS as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let mut replayer = Replayer::of(rules.clone(), handlers.clone());
    group.bench_function(BenchmarkId::new("replay", RULES), |b| {
        b.iter(|| {
            let plan = kairo_router::replay::replay(&mut replayer, &events, &times);
            black_box(plan.actions.len())
        })
    });
    group.bench_function(BenchmarkId::new("live_evaluation", RULES), |b| {
        b.iter(|| {
            let mut pipeline = Pipeline::default();
            let mut requests = 0;
            for batch in events.chunks(256) {
                for evaluated in pipeline.run(&rules, &handlers, batch, START) {
                    requests += evaluated.requests.len();
                }
            }
            black_box(requests)
        })
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
