#!/usr/bin/env bash
# Push-back on flaky servers (issue 21), in one run:
#   (a) the issue's random faults on N synthetic files (10 % 503 and 5 % 429
#       with Retry-After: 1, 5 % resets, 5 % short bodies, 2 % 500, 3 % a
#       second late; every file through within three attempts):
#       bulkget mirror against curl -Z --parallel-max 64 --retry 8
#       --retry-all-errors given the URLs, and bulkget with no faults;
#   (b) a rate limiter (--limit-rps R): the rate bulkget settles at over
#       the second half and the share refused;
#   (c) a server whose errors rise with load (--limit-inflight K, 5 ms a
#       request): the load bulkget offered and the share refused.
#
#   N=20000 ROUNDS=3 bench/pushback.sh
#
# Needs target/release/bulkget and curl. Outputs go to /dev/shm (see
# ../shared/bench/README on the disk effect).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
ROUNDS=${ROUNDS:-3}
R=${R:-500}
K=${K:-8}
B=$PWD/target/release/bulkget
OUT=/dev/shm/bulkget-pushback-bench
rm -rf "$OUT" && mkdir -p "$OUT"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$OUT"' EXIT
MIX=(--fail-503 0.10 --fail-429 0.05 --reset 0.05 --truncate 0.05 --fail-500 0.02
    --slow 0.03 --retry-after 1 --max-faults 2)

# serve NAME ARGS...: starts `bulkget serve` on a free port; sets URL.
serve() {
    local name=$1; shift
    "$B" serve --addr 127.0.0.1:0 "$@" >"$OUT/$name.serve" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do grep -q http "$OUT/$name.serve" && break; sleep 0.05; done
    URL=$(grep -o 'http://[0-9.:]*' "$OUT/$name.serve" | head -1)
}
stop() { kill -INT "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'; }

# timed NAME COMMAND...: runs it, prints files/s.
timed() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$OUT/err" || { echo "$name failed:"; tail -3 "$OUT/err"; }
    t1=$(date +%s.%N)
    printf '%-48s %8.0f files/s  %6.2f s\n' "$name" "$(echo "$N / ($t1 - $t0)" | bc -l)" \
        "$(echo "$t1 - $t0" | bc -l)"
}
count() { test "$(ls "$1" | grep -c '^f')" -eq "$N" || echo "  $2: wrong count"; }

seq -f "%09g" 0 $((N - 1)) | awk -v o="$OUT/c" '{print "url = \"URL/get/f" $0 "\""; print "output = \"" o "/f" $0 "\""}' >"$OUT/curl.tmpl"
bulkget_faults() { rm -rf "$OUT/b"; serve a --synthetic "$N" "${MIX[@]}"
    timed "bulkget mirror (faults)" "$B" mirror "$URL" "$OUT/b" -q; stop; count "$OUT/b" bulkget; }
bulkget_clean() { rm -rf "$OUT/b"; serve a0 --synthetic "$N"
    timed "bulkget mirror (no faults)" "$B" mirror "$URL" "$OUT/b" -q; stop; count "$OUT/b" bulkget; }
curl_faults() { rm -rf "$OUT/c"; mkdir -p "$OUT/c"; serve c --synthetic "$N" "${MIX[@]}"
    sed "s#URL#$URL#" "$OUT/curl.tmpl" >"$OUT/curl.cfg"
    timed "curl -Z --parallel-max 64 --retry 8 (faults)" curl -s -Z --parallel-max 64 \
        --retry 8 --retry-all-errors -K "$OUT/curl.cfg"
    stop; count "$OUT/c" curl; }

echo "(a) the issue's random faults, $N files of 100 bytes"
order=(bulkget_faults curl_faults bulkget_clean)
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r"
    for t in "${order[@]}"; do "$t"; done
    order=("${order[@]:1}" "${order[0]}")
done

# What a run's --stats-json says of its one origin.
figures() {
    python3 - "$OUT/s.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
o = s["origins"][0]
refused = o["faults"].get("pushback", 0)
tried = s["files"] + refused
print(f"  {s['files_per_sec']:.0f} files/s over the run, {refused} of {tried} requests refused "
      f"({100 * refused / tried:.1f} %), ended at {o['connections']} x {o['depth']}, "
      f"verdict: {o['verdict']}")
EOF
}
echo "(b) a rate limiter of $R requests/s, 6000 files"
for r in $(seq 1 "$ROUNDS"); do
    rm -rf "$OUT/b"; serve b --synthetic 6000 --limit-rps "$R"
    "$B" mirror "$URL" "$OUT/b" -q --stats-json "$OUT/s.json" 2>/dev/null
    stop; figures
done
echo "(c) errors that rise with load: 503 past $K in progress, 5 ms a request, 6000 files"
for r in $(seq 1 "$ROUNDS"); do
    rm -rf "$OUT/b"; serve k --synthetic 6000 --limit-inflight "$K" --latency 5
    "$B" mirror "$URL" "$OUT/b" -q --stats-json "$OUT/s.json" 2>/dev/null
    stop; figures
done
