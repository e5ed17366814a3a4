#!/usr/bin/env bash
# bench/split.sh [SIZE] [CAP]
# One large file over a link where one connection cannot fill the pipe: each
# server caps every connection at CAP bytes/s. Compares bulkget get --split
# 1/4/16 with aria2c -x16 -s16 and curl, against `bulkget serve --rate-limit`
# and nginx with limit_rate, in one run. Prints MB/s and the share of
# 16 x CAP reached; checks every download's sha256 against the source.
# Needs: cargo build --release; nginx, aria2c, curl (apt-get install nginx-light aria2 curl).
set -euo pipefail
SIZE="${1:-1G}"; CAP="${2:-16M}"
here="$(cd "$(dirname "$0")/.." && pwd)"
B="$here/target/release/bulkget"
work="$(mktemp -d /tmp/bulkget-split.XXXXXX)"
pids=()
cleanup() {
    ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
    [[ -f $work/nginx.conf ]] && nginx -s quit -c "$work/nginx.conf" -p "$work" 2>/dev/null
    sleep 0.2
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
bytes() { python3 -c "
s='$1'.strip(); m={'k':1<<10,'K':1<<10,'M':1<<20,'G':1<<30}
print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))"; }
size=$(bytes "$SIZE"); cap=$(bytes "$CAP")

start_serve() { # NAME extra-args...; the URL ends up in $work/NAME.url
    local f="$work/$1.out"; shift
    "$B" serve --synthetic 1 --size "$size" --addr 127.0.0.1:0 "$@" > "$f" &
    pids+=($!)
    until [[ -s $f ]]; do sleep 0.05; done
    head -1 "$f" | awk '{print $3}' > "${f%.out}.url"
}
# the reference file, fetched once without a cap
start_serve plain; u0=$(cat "$work/plain.url")
mkdir -p "$work/www/get" && "$B" get "$u0/get/f000000000" -o "$work/www/get" -q --split 4 --state-dir "$work/st0"
chmod -R a+rX "$work"
want=$(sha256sum "$work/www/get/f000000000" | cut -d' ' -f1)
start_serve capped --rate-limit "$cap"; ucap=$(cat "$work/capped.url")
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/cb; proxy_temp_path $work/px; fastcgi_temp_path $work/fc;
    uwsgi_temp_path $work/uw; scgi_temp_path $work/sc;
    sendfile on; keepalive_requests 1000000;
    server { listen 127.0.0.1:18099; root $work/www; location /get/ { limit_rate $cap; } }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
unginx="http://127.0.0.1:18099"
for _ in $(seq 50); do curl -sf -o /dev/null -r 0-0 "$unginx/get/f000000000" && break; sleep 0.1; done

printf '%-10s %-26s %9s %9s %s\n' server client seconds MB/s "of 16 x cap"
run() { # label server-label url cmd... ({OUT} = fresh dir)
    local label="$1" sl="$2"; shift 2
    local out; out="$work/out.$RANDOM"; mkdir -p "$out"
    local args=("${@//\{OUT\}/$out}")
    local t0 t1; t0=$(date +%s.%N); "${args[@]}" > "$work/log" 2>&1 || { echo "$label failed:"; cat "$work/log"; }; t1=$(date +%s.%N)
    local got; got=$(sha256sum "$out/f000000000" 2>/dev/null | cut -d' ' -f1 || true)
    [[ "$got" == "$want" ]] || echo "!! $label: wrong bytes"
    python3 -c "
t=$t1-$t0; mb=$size/t/1e6; print('%-10s %-26s %9.2f %9.1f %9.0f%%' % ('$sl', '$label', t, mb, 100*$size/t/(16*$cap)))"
    rm -rf "$out"
}
for s in "bulkget:$ucap" "nginx:$unginx"; do
    sl="${s%%:*}"; u="${s#*:}"; url="$u/get/f000000000"
    run "bulkget get --split 16" "$sl" "$B" get "$url" -o "{OUT}" -q --split 16 --state-dir "$work/st"
    run "aria2c -x16 -s16" "$sl" aria2c -x16 -s16 -d "{OUT}" -o f000000000 --console-log-level=warn --summary-interval=0 --download-result=hide --allow-overwrite=true "$url"
    run "bulkget get --split 4" "$sl" "$B" get "$url" -o "{OUT}" -q --split 4 --state-dir "$work/st"
    if [[ "${QUICK:-0}" != 1 ]]; then
        run "bulkget get --split 1" "$sl" "$B" get "$url" -o "{OUT}" -q --split 1 --state-dir "$work/st"
        run "curl" "$sl" curl -s -o "{OUT}/f000000000" "$url"
    fi
done
