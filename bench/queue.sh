#!/usr/bin/env bash
# One job over many processes through Redis Streams (issue 25) against one
# `mirror` process, in one run, on the shared yardstick's nginx
# (../shared/bench: 100 000 files of 100 bytes on 127.0.0.1:18088):
#   - single: `bulkget mirror URL DEST`;
#   - queued: WORKERS processes (default 4) of `mirror --queue` into one
#     DEST, wall time from the first start to the last exit;
#   - killed: the same, with one worker killed (-9) once 40 % has landed:
#     what it cost in re-fetched files (nginx's request counter less N,
#     the list pages and this script's own status calls) and in time.
# Each output is verified. Redis (our own redis-server, AOF on, a unix
# socket) is started afresh per queued run: its CPU (utime + stime) and
# peak memory are read after it, and the stream's memory per queued page
# while the listing is ahead of the workers.
#
#   ROUNDS=3 WORKERS=4 bench/queue.sh
#   ORDER="queued killed" LEASE=2 EXTRA="--threads 1" bench/queue.sh
#       (some of the runs; the workers with --lease 2 and --threads 1)
#
# Needs: target/release/bulkget, nginx, redis-server, python3. Downloads go
# to /dev/shm (see ../shared/bench/README on the disk effect).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
EXTRA=${EXTRA:-}
WORKERS=${WORKERS:-4}
N=${N:-100000}
SHARED=${SHARED:-$PWD/../shared/bench}
B=$PWD/target/release/bulkget
OUT=/dev/shm/bulkget-queue-bench
DATA=$SHARED/tmp/data/n$N-p1000
[ -e "$DATA/manifest.txt" ] || python3 "$SHARED/gen_dataset.py" "$N" 1000 "$DATA" >/dev/null
ln -sfn "data/n$N-p1000" "$SHARED/tmp/www"
started=
if ! "$SHARED/run_nginx.sh" status >/dev/null 2>&1; then
    "$SHARED/run_nginx.sh" start >/dev/null
    started=1
fi
redis_pid=
stop_redis() { [ -z "$redis_pid" ] || { kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true; redis_pid=; }; }
trap 'stop_redis; [ -z "$started" ] || "$SHARED/run_nginx.sh" stop >/dev/null; rm -rf "$OUT"' EXIT
URL=http://127.0.0.1:18088
rm -rf "$OUT" && mkdir -p "$OUT"
SOCK=$OUT/redis.sock
rcli() { redis-cli -s "$SOCK" "$@"; }
start_redis() {
    rm -rf "$OUT/redis" && mkdir -p "$OUT/redis"
    redis-server --port 0 --unixsocket "$SOCK" --dir "$OUT/redis" --save "" --appendonly yes >"$OUT/redis.log" 2>&1 &
    redis_pid=$!
    until rcli ping >/dev/null 2>&1; do sleep 0.05; done
}
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
requests() { curl -s "$URL/nginx_status" | awk 'NR == 3 {print $3}'; }
verify() {
    # a file fetched again replaces its copy by a link under .bulkget/tmp
    # and a rename: that directory must be empty, then it is not the tree's
    if [ -d "$1/.bulkget" ]; then
        [ -z "$(ls -A "$1/.bulkget/tmp" 2>/dev/null)" ] || echo "  $1: temporaries left"
        rm -rf "$1/.bulkget"
    fi
    python3 "$SHARED/verify.py" "$1" "$N" >"$OUT/verify" || { echo "  $1: verify failed:"; head -5 "$OUT/verify"; }
}
now() { date +%s.%N; }
line() { printf '%-34s %8.0f files/s  %6.2f s%s\n' "$1" "$(echo "$N / $2" | bc -l)" "$2" "${3:-}"; }

single() {
    rm -rf "$OUT/m" "$OUT/s"
    local t0; t0=$(now)
    "$B" mirror "$URL" "$OUT/m" -q --state-dir "$OUT/s" 2>"$OUT/err" || tail -3 "$OUT/err"
    line "mirror, one process" "$(echo "$(now) - $t0" | bc -l)"
    verify "$OUT/m"
}

# through KILL: WORKERS processes through Redis; KILL=1 kills one at 40 %.
through() {
    local kill=$1 job=j$RANDOM pids=() i t0 t1 r0 r1 per_page=
    rm -rf "$OUT/m" "$OUT"/s*
    start_redis
    r0=$(requests)
    t0=$(now)
    for i in $(seq 1 "$WORKERS"); do
        "$B" mirror "$URL" "$OUT/m" -q --queue "unix://$SOCK#$job" --worker "w$i" \
            --state-dir "$OUT/s$i" ${LEASE:+--lease "$LEASE"} $EXTRA 2>"$OUT/err$i" &
        pids+=($!)
    done
    local polls=0 killed= listed=
    while :; do
        local alive=0 p
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 1 ] || break
        local xlen; xlen=$(rcli xlen "bulkget:$job:pages")
        if [ -z "$per_page" ] && [ "${xlen:-0}" -ge 20 ]; then
            per_page=$(( $(rcli memory usage "bulkget:$job:pages") / xlen ))
        fi
        if [ -z "$listed" ] && [ "$(rcli hget "bulkget:$job:state" listing_done)" = 1 ]; then
            listed=$(echo "$(now) - $t0" | bc -l)
        fi
        if [ "$kill" = 1 ] && [ -z "$killed" ]; then
            local landed; landed=$(rcli hget "bulkget:$job:state" landed)
            if [ "${landed:-0}" -ge $((N * 4 / 10)) ]; then
                kill -9 "${pids[0]}"; killed=$(now)
            fi
        fi
        polls=$((polls + 1))
        sleep 0.05
    done
    t1=$(now)
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { [ "$kill" = 1 ] && [ "$i" = 0 ] || tail -2 "$OUT/err$((i + 1))"; }
    done
    r1=$(requests)
    local cpu mem
    cpu=$(cpu_s "$redis_pid")
    mem=$(rcli info memory | awk -F: '/^used_memory_peak:/ {printf "%.1f", $2 / 1048576}')
    local st; st=$(rcli hmget "bulkget:$job:state" listed landed failed | tr '\n' ' ')
    stop_redis
    # requests less N, the 100 list pages and the status page itself
    local extra=$((r1 - r0 - N - N / 1000 - 1))
    local what="queued, $WORKERS processes"
    [ "$kill" = 1 ] && what="queued, $WORKERS, one killed at 40 %"
    line "$what" "$(echo "$t1 - $t0" | bc -l)" \
        "  listed in $(printf %.2f "$listed") s; redis ${cpu} s CPU, ${mem} MiB peak, ${per_page:-?} B/queued page; re-fetched $extra; job: $st"
    verify "$OUT/m"
}

queued() { through 0; }
killed() { through 1; }
read -ra order <<<"${ORDER:-single queued killed}"
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r"
    for t in "${order[@]}"; do "$t"; done
    order=("${order[@]:1}" "${order[0]}")
done
