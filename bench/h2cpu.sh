#!/usr/bin/env bash
# bench/h2cpu.sh [BUILD...]: client CPU per file over https, HTTP/2 (and
# HTTP/1.1 with H1=1), `mirror --sink null` of N synthetic 100-byte files
# (default 10^6) from `bulkget serve --tls-cert … --threads 1`, the builds
# given (default target/release/bulkget) alternated ROUNDS times (default 3)
# against the same server. Prints µs of client CPU (user+sys) per file,
# files/s and peak RSS. Needs openssl; cargo build --release first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000000}
W=/dev/shm/bulkget-h2cpu
rm -rf "$W" && mkdir -p "$W" && cd "$W"
. "$ROOT/bench/certs.sh"
[ $# -gt 0 ] || set -- "$ROOT/target/release/bulkget"
"$1" serve --synthetic "$N" --addr 127.0.0.1:0 --tls-cert srv.pem --tls-key srv.key --threads 1 > serve.out &
S=$!
trap 'kill $S 2>/dev/null' EXIT
while ! [ -s serve.out ]; do sleep 0.1; done
ADDR=$(head -1 serve.out | grep -o '127.0.0.1:[0-9]*')
for round in $(seq 1 "${ROUNDS:-3}"); do
  for b in "$@"; do
    for flag in "" ${H1:+--http1.1}; do
      rm -rf out; /usr/bin/time -f "%U %S %M" -o time.txt "$b" mirror "https://$ADDR" out --cacert ca.pem --sink null -q $flag --stats-json st.json >/dev/null 2>&1
      read -r u s m < time.txt
      python3 - "$b" "${flag:-h2}" "$u" "$s" "$m" <<'PY'
import json, sys
b, flag, u, s, m = sys.argv[1:]
st = json.load(open("st.json"))
n = st["files"]; t = st["seconds"]
print(f"{b:<40} {flag:<9} {(float(u)+float(s))/n*1e6:6.2f} us/file  {n/t if t else 0:9.0f} files/s  {int(m)/1024:5.1f} MiB  ({n} files)")
PY
    done
  done
done
