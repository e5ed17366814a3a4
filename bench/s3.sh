#!/usr/bin/env bash
# Object store download, in one run: bulkget mirror s3:// vs rclone copy
# --transfers 64 vs curl -Z --parallel-max 256 --aws-sigv4 (given the object
# URLs), against the same moto S3 server (tests/it/fixtures/moto_s3.py).
#
#   N=10000 ROUNDS=2 bench/s3.sh
#
# Needs: target/release/bulkget, rclone, curl, and a Python with moto[server]
# (PY=, default target/moto-venv/bin/python, as .ci/run makes it).
# Outputs go to /dev/shm (see ../shared/bench/README on the disk effect).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
ROUNDS=${ROUNDS:-1}
PY=${PY:-target/moto-venv/bin/python}
B=$PWD/target/release/bulkget
OUT=/dev/shm/bulkget-s3-bench
rm -rf "$OUT" && mkdir -p "$OUT"

coproc MOTO { "$PY" tests/it/fixtures/moto_s3.py; }
read -r PORT <&"${MOTO[0]}"
cmd() { echo "$1" >&"${MOTO[1]}"; read -r ans <&"${MOTO[0]}"; echo "$ans"; }
EP=http://127.0.0.1:$PORT
echo "moto on $EP; putting $N objects of 100 B ..."
cmd "bucket bkt" >/dev/null
t0=$(date +%s.%N)
cmd "fill bkt data/f $N 100" >/dev/null
t1=$(date +%s.%N)
echo "  put: $(echo "$N / ($t1 - $t0)" | bc -l | xargs printf '%.0f') objects/s (boto3, 8 threads)"

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_ENDPOINT_URL=$EP AWS_REGION=us-east-1
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other \
    RCLONE_CONFIG_MOTO_ENDPOINT=$EP RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=test \
    RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=test RCLONE_CONFIG_MOTO_REGION=us-east-1
# curl's URL list (curl signs each request itself)
seq -f "$EP/bkt/data/f%05g" 0 $((N - 1)) | awk '{print "url = " $0; print "output = /dev/null"}' >"$OUT/curl.cfg"

run() { # name, command...
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$OUT/rss" "$@" >/dev/null 2>"$OUT/err" || { echo "$name failed:"; tail -3 "$OUT/err"; }
    t1=$(date +%s.%N)
    printf '%-40s %8.0f files/s  %6.2f s  max RSS %s KiB\n' "$name" \
        "$(echo "$N / ($t1 - $t0)" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" "$(cat "$OUT/rss")"
}

for r in $(seq 1 "$ROUNDS"); do
    echo "round $r"
    rm -rf "$OUT/b" "$OUT/r"
    run "bulkget mirror s3:// (dir)" "$B" mirror s3://bkt/data "$OUT/b" -q
    test "$(ls "$OUT/b" | wc -l)" -eq "$N" || echo "bulkget: wrong count"
    run "rclone copy --transfers 64 (dir)" env -u AWS_CA_BUNDLE rclone copy moto:bkt/data "$OUT/r" --transfers 64 --checkers 64
    test "$(ls "$OUT/r" | wc -l)" -eq "$N" || echo "rclone: wrong count"
    run "curl -Z --parallel-max 256 --aws-sigv4" curl -s -Z --parallel-max 256 \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user test:test -K "$OUT/curl.cfg"
done
exec {MOTO[1]}>&-
wait
rm -rf "$OUT"
