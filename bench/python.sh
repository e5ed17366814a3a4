#!/usr/bin/env bash
# The Python package against the CLI and the Python ways it replaces
# (issue 23), in one run, against the shared yardstick's nginx
# (../shared/bench: 100 000 files of 100 bytes on 127.0.0.1:18088):
#   - bulkget.mirror from Python vs the CLI vs the talk's best Python
#     design (pyclients.py --mode combo), each output verified;
#   - bulkget.exists over 20 000 URLs vs multiprocessing.Pool(64) +
#     requests.head (the seed's pattern) vs a gevent pool of 100;
#   - bulkget.map of time.sleep(0.01) over 20 000 items at 256 workers vs
#     the `parallel` library (PyPI python-parallel) and
#     ThreadPoolExecutor.map, against the ideal 20 000 × 0.01 / 256 s.
#
#   ROUNDS=2 bench/python.sh
#
# Needs: the package built into target/py-venv (test.sh does it), nginx,
# python3. Installs requests, aiohttp, uvloop, gevent and python-parallel
# into that venv. Downloads go to /dev/shm (see ../shared/bench/README on
# the disk effect).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
N=${N:-100000}
SHARED=${SHARED:-$PWD/../shared/bench}
PY=$PWD/target/py-venv/bin/python
B=$PWD/target/release/bulkget
OUT=/dev/shm/bulkget-python-bench
"$PY" -c 'import requests, aiohttp, uvloop, gevent, parallel' 2>/dev/null ||
    "$PY" -m pip install -q requests aiohttp uvloop gevent python-parallel
"$PY" -c 'import bulkget' || { echo "build the package first (./test.sh)"; exit 1; }

DATA=$SHARED/tmp/data/n$N-p1000
[ -e "$DATA/manifest.txt" ] || python3 "$SHARED/gen_dataset.py" "$N" 1000 "$DATA"
ln -sfn "data/n$N-p1000" "$SHARED/tmp/www"
started=
if ! "$SHARED/run_nginx.sh" status >/dev/null 2>&1; then
    "$SHARED/run_nginx.sh" start >/dev/null
    started=1
fi
trap '[ -z "$started" ] || "$SHARED/run_nginx.sh" stop >/dev/null; rm -rf "$OUT"' EXIT
URL=http://127.0.0.1:18088
rm -rf "$OUT" && mkdir -p "$OUT"
head -20000 "$DATA/manifest.txt" | sed "s#^#$URL/get/#" >"$OUT/urls.txt"

verify() { python3 "$SHARED/verify.py" "$1" "$N" >/dev/null || echo "  $1: verify failed"; }
timed() { # name, command...: files/s of N files
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$OUT/err" || { echo "$name failed:"; tail -3 "$OUT/err"; }
    t1=$(date +%s.%N)
    printf '%-36s %8.0f files/s  %6.2f s\n' "$name" "$(echo "$N / ($t1 - $t0)" | bc -l)" "$(echo "$t1 - $t0" | bc -l)"
}
# The journal goes beside the tree, which verify.py checks for extra files.
cli() { rm -rf "$OUT/m" "$OUT/s"; timed "bulkget mirror (CLI)" "$B" mirror "$URL" "$OUT/m" -q --state-dir "$OUT/s"; verify "$OUT/m"; }
py() { rm -rf "$OUT/m" "$OUT/s"; timed "bulkget.mirror (Python)" "$PY" bench/python_bench.py mirror "$URL" "$OUT/m" "$OUT/s"; verify "$OUT/m"; }
combo() { rm -rf "$OUT/m"; mkdir -p "$OUT/m"; timed "pyclients.py --mode combo (the talk)" \
    "$PY" "$SHARED/pyclients.py" --mode combo --url "$URL" --out "$OUT/m"; verify "$OUT/m"; }
order=(cli py combo)
for r in $(seq 1 "$ROUNDS"); do
    echo "mirror, round $r"
    for t in "${order[@]}"; do "$t"; done
    order=("${order[@]:1}" "${order[0]}")
    echo "exists over 20 000 URLs, round $r"
    for c in exists-bulkget exists-pool exists-gevent; do "$PY" bench/python_bench.py "$c" "$OUT/urls.txt"; done
    echo "map of time.sleep(0.01) over 20 000 at 256 (ideal 0.78 s), round $r"
    for c in map-bulkget map-parallel map-threads; do "$PY" bench/python_bench.py "$c" 20000 256; done
done
