#!/usr/bin/env bash
# Cluster mode with 1, 2 and 3 instances on one nats-server (JetStream, file
# storage), on this machine: every instance takes batches of 100 events on its
# webhook under wrk at the same time; prints the events accepted per second
# (stored in the partition stream) and evaluated per second (committed by the
# partitions' instances, until the last one), in total and per instance.
#
# Two loads, measured in the same run: `status`, events that change no state
# and match no rule (what intake and partitions cost), and `traffic`,
# TrafficUsage events counted by a SIM monthly limit handler (each chunk
# appends to its partition's journal) and a group monthly limit handler (each
# event adds to its group's and operator's JetStream counters); the limits are
# never reached, so no action is asked for. The last column is `traffic`'s
# evaluated rate over `status`'s with as many instances.
#
# Usage: benches/cluster.sh      (BENCH_SECONDS=10 BENCH_CONNECTIONS=16
#                                 BENCH_INSTANCES="1 2 3" BENCH_LOADS="status traffic")
# Installs wrk with apt-get and nats-server with pip when missing. All
# instances, nats-server and wrk share this machine's cores: the numbers show
# what the cluster costs here, not what more machines would add.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
seconds="${BENCH_SECONDS:-10}"
connections="${BENCH_CONNECTIONS:-16}"

source "$here/tools.sh"
(cd "$root" && cargo build --release --quiet --bin kairo)
bin="$root/target/release/kairo"
work="$(mktemp -d)"; [ -z "${BENCH_KEEP:-}" ] || echo "work directory: $work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }
evaluated() { # URLS...: the sum of kairo_events_accepted_total
  local total=0 n
  for url in "$@"; do
    n="$(curl -sf "$url/metrics" | awk '/^kairo_events_accepted_total/ {print $2}')"
    total=$((total + ${n%.*}))
  done
  echo "$total"
}
mkdir -p "$work/rules"
cp "$root/scripts/ota_finished_set_group.rhai" "$work/rules/"   # the events do not match it

# Traffic handlers whose limits are never reached: a SIM's month (journal)
# and a group's month (shared counters).
limit='"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalTrafficMegaByte": "100000000"'
action='"actionConfigList": [{"type": "ExecuteWebRequestAction", "properties": {"executionDateTimeConst": "IMMEDIATELY", "url": "http://127.0.0.1:9/never", "httpMethod": "POST", "contentType": "application/json", "body": "{}"}}]'
mkdir -p "$work/handlers-traffic" "$work/handlers-status"
cat >"$work/handlers-traffic/sim.json" <<JSON
{"name": "sim-month", "handlerId": "bench-sim", "status": "active", "targetOperatorId": "OP0012345678",
 "ruleConfig": {"type": "SimMonthlyTotalTrafficRule", "properties": {$limit}}, $action}
JSON
cat >"$work/handlers-traffic/group.json" <<JSON
{"name": "group-month", "handlerId": "bench-group", "status": "active", "targetGroupId": "group-3",
 "ruleConfig": {"type": "MonthlyTotalTrafficRule", "properties": {$limit}}, $action}
JSON

declare -A rate
printf "%-8s %-10s %16s %16s %22s %10s\n" load instances "accepted/s" "evaluated/s" "evaluated/s/instance" "vs status"
for load in ${BENCH_LOADS:-status traffic}; do
for n in ${BENCH_INSTANCES:-1 2 3}; do
  nats_port="$(free_port)"
  "$nats" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats-$load-$n" >"$work/nats-$load-$n.log" 2>&1 & pids+=("$!")
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$nats_port") 2>/dev/null && break; sleep 0.05; done
  urls=()
  for i in $(seq "$n"); do
    port="$(free_port)"; dir="$work/$load-$n-$i"; mkdir -p "$dir"
    env KAIRO_SERVER__LISTEN="127.0.0.1:$port" KAIRO_RULES__DIR="$work/rules" KAIRO_RULES__WATCH=false \
        KAIRO_HANDLERS__DIR="$work/handlers-$load" KAIRO_STORE__PATH="$dir/kairo" KAIRO_LOG__LEVEL=warn \
        KAIRO_NATS__URL="nats://127.0.0.1:$nats_port" KAIRO_NATS__SUBJECT="bench.unused.>" \
        KAIRO_CLUSTER__BACKEND=jetstream KAIRO_CLUSTER__PARTITIONS=16 \
        KAIRO_CLUSTER__TAKEOVER_SECONDS=3 KAIRO_CLUSTER__HEARTBEAT_SECONDS=1 \
        "$bin" run >"$dir.log" 2>&1 & pids+=("$!")
    urls+=("http://127.0.0.1:$port")
  done
  for url in "${urls[@]}"; do wait_http "$url/readyz"; done
  sleep 8   # members find each other; moved partitions settle
  start="$(date +%s.%N)"
  outs=()
  for url in "${urls[@]}"; do
    out="$work/wrk-$load-$n-${#outs[@]}"; outs+=("$out")
    BENCH_EVENTS="$load" BENCH_BATCH=100 BENCH_RUN="$RANDOM$RANDOM" wrk -t1 -c"$connections" -d"${seconds}s" \
      -s "$here/http/events.lua" "$url/v1/events" >"$out" 2>&1 &
  done
  wait_wrk=("${outs[@]}")
  while pgrep -x wrk >/dev/null; do sleep 0.2; done
  accepted=0
  for out in "${wait_wrk[@]}"; do
    line="$(grep '^BENCH' "$out")"
    requests="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")"
    non2xx="$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' <<<"$line")"
    accepted=$((accepted + (requests - ${non2xx:-0}) * 100))
  done
  for _ in $(seq 1200); do
    [ "$(evaluated "${urls[@]}")" -ge "$accepted" ] && break
    sleep 0.1
  done
  done_at="$(date +%s.%N)"
  rate[$load-$n]="$(python3 -c "print($accepted/($done_at-$start))")"
  python3 -c "
a=$accepted; s=$seconds; e=$done_at-$start; n=$n; r=${rate[$load-$n]}; base='${rate[status-$n]:-}'
ratio=f'{r/float(base):9.2f}x' if base else '        -'
print(f'{\"$load\":<8} {n:<10} {a/s:16.0f} {a/e:16.0f} {a/e/n:22.0f} {ratio}')"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
done
