#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# A bound that holds whatever the number of connections.  20
# connections with private maps (the multi-conn filter hides
# multi-conn) to sparse-random 64G runlength=4096, with
# cacheextents-max-size=8M and no prefetch, each asks block status once
# at its own offset, all open together.  nbdkit's peak resident memory
# (VmHWM) may exceed that of the same run without the filter by at
# most max-size + 24 MiB: a new scope's first call must be sized safely
# (nbdkit holds the whole answer), and storing one answer must not
# evict the others.  Then every connection walks 256M from its offset
# (20 x 13,000 extents: far more than 8M holds, so the maps evict) and
# the answers must equal the plugin's own; the statsfile shows the
# evictions.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin sparse-random
requires_nbdkit_filter multi-conn
[ -r /proc/self/status ] || { echo "$0: test skipped: no /proc"; exit 77; }

cat > "$tmp/t.py" <<'PY'
import os, sys
from cetest import *

G = 1 << 30
M = 1 << 20
check_exact = sys.argv[1] == "1"
hs = [conn() for i in range(20)]
for i, h in enumerate(hs):
    bs(h, i * 3 * G + 12345 * 512, 64 * 1024)
if check_exact:
    ref = conn(sock=os.environ["refsock"])
    for i, h in enumerate(hs):
        off = i * 3 * G + 12345 * 512
        eq("connection %d's map of 256M" % i,
           walk(ref, off, off + 256 * M), walk(h, off, off + 256 * M))
pid = open(os.environ["tmp"] + "/pid").read().strip()
with open("/proc/%s/status" % pid) as f:
    for line in f:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
with open(os.environ["tmp"] + "/hwm", "w") as f:
    f.write("%d\n" % hwm)
PY

disk=(sparse-random 64G seed=11 runlength=4096)
ours="cacheextents-max-size=8M cacheextents-prefetch=false"
ours="$ours cacheextents-statsfile=$tmp/stats"
# hwm CHECK-EXACT [--filter=... [PARAMS]]: nbdkit's peak RSS in KiB.
hwm ()
{
  local exact=$1 filter=${2:-} params=${3:-}
  rm -f "$tmp/hwm" "$tmp/pid" "$tmp/ref.sock"
  timeout 200 nbdkit -U "$tmp/ref.sock" "${disk[@]}" --run "
    refsock=$tmp/ref.sock; export refsock
    nbdkit -U - -P $tmp/pid $filter --filter=multi-conn ${disk[*]} \
      multi-conn-mode=disable $params --run '$py $tmp/t.py $exact'" \
    > "$tmp/out" 2>&1 || { cat "$tmp/out" >&2; exit 1; }
  grep -v '^ok' "$tmp/out" >&2 || true
  cat "$tmp/hwm"
}

base=$(hwm 0)
with=$(hwm 1 --filter="$FILTER" "$ours")
limit=$((base + 8 * 1024 + 24 * 1024))
echo "peak RSS without the filter ${base} KiB, with ${with} KiB" \
     "(limit ${limit} KiB)"
if [ "$with" -gt "$limit" ]; then
  echo "FAIL: peak RSS ${with} KiB over ${limit} KiB"
  exit 1
fi
echo "ok: peak RSS within max-size + 24 MiB of the run without the filter"
cat "$tmp/stats"
evictions=$(stats_value evictions "$tmp/stats")
[ "${evictions:-0}" -gt 0 ] || { echo "FAIL: no evictions"; exit 1; }
echo "ok: $evictions evictions"
