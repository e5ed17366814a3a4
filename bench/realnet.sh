#!/usr/bin/env bash
# bench/realnet.sh [N]: issue 8's conditions, N files of 100 B (default
# 20000), default flags, bulkget get vs curl -Z --parallel-max 64 and 256
# given the same URL list; output on tmpfs (/dev/shm):
#   svc5      a server that needs 5 ms per request and answers a connection's
#             requests one after another (bulkget serve --latency 5)
#   rtt40     nginx through a 40 ms round-trip delay line
#   hosts100  a list interleaving 100 hosts (100 delay-line ports), 20 ms RTT
#   h2        nginx over https, HTTP/2 (direct and at 20 ms RTT)
#   h1-20ms   nginx over https, HTTP/1.1 at 20 ms RTT
#   limit8    nginx allowing 8 connections (limit_conn; the rest get 503)
# and mirror for svc5 and rtt40. Needs nginx-light, curl, openssl, python3;
# cargo build --release first.  ALSO=BIN times a second build too.  ONLY="svc5 rtt40" runs some rows; SERVE=1
# only starts the servers and waits.
set -euo pipefail
N=${1:-20000}
PY=${PY:-python3}  # a python with uvloop makes the delay lines cheaper
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/target/release/bulkget
# ALSO=/path/to/another/bulkget adds its rows (an A/B of two builds in one run)
ALSO=${ALSO:-}
W=/dev/shm/bulkget-realnet
rm -rf "$W" && mkdir -p "$W/tmp"
python3 "$ROOT/../shared/bench/gen_dataset.py" "$N" 1000 "$W/www" >/dev/null
cd "$W"
. "$ROOT/bench/certs.sh"
cat > nginx.conf <<CONF
worker_processes 1;
worker_rlimit_nofile 65536;
pid $W/nginx.pid;
error_log $W/error.log crit;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp; uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  default_type application/octet-stream;
  keepalive_requests 1000000;
  ssl_certificate $W/srv.pem; ssl_certificate_key $W/srv.key;
  limit_conn_zone \$server_port zone=perport:1m;
  map \$args \$list_page {
    "" first;
    "~(?:^|&)next-marker=(?<nm_tok>[A-Za-z0-9_-]+)(?:&|\$)" \$nm_tok;
    default "-invalid-";
  }
  server {
    listen 127.0.0.1:18480 backlog=4096;
    listen 127.0.0.1:18443 ssl http2 backlog=4096;
    listen 127.0.0.1:18444 ssl backlog=4096;
    root $W/www;
    location = /list { default_type application/json; try_files /list/\$list_page.json =404; }
  }
  server {
    listen 127.0.0.1:18481 backlog=4096;
    root $W/www;
    limit_conn perport 8;
    location = /list { default_type application/json; try_files /list/\$list_page.json =404; }
  }
}
CONF
nginx -p "$W" -c "$W/nginx.conf"
$B serve --synthetic "$N" --latency 5 --addr 127.0.0.1:18490 >/dev/null 2>&1 & S=$!
$PY "$ROOT/bench/delayline.py" 18580 18480 20 >/dev/null & D1=$!
$PY "$ROOT/bench/delayline.py" 18600 18480 10 100 >/dev/null & D2=$!
$PY "$ROOT/bench/delayline.py" 18543 18443 10 >/dev/null & D3=$!
$PY "$ROOT/bench/delayline.py" 18544 18444 10 >/dev/null & D4=$!
trap 'kill $S $D1 $D2 $D3 $D4 2>/dev/null; kill $(cat $W/nginx.pid) 2>/dev/null' EXIT
sleep 1.5
# urls NAME SCHEME PORT: one URL per manifest name
urls() { sed "s#^#$2://127.0.0.1:$3/get/#" www/manifest.txt > urls-$1.txt; }
urls rtt40 http 18580; urls h2 https 18443; urls h2-20ms https 18543; urls h1-20ms https 18544; urls limit8 http 18481
# the synthetic server's names
python3 -c "
for i in range($N): print(f'http://127.0.0.1:18490/get/f{i:09d}')" > urls-svc5.txt
# 100 hosts, interleaved: file i on port 18600 + i % 100
awk '{ printf "http://127.0.0.1:%d/get/%s\n", 18600 + (NR-1) % 100, $0 }' www/manifest.txt > urls-hosts100.txt
for f in urls-*.txt; do sed 's#.*#url = "&"#' "$f" > "${f%.txt}.cfg"; done
# SERVE=1: set up and keep the servers running (for tracing by hand)
if [ -n "${SERVE:-}" ]; then echo "serving from $W; ^C stops"; wait; fi
# one timed run: label, then the command; prints files/s and client CPU per file
timed() {
    local label=$1; shift
    local out=$W/out-$RANDOM$RANDOM
    mkdir -p "$out"
    local t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$W/time.txt" "${@//\{OUT\}/$out}" >/dev/null 2>"$W/err.txt" || true
    local t1=$(date +%s.%N)
    local got
    got=$(find "$out" -path "$out/.bulkget" -prune -o -type f -print | wc -l)
    read -r u s m < "$W/time.txt"
    python3 -c "import sys; t=$t1-$t0; print(f'{sys.argv[1]:<30} {t:7.2f} s  {$got/t:9.0f} files/s  {($u+$s)/max($got,1)*1e6:6.1f} us CPU/file  {$m/1024:5.0f} MiB  ({$got} files)')" "$label"
    [ -n "${SHOW_ERR:-}" ] && tail -2 "$W/err.txt"
    rm -rf "$out"
}
ROWS=${ONLY:-svc5 rtt40 hosts100 h2 h2-20ms h1-20ms limit8}
for round in $(seq 1 "${ROUNDS:-1}"); do
  echo "round $round"
  for row in $ROWS; do
    flag=""; [ "$row" = h1-20ms ] && flag=--http1.1
    timed "$row bulkget get" $B get -i urls-$row.txt -o {OUT} --cacert ca.pem -q $flag
    [ -z "$ALSO" ] || timed "$row also get" $ALSO get -i urls-$row.txt -o {OUT} --cacert ca.pem -q $flag
    case $row in
      svc5) timed "$row bulkget mirror" $B mirror http://127.0.0.1:18490 {OUT} -q ;;
      rtt40) timed "$row bulkget mirror" $B mirror http://127.0.0.1:18580 {OUT} -q ;;
    esac
    for par in 64 256; do
      timed "$row curl -Z $par" curl --parallel --parallel-max $par --no-progress-meter --cacert ca.pem $flag --remote-name-all --output-dir {OUT} -K urls-$row.cfg
    done
  done
done
