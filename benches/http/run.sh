#!/usr/bin/env bash
# Durable ingest side by side with what the machine can do, in one run:
#   1. a bare axum server (parse the JSON, answer 202) and `kairo run` under the
#      same wrk load: one event per request, then batches of 100;
#   2. both at a fixed 10,000 events/s (open loop; the load tool's timer
#      granularity, 1 ms, is in both numbers);
#   3. Kairo with a rule whose action goes to a fast local HTTP sink: every
#      action delivered, at what rate;
#   4. raw JetStream publishes against JetStream ingest acknowledged after the
#      durable commit.
# Prints req/s, events/s, p50/p99, peak RSS and the ratios.
#
# Usage: benches/http/run.sh      (BENCH_SECONDS=10 BENCH_CONNECTIONS=32 BENCH_JS_EVENTS=200000)
# Installs wrk with apt-get and nats-server with pip when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${BENCH_SECONDS:-10}"
connections="${BENCH_CONNECTIONS:-32}"
js_events="${BENCH_JS_EVENTS:-200000}"

source "$here/../tools.sh"

(cd "$root" && cargo build --release --quiet --bin kairo --example bench_bare --example bench_load)
bin="$root/target/release"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }
field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" | head -1; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

# wrk with events.lua: prints "requests/s events/s p50_ms p99_ms".
load() { # URL BATCH
  local out
  out="$(BENCH_BATCH="$2" BENCH_RUN="$RANDOM$RANDOM" wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$here/events.lua" "$1")"
  local line; line="$(grep '^BENCH' <<<"$out")"
  local n s non2xx; n="$(field requests <<<"$line")"; s="$(field seconds <<<"$line")"; non2xx="$(field non2xx <<<"$line")"
  [ "${non2xx:-0}" = 0 ] || echo "warning: $non2xx answers were not 2xx" >&2
  python3 -c "n=$n; s=$s; print(f'{n/s:.0f} {n*$2/s:.0f} {$(field p50_us <<<"$line")/1000:.2f} {$(field p99_us <<<"$line")/1000:.2f}')"
}

start_kairo() { # NAME RULES_DIR [extra env...]
  local name="$1" rules="$2"; shift 2
  local port; port="$(free_port)"
  mkdir -p "$work/$name/handlers"
  env KAIRO_SERVER__LISTEN="127.0.0.1:$port" KAIRO_RULES__DIR="$rules" KAIRO_RULES__WATCH=false \
      KAIRO_HANDLERS__DIR="$work/$name/handlers" KAIRO_STORE__PATH="$work/$name/kairo" \
      KAIRO_LOG__LEVEL=warn "$@" "$bin/kairo" run >"$work/$name.log" 2>&1 &
  kairo_pid=$!; pids+=("$kairo_pid")
  kairo_url="http://127.0.0.1:$port"
  wait_http "$kairo_url/readyz"
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

mkdir -p "$work/nomatch" "$work/match"
cp "$root/scripts/ota_finished_set_group.rhai" "$work/nomatch/"   # the events are OTA "started": no match

echo "== HTTP, $connections connections, ${seconds}s each, wrk -t2 (load generator on the same 2 cores)"
bare_port="$(free_port)"
"$bin/examples/bench_bare" "127.0.0.1:$bare_port" & bare_pid=$!; pids+=("$bare_pid")
wait_http "http://127.0.0.1:$bare_port/count"
read -r bare1_rps _ bare1_p50 bare1_p99 < <(load "http://127.0.0.1:$bare_port/v1/events" 1)
read -r _ bare100_eps bare100_p50 bare100_p99 < <(load "http://127.0.0.1:$bare_port/v1/events" 100)
bare_rate_line="$("$bin/examples/bench_load" rate "http://127.0.0.1:$bare_port/v1/events" 10000 "$seconds" "$connections")"

# A fresh router (and store) for each load, so none inherits another's backlog.
kairo_load() { # NAME BATCH: load's fields, then the router's peak RSS in MiB
  start_kairo "$1" "$work/nomatch"
  local result; result="$(load "$kairo_url/v1/events" "$2")"
  echo "$result $(peak_rss_mib "$kairo_pid")"
  stop "$kairo_pid"
}
read -r k1_rps _ k1_p50 k1_p99 k1_rss < <(kairo_load single 1)
read -r _ k100_eps k100_p50 k100_p99 k100_rss < <(kairo_load batch 100)
start_kairo rate "$work/nomatch"
rate_line="$("$bin/examples/bench_load" rate "$kairo_url/v1/events" 10000 "$seconds" "$connections")"
stop "$kairo_pid"
k_rss="$(( k1_rss > k100_rss ? k1_rss : k100_rss ))"

printf '%-34s %12s %12s %9s %9s\n' "" "requests/s" "events/s" "p50 ms" "p99 ms"
printf '%-34s %12s %12s %9s %9s\n' "bare axum, 1 event/request" "$bare1_rps" "$bare1_rps" "$bare1_p50" "$bare1_p99"
printf '%-34s %12s %12s %9s %9s\n' "kairo, 1 event/request" "$k1_rps" "$k1_rps" "$k1_p50" "$k1_p99"
printf '%-34s %12s %12s %9s %9s\n' "bare axum, 100 events/request" "-" "$bare100_eps" "$bare100_p50" "$bare100_p99"
printf '%-34s %12s %12s %9s %9s\n' "kairo, 100 events/request" "-" "$k100_eps" "$k100_p50" "$k100_p99"
echo "kairo/bare, 1 event/request:       $(ratio "$k1_rps" "$bare1_rps")x   (target >= 0.7x)"
echo "kairo, 100 events/request:         $k100_eps events/s   (target >= 200000)"
at_rate() { python3 -c "print(f'p50 {$(field p50_us <<<"$1")/1000:.2f} ms, p99 {$(field p99_us <<<"$1")/1000:.2f} ms, achieved $(field achieved <<<"$1")/s, failed $(field failed <<<"$1")')"; }
echo "bare axum at a fixed 10,000/s:     $(at_rate "$bare_rate_line")"
echo "kairo at a fixed 10,000 events/s:  $(at_rate "$rate_line")   (target p99 < 5 ms)"
echo "kairo peak RSS:                    $k_rss MiB   (target < 150)"

echo
echo "== A matching rule whose action posts to a local HTTP sink"
cat >"$work/match/post_to_sink.rhai" <<RHAI
if payload.otaStatus == "started" {
    webhook(#{ url: "http://127.0.0.1:$bare_port/sink/ota", method: "POST", body: #{ simId: simId } });
}
RHAI
start_kairo match "$work/match"
sink_before="$(curl -sf "http://127.0.0.1:$bare_port/count")"
t0="$(date +%s.%N)"
read -r m_rps _ _ _ < <(load "$kairo_url/v1/events" 1)
accepted="$(curl -sf "$kairo_url/metrics" | awk '/^kairo_events_accepted_total / {print $2}')"
at_end="$(( $(curl -sf "http://127.0.0.1:$bare_port/count") - sink_before ))"
for _ in $(seq 1200); do
  delivered="$(( $(curl -sf "http://127.0.0.1:$bare_port/count") - sink_before ))"
  [ "$delivered" -ge "${accepted%.*}" ] && break
  sleep 0.05
done
t1="$(date +%s.%N)"
m_rss="$(peak_rss_mib "$kairo_pid")"
stop "$kairo_pid"
m_aps="$(python3 -c "print(f'{$delivered / ($t1 - $t0):.0f}')")"
echo "requests/s $m_rps, events accepted ${accepted%.*}, delivered when the load stopped $at_end, delivered in all $delivered"
echo "delivered actions/s (until the last was delivered): $m_aps; vs the no-match request rate: $(ratio "$m_aps" "$k1_rps")x (target >= 0.5x)"
echo "kairo peak RSS:                    $m_rss MiB"
stop "$bare_pid"

echo
echo "== JetStream, $js_events events of about 400 bytes, file storage"
nats_port="$(free_port)"
"$nats" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 & nats_pid=$!; pids+=("$nats_pid")
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$nats_port") 2>/dev/null && break; sleep 0.05; done
raw_line="$("$bin/examples/bench_load" js-raw "nats://127.0.0.1:$nats_port" "$js_events")"
start_kairo jetstream "$work/nomatch" KAIRO_NATS__URL="nats://127.0.0.1:$nats_port" \
  KAIRO_NATS__STREAM=SORACOM_EVENTS KAIRO_NATS__CREATE_STREAM=true KAIRO_NATS__MAX_ACK_PENDING=20000
js_line="$("$bin/examples/bench_load" js-kairo "nats://127.0.0.1:$nats_port" "$js_events" "$kairo_url/metrics")"
js_rss="$(peak_rss_mib "$kairo_pid")"
stop "$kairo_pid"
raw_eps="$(field events_per_s <<<"$raw_line")"; js_eps="$(field events_per_s <<<"$js_line")"
echo "raw JetStream publish (acked):     $raw_eps events/s"
echo "kairo JetStream ingest:            $js_eps events/s (acked after the durable commit), peak RSS $js_rss MiB"
echo "kairo/raw:                         $(ratio "$js_eps" "$raw_eps")x   (target >= 0.5x)"
