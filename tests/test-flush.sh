#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Rule F: a write-back layer below the filter (nbdkit's cache filter,
# cache=writeback) shows a write to block status only once it is
# flushed.  A client asks block status (so the cache learns the
# holes), writes 4K at 8 offsets 1M apart, then flushes (or writes
# with FUA instead); nbdcopy must then copy every written block.  The
# cache must also not hide the flush: block status right after it
# reports data at every written block, with backend calls counted
# below the filter to show the answers were not all re-asked.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires nbdcopy
requires_nbdkit_plugin memory
requires_nbdkit_filter cache
requires_nbdkit_filter log

cat > "$tmp/t.py" <<'PY'
import os, subprocess, sys, time
from cetest import *

M = 1 << 20
how = sys.argv[1]
out = os.environ["tmp"] + "/out.img"
h = conn()
walk(h)                                   # the whole disk is a hole
offsets = [(2 * i + 1) * M for i in range(8)]
for i, o in enumerate(offsets):
    flags = nbd.CMD_FLAG_FUA if how == "fua" else 0
    h.pwrite(bytes([0xa0 + i]) * 4096, o, flags)
    # Between the writes the cache learns what the backend says now.
    bs(h, 0, 64 * M)
if how == "flush":
    h.flush()
for o in offsets:
    check(not flags_at(h, o) & HOLE, "block status at %#x after the %s" %
          (o, how))
subprocess.check_call(["nbdcopy", os.environ["uri"], out])
with open(out, "rb") as f:
    data = f.read()
lost = [o for i, o in enumerate(offsets)
        if data[o:o + 4096] != bytes([0xa0 + i]) * 4096]
eq("written blocks missing from the copy", [], lost)
# Prefetch stays on throughout: while a write or flush is in flight
# it must not fetch what rule S would throw away (it once did so in a
# loop: hundreds of calls here).
n = calls()
print("backend extents calls: %d" % n)
check(n <= 40, "backend extents calls bounded (%d <= 40)" % n)
PY

for how in flush fua; do
  echo "== write-back cache below, then $how"
  rm -f "$log" "$tmp/out.img"
  # Prefetch stays on: it re-learns the pre-flush holes at once.
  timeout 120 nbdkit -U - --filter="$FILTER" --filter=cache --filter=log \
    memory 64M cache=writeback logfile="$log" --run "$py $tmp/t.py $how"
done

# A flush that fails writes nothing back: what it took must stay dirty,
# so that the flush that succeeds later still forgets it.  The error
# filter below the cache filter fails its write-back while $tmp/err
# exists.
requires_nbdkit_filter error
cat > "$tmp/fail.py" <<'PY'
import os
from cetest import *

err = os.environ["tmp"] + "/err"
h = conn()
h.pwrite(b"\xab" * 65536, 0)
open(err, "w").close()
try:
    h.flush()
    fail("the first flush should have failed")
except nbd.Error as e:
    print("ok: the first flush failed: %s" % e.string)
os.unlink(err)
eq("flags at 0 before a good flush", HOLE | ZERO, flags_at(h, 0))
h.flush()
eq("flags at 0 after the good flush", 0, flags_at(h, 0))
PY
echo "== a flush fails, then one succeeds"
timeout 60 nbdkit -U - --filter="$FILTER" --filter=cache --filter=error \
  memory 64M cache=writeback error-pwrite-rate=1 error-file="$tmp/err" \
  --run "$py $tmp/fail.py"
