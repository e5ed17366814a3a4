#!/usr/bin/env bash
# Object store upload, in one run: bulkget cp -r DIR s3:// vs rclone copy
# --transfers 64 vs curl -Z --parallel-max 256 --aws-sigv4 -T (given the file
# and object URL pairs), against the same moto S3 server
# (tests/it/fixtures/moto_s3.py); each tool into its own prefix, each
# prefix then counted (the tests read the bytes back; boto3 reading 10 000
# objects back here would take minutes per tool).
#
#   N=10000 ROUNDS=2 bench/s3-up.sh
#
# Needs: target/release/bulkget, rclone, curl, and a Python with moto[server]
# (PY=, default target/moto-venv/bin/python, as .ci/run makes it).
# Sources are on /dev/shm (see ../shared/bench/README on the disk effect).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
ROUNDS=${ROUNDS:-1}
PY=${PY:-target/moto-venv/bin/python}
B=$PWD/target/release/bulkget
SRC=/dev/shm/bulkget-s3-up
rm -rf "$SRC" && mkdir -p "$SRC/d"
"$PY" - "$SRC/d" "$N" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, f"f{i:05}"), "wb") as f:
        f.write((f"f{i:05}".encode() * 13)[:100])
PY

coproc MOTO { "$PY" tests/it/fixtures/moto_s3.py; }
read -r PORT <&"${MOTO[0]}"
cmd() { echo "$1" >&"${MOTO[1]}"; read -r ans <&"${MOTO[0]}"; echo "$ans"; }
EP=http://127.0.0.1:$PORT
cmd "bucket bkt" >/dev/null
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_ENDPOINT_URL=$EP AWS_REGION=us-east-1
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other \
    RCLONE_CONFIG_MOTO_ENDPOINT=$EP RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=test \
    RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=test RCLONE_CONFIG_MOTO_REGION=us-east-1

run() { # name, prefix, command...
    local name=$1 prefix=$2; shift 2
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$SRC/rss" "$@" >/dev/null 2>"$SRC/err" || { echo "$name failed:"; tail -3 "$SRC/err"; }
    t1=$(date +%s.%N)
    local stored
    stored=$("$B" ls -r "s3://bkt/$prefix" | wc -l)
    printf '%-44s %6.0f files/s  %6.2f s  max RSS %6s KiB  stored: %s\n' "$name" \
        "$(echo "$N / ($t1 - $t0)" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" "$(cat "$SRC/rss")" "$stored"
}

for r in $(seq 1 "$ROUNDS"); do
    echo "round $r (stored: the objects listed under the tool's prefix)"
    ls "$SRC/d" | awk -v s="$SRC/d" -v ep="$EP" -v r="$r" \
        '{print "upload-file = " s "/" $0; print "url = " ep "/bkt/c" r "/" $0; print "output = /dev/null"}' >"$SRC/curl.cfg"
    run "bulkget cp -r (default flags)" "b$r/" "$B" cp -r "$SRC/d" "s3://bkt/b$r/" -q
    run "rclone copy --transfers 64 --checkers 64" "r$r/" env -u AWS_CA_BUNDLE rclone copy "$SRC/d" "moto:bkt/r$r" --transfers 64 --checkers 64
    run "curl -Z --parallel-max 256 --aws-sigv4 -T" "c$r/" curl -s -Z --parallel-max 256 \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user test:test -K "$SRC/curl.cfg"
done
exec {MOTO[1]}>&-
wait
rm -rf "$SRC"
