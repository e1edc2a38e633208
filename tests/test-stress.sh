#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Differential stress: random concurrent pwrite, trim, zero, pread and
# block status through the filter, every quiet block status answer
# compared with the backend's own (see tests/stress.py for the
# oracle).
#
#   BACK   nbdkit memory, or file on a sparse file on tmpfs (4K pages),
#          or memory behind nbdkit's cache filter in write-back mode
#          (block status shows a write only once it is flushed; the
#          client also flushes and writes with FUA)
#   FRONT  nbdkit --filter=cacheextents --filter=delay nbd socket=BACK
#
# The delay filter between the cache and the nbd plugin widens the
# windows in which block status races with writes (and in mem-nopf
# fails fast zeroes with ENOTSUP at once).  Variants differ in backend,
# prefetch, window, memory bound, write granularity and delays.
#
# Knobs (environment):
#   STRESS_OPS     operations per variant (default 12000)
#   STRESS_TIME    seconds per variant at most, 0 = no limit (default 16)
#   STRESS_SEED    base seed (default: random; printed)
#   STRESS_THREADS client connections per variant (default 4)
#   STRESS_ONLY    run only the variants whose label matches this regex
#   STRESS_ARGS    more arguments for stress.py (e.g. --align-bs)
#   STRESS_UNIT    0 skips the deterministic check that comes first
# `make stress` runs this script with a large STRESS_OPS.
#
# The file backend lives on tmpfs (/dev/shm) where SEEK_DATA/SEEK_HOLE
# depend only on what was written.  On ext4, zeroing with
# FALLOC_FL_ZERO_RANGE leaves unwritten extents that SEEK_DATA reports
# as data or hole depending on the page cache (a read changes the
# answer), which no cache can follow; without tmpfs the file variants
# run on $TMPDIR and avoid NO_HOLE zeroes, which is what uses it.
if [ -z "${TMPDIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] &&
   [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin memory
requires_nbdkit_plugin file
requires_nbdkit_plugin nbd
requires_nbdkit_filter delay

ops=${STRESS_OPS:-12000}
secs=${STRESS_TIME:-16}
seed=${STRESS_SEED:-$(( (RANDOM << 15 | RANDOM) ))}
threads=${STRESS_THREADS:-4}
only=${STRESS_ONLY:-.}
read -r -a extra <<<"${STRESS_ARGS:-}"
no_hole_zero=1
if [ "$(stat -f -c %T "$tmp")" != tmpfs ]; then
  echo "note: $tmp is not tmpfs: file variants avoid NO_HOLE zeroes"
  no_hole_zero=0
fi
# The allocation unit of files in $tmp (4K on tmpfs with small pages):
# the data extent that a one-byte write makes in a sparse file.
file_unit=$("$PYTHON" - "$tmp/unit-probe" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
os.ftruncate(fd, 64 << 20)
os.pwrite(fd, b"x", (32 << 20) + 1)
a = os.lseek(fd, 0, os.SEEK_DATA)
print(max(4096, os.lseek(fd, a, os.SEEK_HOLE) - a))
os.close(fd)
os.unlink(sys.argv[1])
PY
)
echo "stress: base seed $seed, $ops ops per variant, time limit ${secs}s," \
     "file allocation unit $file_unit"

# First, deterministically, the case the random runs found first: a
# write changes the allocation of its whole unit (32K page of the
# memory plugin, 4K page of tmpfs), including bytes of the unit that
# a cached extent covers without overlapping the write, because that
# extent was cut where an earlier request happened to start.
cat > "$tmp/unit.py" <<'PY'
import sys
from cetest import *

G = int(sys.argv[1])
h = conn()
# A hole learned from the middle of a unit; then data at its start.
eq("flags in the middle of a hole unit", HOLE | ZERO, flags_at(h, G // 2))
h.pwrite(b"\xaa" * 512, 0)
check(not flags_at(h, G // 2) & HOLE,
      "after a write at the start of the unit its middle is not a hole")
if sys.argv[2] == "memory":
    # Allocated zeroes learned from the middle of a page; then zeroing
    # its only data frees the page (the memory plugin frees a page
    # whose bytes are all zero).
    h.pwrite(b"\xbb" * 512, 4 * G)
    eq("flags in the middle of an allocated page", ZERO,
       flags_at(h, 4 * G + G // 2))
    h.zero(512, 4 * G)
    eq("after zeroing the page's data, its middle", HOLE | ZERO,
       flags_at(h, 4 * G + G // 2))
PY
if [ "${STRESS_UNIT:-1}" != 0 ]; then
  timeout 60 nbdkit -U - --filter="$FILTER" memory 1M \
    cacheextents-prefetch=false --run "$py $tmp/unit.py 32768 memory"
  if [ "$(stat -f -c %T "$tmp")" = tmpfs ]; then
    truncate -s 1M "$tmp/unit.img"
    timeout 60 nbdkit -U - --filter="$FILTER" file "$tmp/unit.img" \
      cacheextents-prefetch=false --run "$py $tmp/unit.py $file_unit file"
  fi
fi

n=0 total_ops=0 total_checked=0
start_all=$(date +%s)

# variant LABEL BACKEND PREFETCH FRONT-PARAMS...
variant ()
{
  local label=$1 backend=$2 prefetch=$3
  shift 3
  if ! [[ $label =~ $only ]]; then
    return 0
  fi
  n=$((n + 1))
  local vseed=$((seed + n)) sock=$tmp/back-$n.sock out=$tmp/out-$n
  local back=() gran nhz=1 limit flush=()
  case $backend in
    memory) back=(memory 16M); gran=32768 ;;
    memory-wb)
      requires_nbdkit_filter cache
      back=(--filter=cache memory 16M cache=writeback); gran=32768
      backend=memory flush=(--flush) ;;
    file)
      rm -f "$tmp/disk-$n"
      truncate -s 16M "$tmp/disk-$n"
      back=(file "$tmp/disk-$n"); gran=$file_unit; nhz=$no_hole_zero ;;
  esac
  # The front, started by the back's --run so that both always exit.
  {
    printf 'exec nbdkit -U - --filter=%q --filter=delay nbd socket=%q' \
      "$FILTER" "$sock"
    printf ' %q' cacheextents-prefetch="$prefetch" "$@"
    printf ' --run %q\n' "$py $(printf '%q ' "$top/tests/stress.py" \
      --back "$sock" --seed "$vseed" --ops "$ops" --time-limit "$secs" \
      --threads "$threads" --backend "$backend" --gran "$gran" \
      --prefetch "$prefetch" --no-hole-zero "$nhz" --label "$label" \
      ${flush[@]+"${flush[@]}"} ${extra[@]+"${extra[@]}"})"
  } > "$tmp/front-$n.sh"
  limit=$(( secs > 0 ? secs * 3 + 120 : 86400 ))
  echo "== $label (seed $vseed)"
  if ! timeout "$limit" nbdkit -U "$sock" "${back[@]}" \
         --run "bash $tmp/front-$n.sh" > "$out" 2>&1; then
    cat "$out"
    echo "FAIL: variant $label (seed $vseed); rerun with" \
         "STRESS_SEED=$((vseed - n)) STRESS_ONLY='^$label\$'"
    exit 1
  fi
  grep -v '^stress: seed=' "$out" | grep -E '^stress:|^note' || true
  local line
  line=$(grep '^stress: .* ops=' "$out" | tail -n 1)
  total_ops=$(( total_ops + $(sed -n 's/.* ops=\([0-9]*\) in .*/\1/p' <<<"$line") ))
  total_checked=$(( total_checked + \
    $(sed -n 's/.* bs-checked=\([0-9]*\) .*/\1/p' <<<"$line") ))
}

# Label               backend prefetch  filter / delay parameters
variant mem-pf          memory  true   delay-extents=2ms delay-write=1ms \
                                       delay-zero=2ms delay-trim=1ms
variant mem-pf-small    memory  true   cacheextents-window=64K \
                                       cacheextents-max-size=32K \
                                       cacheextents-granularity=32K \
                                       cacheextents-prefetch-threads=2 \
                                       delay-extents=1ms delay-write=3ms \
                                       delay-zero=1ms delay-trim=3ms
variant mem-nopf        memory  false  cacheextents-window=256K \
                                       delay-extents=3ms delay-write=2ms \
                                       delay-zero=1ms delay-trim=2ms \
                                       delay-fast-zero=false
variant file-pf-window  file    true   cacheextents-window=1M \
                                       cacheextents-granularity=$file_unit \
                                       cacheextents-prefetch-threads=3 \
                                       delay-extents=3ms delay-write=2ms \
                                       delay-zero=2ms delay-trim=2ms
variant mem-wb          memory-wb true delay-extents=1ms delay-write=2ms \
                                       delay-zero=1ms delay-trim=1ms
variant file-nopf       file    false  cacheextents-granularity=$file_unit \
                                       delay-extents=1ms delay-write=1ms \
                                       delay-zero=5ms delay-trim=1ms

if [ "$n" -eq 0 ]; then
  echo "no variant matches STRESS_ONLY=$only"
  exit 1
fi
took=$(( $(date +%s) - start_all ))
echo "stress: total $total_ops operations, $total_checked block status" \
     "answers checked, $n variants, base seed $seed, ${took}s" \
     "($(( total_ops / (took > 0 ? took : 1) )) ops/s)"
