#!/usr/bin/env bash
# Kairo vs json-rules-engine on the same rules and events, in one run.
# Usage: benches/peers/run.sh [RULES...]   (default: 1 100 1000)
# Installs json-rules-engine with npm into benches/peers/node_modules.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
events="${EVENTS:-500}"
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 100 1000)

command -v node >/dev/null || { echo "node is required" >&2; exit 1; }
[ -d "$here/node_modules/json-rules-engine" ] || npm install --prefix "$here" --no-audit --no-fund --silent
(cd "$root" && cargo build --release --quiet --example peer_match)

printf '%-8s %16s %16s %10s\n' rules kairo_ev_per_s peer_ev_per_s ratio
for n in "${counts[@]}"; do
  fixture="$(mktemp)"
  kairo="$("$root/target/release/examples/peer_match" "$fixture" "$n" "$events")"
  peer="$(node "$here/json-rules-engine.mjs" "$fixture")"
  rm -f "$fixture"
  python3 - "$n" "$kairo" "$peer" <<'PY'
import json, sys
n, kairo, peer = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
if kairo["matchedEvents"] * peer["events"] != peer["matchedEvents"] * kairo["events"]:
    print(f"warning: matched-event counts differ: kairo {kairo['matchedEvents']}/{kairo['events']}, peer {peer['matchedEvents']}/{peer['events']}", file=sys.stderr)
k, p = kairo["eventsPerSecond"], peer["eventsPerSecond"]
print(f"{n:<8} {k:16.0f} {p:16.0f} {k / p:9.1f}x")
PY
done
