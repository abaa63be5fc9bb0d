#!/usr/bin/env bash
# Replay throughput (`kairo replay`'s work) and the live router's evaluation
# rate, measured in the same run at 1,000 rules; prints events/s and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench replay -- --noplot >/dev/null
python3 - <<'PY'
import json
def rate(name):
    est = json.load(open(f"target/criterion/replay/{name}/1000/new/estimates.json"))
    return 10_000 / (est["mean"]["point_estimate"] / 1e9)
replay, live = rate("replay"), rate("live_evaluation")
print(f"replay:          {replay:12,.0f} events/s (1,000 rules)")
print(f"live evaluation: {live:12,.0f} events/s (1,000 rules)")
print(f"replay/live:     {replay / live:.2f}x")
PY
