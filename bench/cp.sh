#!/usr/bin/env bash
# bench/cp.sh [N] [BIG_GIB]: `bulkget cp -r` of N small files (100 B, 100
# directories) plus two BIG_GIB-GiB files, local to local on tmpfs, vs
# `cp -r` and `rclone copy --transfers 16` (Debian's rclone). Each copy goes
# into a fresh directory that is removed after; the tree is checked once.
# Each round starts with a different tool (the first copy of a round pays
# for a cold page cache and tmpfs growth): ROUNDS=3 gives each tool every place.
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
tool() {
    case $1 in
    0) timed "bulkget cp -r" $B cp -r -q "$W/src" "$W/dst"
       if [ -z "${checked:-}" ]; then
           diff -r "$W/src" "$W/dst" >/dev/null && echo "  (bulkget's copy checked with diff -r: identical)"
           checked=1
       fi ;;
    1) timed "cp -r" cp -r "$W/src" "$W/dst" ;;
    2) timed "rclone copy --transfers 16" rclone copy --transfers 16 "$W/src" "$W/dst" ;;
    esac
}
# Warm-up, untimed: the very first copy into tmpfs pays for fresh pages
# (measured: bulkget 5.45 s first, 2.6-2.8 s after, whatever its place).
cp -r "$W/src" "$W/dst" && rm -rf "$W/dst"
for round in $(seq 1 "${ROUNDS:-3}"); do
  echo "round $round ($N small files + 2 x $BIG GiB)"
  for k in 0 1 2; do tool $(( (k + round - 1) % 3 )); done
done
rm -rf "$W"
