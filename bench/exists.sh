#!/usr/bin/env bash
# bench/exists.sh [N]: `bulkget exists -i` over N http URLs on nginx (half of
# them 404) vs `curl -Z -I --parallel-max 256` given the same URLs, and vs
# the seed's pattern (multiprocessing.Pool().imap_unordered with
# requests.head, one process per core; PY names a python with requests).
# Every tool's answers are counted; the three must agree.
# Needs: nginx-light, curl, python3; cargo build --release first.
set -euo pipefail
N=${1:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/target/release/bulkget
PY=${PY:-python3}
W=/dev/shm/bulkget-exists
rm -rf "$W" && mkdir -p "$W/tmp"
python3 "$ROOT/../shared/bench/gen_dataset.py" $((N / 2)) 1000 "$W/www" >/dev/null
cd "$W"
cat > nginx.conf <<CONF
worker_processes 1;
worker_rlimit_nofile 65536;
pid $W/nginx.pid;
error_log $W/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp; uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  default_type application/octet-stream;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:18480 backlog=4096; root $W/www; }
}
CONF
nginx -p "$W" -c "$W/nginx.conf"
trap 'kill $(cat $W/nginx.pid) 2>/dev/null' EXIT
sleep 0.5
# present and absent interleaved
awk '{print "http://127.0.0.1:18480/get/" $0; print "http://127.0.0.1:18480/get/" $0 ".missing"}' www/manifest.txt > urls.txt
sed 's#^\(.*\)$#url = "\1"#' urls.txt > curl.cfg
total=$(wc -l < urls.txt)
timed() {
    local label=$1; shift
    local t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$W/time.txt" "$@" > "$W/answers.txt" 2>"$W/err.txt" || true
    local t1=$(date +%s.%N)
    read -r u s < "$W/time.txt"
    local counts=$(python3 "$ROOT/bench/count_answers.py" "$W/answers.txt")
    python3 -c "import sys; t=$t1-$t0; print(f'{sys.argv[1]:<30} {t:7.2f} s  {$total/t:9.0f} paths/s  {($u+$s)/$total*1e6:6.1f} us CPU/path  (present absent: {sys.argv[2]})')" "$label" "$counts"
}
for round in $(seq 1 "${ROUNDS:-2}"); do
  echo "round $round ($total URLs)"
  timed "bulkget exists -i" $B exists -i urls.txt -q
  timed "curl -Z -I --parallel-max 256" curl --parallel --parallel-max 256 -s -I -o /dev/null -w '%{http_code}\n' -K curl.cfg
  [ -n "${SKIP_PY:-}" ] || timed "Pool().imap_unordered(head)" $PY "$ROOT/bench/exists_pool.py" urls.txt
done
