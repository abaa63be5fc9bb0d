//! The cost of recording traces, for a deterministic instruction count under
//! callgrind (`benches/trace_cost.sh`): `trace_cost MODE ROUNDS` evaluates
//! 1,000 events against 10,000 rules ROUNDS times, in batches of 3, either
//! as before traces (`untraced`) or through the router's pipeline with each
//! event's record and trace built (`traced`); only `measure` is counted.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("traced");
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(1);
    let rules = support::rule_set(10_000);
    let events = support::events(1_000, 10_000);
    measure(mode, rounds, &rules, &events);
}

/// The measured work; callgrind counts only inside it (`--toggle-collect`).
#[inline(never)]
fn measure(mode: &str, rounds: usize, rules: &kairo_script::RuleSet, events: &[kairo_core::Event]) {
    for _ in 0..rounds {
        // Batches of 3 keep the evaluation on this thread (larger ones are
        // spread over a thread pool, which callgrind would count outside `measure`).
        for chunk in events.chunks(3) {
            if mode == "untraced" {
                drop(black_box(support::untraced_batch(rules, chunk)));
            } else {
                drop(black_box(support::traced_batch(rules, chunk)));
            }
        }
    }
}
