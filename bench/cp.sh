#!/usr/bin/env bash
# bench/cp.sh [N] [BIG_GIB]: `bulkget cp -r` of N small files (100 B, 100
# directories) plus two BIG_GIB-GiB files, local to local on tmpfs, vs
# `cp -r` and `rclone copy --transfers 16` (Debian's rclone). Each copy goes
# into a fresh directory that is removed after; the tree is checked once.
set -euo pipefail
N=${1:-100000}
BIG=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/target/release/bulkget
W=${W:-/dev/shm/bulkget-cp}
rm -rf "$W" && mkdir -p "$W/src"
python3 - "$W/src" "$N" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(100):
    os.makedirs(f"{root}/d{d:03}", exist_ok=True)
for i in range(n):
    with open(f"{root}/d{i % 100:03}/f{i:07}", "wb") as f:
        f.write((b"%07d " % i) * 12 + b"...")
PY
for i in 1 2; do head -c $((BIG << 30)) /dev/urandom > "$W/src/big$i"; done
timed() {
    local label=$1; shift
    rm -rf "$W/dst"
    local t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$W/time.txt" "$@" >/dev/null 2>"$W/err.txt" || { cat "$W/err.txt"; }
    local t1=$(date +%s.%N)
    read -r u s rss < "$W/time.txt"
    python3 -c "import sys; t=$t1-$t0; print(f'{sys.argv[1]:<34} {t:7.2f} s  {$N/t:9.0f} small files/s  CPU {$u+$s:6.2f} s  RSS {$rss/1024:6.1f} MiB')" "$label"
}
for round in $(seq 1 "${ROUNDS:-2}"); do
  echo "round $round ($N small files + 2 x $BIG GiB)"
  timed "bulkget cp -r" $B cp -r -q "$W/src" "$W/dst"
  [ "$round" = 1 ] && diff -r "$W/src" "$W/dst" >/dev/null && echo "  (bulkget's copy checked with diff -r: identical)"
  timed "cp -r" cp -r "$W/src" "$W/dst"
  timed "rclone copy --transfers 16" rclone copy --transfers 16 "$W/src" "$W/dst"
done
rm -rf "$W"
