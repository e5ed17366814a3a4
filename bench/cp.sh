#!/usr/bin/env bash
# bench/cp.sh [N] [BIG_GIB]: `bulkget cp -r` of N small files (100 B, 100
# directories) plus two BIG_GIB-GiB files (none for 0), local to local on
# tmpfs (W=DIR for another place), vs `cp -r` and `rclone copy --transfers
# $TRANSFERS` (Debian's rclone; 16 unless set). SIZES=mixed makes the small
# files 0-64 KiB each (a fixed random draw) instead of 100 B. Each copy goes
# into a fresh directory that is removed after; the tree is checked once.
# Each round starts with a different tool (the first copy of a round pays
# for a cold page cache and tmpfs growth): ROUNDS=3 gives each tool every place.
set -euo pipefail
N=${1:-100000}
BIG=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/target/release/bulkget
W=${W:-/dev/shm/bulkget-cp}
# ext4 without a journal (this machine's) looks past every inode deleted in
# the last 1-5 minutes when it makes a file (`recently_deleted`, 60 % of a
# copy's CPU in `perf` right after a delete): on a disk, wait until the
# last delete of this script is 6 minutes old.
STAMP=/tmp/bulkget-cp-bench.deleted
wait_deletes() {
    [ -f "$STAMP" ] || return 0
    local left=$(( $(stat -c %Y "$STAMP") + 360 - $(date +%s) ))
    if [ "$left" -gt 0 ]; then echo "waiting ${left} s for the last delete to age"; sleep "$left"; fi
}
if [ -e "$W" ]; then rm -rf "$W"; touch "$STAMP"; fi
mkdir -p "$W/src"
TRANSFERS=${TRANSFERS:-16}
python3 - "$W/src" "$N" "${SIZES:-100}" <<'PY'
import os, random, sys
root, n, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(7)
blob = os.urandom(64 << 10)
for d in range(100):
    os.makedirs(f"{root}/d{d:03}", exist_ok=True)
for i in range(n):
    with open(f"{root}/d{i % 100:03}/f{i:07}", "wb") as f:
        if sizes == "mixed":
            f.write(blob[: rng.randrange(0, (64 << 10) + 1)])
        else:
            f.write((b"%07d " % i) * 12 + b"...")
PY
if [ "$BIG" != 0 ]; then
    for i in 1 2; do head -c $((BIG << 30)) /dev/urandom > "$W/src/big$i"; done
fi
# On a disk (W outside /dev/shm) creating files near inodes deleted minutes
# ago is 5-15x slower (../shared/bench/README.md, "The disk caveat"): there
# each copy goes to a fresh directory under a `chattr +T` parent, kept until
# the end, and dirty pages of the copy before are written (untimed `sync`)
# so that bulkget's own sync of DEST writes only its own files.
ON_DISK=0
case $W in /dev/shm/*) ;; *) ON_DISK=1 ;; esac
if [ "$ON_DISK" = 1 ]; then mkdir -p "$W/dsts" && chattr +T "$W/dsts" 2>/dev/null || true; fi
seq_no=0
timed() {
    local label=$1; shift
    if [ "$ON_DISK" = 1 ]; then sync; else rm -rf "$W/dst"; fi
    local t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$W/time.txt" "$@" >/dev/null 2>"$W/err.txt" || { cat "$W/err.txt"; }
    local t1=$(date +%s.%N)
    read -r u s rss < "$W/time.txt"
    python3 -c "import sys; t=$t1-$t0; print(f'{sys.argv[1]:<34} {t:7.2f} s  {$N/t:9.0f} small files/s  CPU {$u+$s:6.2f} s  RSS {$rss/1024:6.1f} MiB')" "$label"
}
tool() {
    seq_no=$((seq_no + 1))
    if [ "$ON_DISK" = 1 ]; then DST=$W/dsts/$seq_no; else DST=$W/dst; fi
    case $1 in
    0) timed "bulkget cp -r" $B cp -r -q "$W/src" "$DST"
       if [ -z "${checked:-}" ]; then
           diff -r "$W/src" "$DST" >/dev/null && echo "  (bulkget's copy checked with diff -r: identical)"
           checked=1
       fi ;;
    1) timed "cp -r" cp -r "$W/src" "$DST" ;;
    3) timed "bulkget cp -r --durability none" $B cp -r -q --durability none "$W/src" "$DST" ;;
    2) timed "rclone copy --transfers $TRANSFERS" rclone copy --transfers "$TRANSFERS" "$W/src" "$DST" ;;
    esac
}
# Warm-up, untimed: the very first copy into tmpfs pays for fresh pages
# (measured: bulkget 5.45 s first, 2.6-2.8 s after, whatever its place).
if [ "$ON_DISK" = 1 ]; then wait_deletes; else cp -r "$W/src" "$W/dst" && rm -rf "$W/dst"; fi
for round in $(seq 1 "${ROUNDS:-3}"); do
  echo "round $round ($N small files (${SIZES:-100} B) + 2 x $BIG GiB, in $W)"
  # on a disk, also bulkget without its closing sync of DEST (what cp and rclone do)
  tools=$((3 + ON_DISK))
  for k in $(seq 0 $((tools - 1))); do tool $(( (k + round - 1) % tools )); done
done
rm -rf "$W"
[ "$ON_DISK" = 0 ] || touch "$STAMP"
