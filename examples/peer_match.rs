//! Kairo's side of the peer comparison (benches/peers/run.sh): writes the
//! rules and events as a fixture for the peer, then measures Kairo's indexed
//! match on the same rules and events, single-threaded like the peer.
//!
//! `cargo run --release --example peer_match -- FIXTURE.json RULES EVENTS`

#[path = "../benches/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, fixture, rules, events] = args.as_slice() else {
        eprintln!("usage: peer_match FIXTURE.json RULES EVENTS");
        std::process::exit(2);
    };
    let (rule_count, event_count): (usize, usize) =
        (rules.parse().unwrap(), events.parse().unwrap());
    let bodies = support::event_bodies(event_count, rule_count);
    let fixture_json = serde_json::json!({
        "rules": support::peer_rules(rule_count),
        "events": bodies.iter().map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()).collect::<Vec<_>>(),
    });
    std::fs::write(fixture, serde_json::to_vec(&fixture_json).unwrap()).unwrap();

    let set = support::rule_set(rule_count);
    let events = support::events(event_count, rule_count);
    let (mut evaluated, mut matched) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        for event in &events {
            let requests = set.evaluate(event).requests;
            matched += u64::from(!requests.is_empty());
            black_box(requests);
        }
        evaluated += events.len() as u64;
    }
    let per_second = evaluated as f64 / start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"engine": "kairo", "rules": rule_count, "events": evaluated, "matchedEvents": matched, "eventsPerSecond": per_second})
    );
}
