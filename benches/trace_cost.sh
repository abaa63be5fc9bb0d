#!/usr/bin/env bash
# The instructions tracing adds to evaluation at 10,000 rules, counted by
# callgrind (repeatable, unlike wall-clock time on a shared machine):
# prints each mode's instruction count (the evaluation only) and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
bin=$(cargo bench --bench trace_cost --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m=json.loads(line)
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="trace_cost" and m.get("executable"):
        print(m["executable"])' | tail -1)
out=$(mktemp -d)
count() {
  RAYON_NUM_THREADS=1 valgrind --tool=callgrind --toggle-collect='trace_cost::measure*' \
    --callgrind-out-file="$out/$1.out" "$bin" "$1" "$2" >/dev/null 2>"$out/$1.log"
  grep -E "^summary:|^totals:" "$out/$1.out" | head -1 | awk '{print $2}'
}
untraced=$(count untraced "$ROUNDS")
traced=$(count traced "$ROUNDS")
echo "instructions, $ROUNDS rounds of 1,000 events at 10,000 rules:"
echo "  untraced: $untraced"
echo "  traced:   $traced"
python3 -c "print(f'  traced/untraced: {$traced/$untraced:.3f}x')"
