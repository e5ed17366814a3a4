#!/usr/bin/env bash
# bench/tls.sh [N]: N files of 100 B (default 20000) from nginx over https,
# HTTP/2 and HTTP/1.1, direct and through a 20 ms round-trip delay line;
# bulkget get (default flags) vs curl -Z --parallel-max 64 and 256 given the
# same URL list. Output on tmpfs (/dev/shm): the network side, not the disk.
# Also: bulkget mirror --sink null over https, client CPU per file.
# Needs: nginx-light, curl, openssl, python3; cargo build --release first.
set -euo pipefail
N=${1:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-$ROOT/target/release/bulkget}  # B=/path/to/another/build
W=/dev/shm/bulkget-tls
rm -rf "$W" && mkdir -p "$W/tmp"
python3 ../shared/bench/gen_dataset.py "$N" 1000 "$W/www" >/dev/null 2>&1 || python3 "$ROOT/../shared/bench/gen_dataset.py" "$N" 1000 "$W/www" >/dev/null
cd "$W"
. "$ROOT/bench/certs.sh"
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
  ssl_certificate $W/srv.pem; ssl_certificate_key $W/srv.key;
  map \$args \$list_page {
    "" first;
    "~(?:^|&)next-marker=(?<nm_tok>[A-Za-z0-9_-]+)(?:&|\$)" \$nm_tok;
    default "-invalid-";
  }
  server {
    listen 127.0.0.1:18443 ssl http2 backlog=4096;
    listen 127.0.0.1:18444 ssl backlog=4096;
    root $W/www;
    location = /list { default_type application/json; try_files /list/\$list_page.json =404; }
  }
}
CONF
nginx -p "$W" -c "$W/nginx.conf"
python3 "$ROOT/bench/delayline.py" 18543 18443 10 >/dev/null & D1=$!
python3 "$ROOT/bench/delayline.py" 18544 18444 10 >/dev/null & D2=$!
trap 'kill $D1 $D2 2>/dev/null; kill $(cat $W/nginx.pid) 2>/dev/null' EXIT
sleep 1
mkurls() { sed "s#^#https://127.0.0.1:$1/get/#" www/manifest.txt > urls-$1.txt; sed "s#^\(.*\)\$#url = \"https://127.0.0.1:$1/get/\1\"#" www/manifest.txt > curl-$1.cfg; }
for p in 18443 18444 18543 18544; do mkurls $p; done
# one timed run: label, then the command; prints files/s and client CPU per file
timed() {
    local label=$1; shift
    local out=$W/out-$RANDOM$RANDOM
    mkdir -p "$out"
    local t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$W/time.txt" "${@//\{OUT\}/$out}" >/dev/null 2>"$W/err.txt" || true
    local t1=$(date +%s.%N)
    local got
    if [ -f "$W/stats.json" ]; then
        got=$(python3 -c "import json; print(json.load(open('$W/stats.json'))['files'])"); rm -f "$W/stats.json"
    else
        got=$(find "$out" -path "$out/.bulkget" -prune -o -type f -print | wc -l)
    fi
    read -r u s < "$W/time.txt"
    python3 -c "import sys; t=$t1-$t0; print(f'{sys.argv[1]:<34} {t:7.2f} s  {$got/t:9.0f} files/s  {($u+$s)/max($got,1)*1e6:6.1f} us CPU/file  ({$got} files)')" "$label"
    rm -rf "$out"
}
for round in $(seq 1 "${ROUNDS:-2}"); do
  echo "round $round"
  [ -n "${ONLY_NULL:-}" ] || for cond in "h2 direct:18443:" "h1.1 direct:18444:--http1.1" "h2 20ms RTT:18543:" "h1.1 20ms RTT:18544:--http1.1"; do
    IFS=: read -r name port flag <<<"$cond"
    timed "$name bulkget get" $B get -i urls-$port.txt -o {OUT} --cacert ca.pem -q $flag
    for par in 64 256; do
      timed "$name curl -Z $par" curl --parallel --parallel-max $par --no-progress-meter --cacert ca.pem $flag --remote-name-all --output-dir {OUT} -K curl-$port.cfg
    done
  done
  timed "mirror --sink null https h2" $B mirror https://127.0.0.1:18443 {OUT} --cacert ca.pem --sink null -q --stats-json $W/stats.json
  timed "mirror --sink null https h1.1" $B mirror https://127.0.0.1:18444 {OUT} --cacert ca.pem --sink null -q --http1.1 --stats-json $W/stats.json
done
