#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# A write smaller than the backend's allocation unit changes the block
# status of the whole unit (a 1-byte write makes a 4K filesystem block,
# or a 32K page of the memory plugin, allocated).  After such a write
# has returned, block status through the filter must not claim a hole
# (or zeroes) anywhere the backend, asked at the same offset, no longer
# does: the filter's flags must be a subset of the backend's.
#
# The trap: a cached extent that starts inside the unit but after the
# written bytes (it was learnt by a query at an unaligned offset) does
# not overlap the write, yet it is stale.
#
# The filter runs on top of the nbd plugin, connected to an outer
# nbdkit that serves the real backend; the test asks both.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires truncate
requires_nbdkit_plugin nbd
requires_nbdkit_plugin memory
requires_nbdkit_plugin file
requires_nbdkit_filter log

cat > "$tmp/t.py" <<'PY'
import os, sys
from cetest import *

K = 1 << 10
unit = int(sys.argv[1])             # the backend's allocation unit
f = conn()                          # through the filter
b = conn(sock=os.environ["backend_sock"])   # the backend itself

def subset_check(what, lo, hi, step=512, first=()):
    # Offsets in 'first' are asked before the range: a query that
    # misses refreshes the map from its offset on.
    for o in list(first) + list(range(lo, hi, step)):
        ff, bf = flags_at(f, o), flags_at(b, o)
        if ff & ~bf:
            fail("%s: at %#x the filter says flags %d, the backend %d "
                 "(the filter claims %s the backend does not)"
                 % (what, o, ff, bf,
                    "+".join(n for (n, v) in (("hole", HOLE), ("zero", ZERO))
                             if ff & ~bf & v)))
    print("ok: %s: [%#x, %#x) no claim beyond the backend's" % (what, lo, hi))

# Case 1: learn the map from an offset inside a hole unit, then write
# one byte at the start of that unit.
P = 4 * unit
f_first = bs(f, P + unit // 2, 512)
print("learnt:", fmt(f_first))
check(f_first[0][2] == HOLE | ZERO, "the unit starts as a hole")
f.pwrite(b"\x01", P)
check(flags_at(b, P) & HOLE == 0, "the backend allocated the unit")
subset_check("1-byte write at the start of the unit", P, P + 2 * unit,
             first=[P + unit // 2, P + unit - 512])

# Case 2: the same, writing at the end of a unit whose start was learnt.
Q = 8 * unit
bs(f, Q, 512)
f.pwrite(b"\x02", Q + unit - 1)
subset_check("1-byte write at the end of the unit", Q - unit, Q + 2 * unit,
             first=[Q, Q + unit // 2])

# Case 3: a whole walk through the filter agrees with the backend.
for (o, l, fl) in walk(f):
    pass
subset_check("whole disk", 0, f.get_size(), step=unit // 4)
PY

# run UNIT PLUGIN ARGS...: the backend served by an outer nbdkit, the
# filter by an inner one on the nbd plugin.
run ()
{
  local unit=$1
  shift
  echo "== $* (unit $unit)"
  rm -f "$log"
  timeout 60 nbdkit -U - "$@" --run "
    backend_sock=\$unixsocket; export backend_sock
    nbdkit -U - --filter='$FILTER' --filter=log nbd socket=\"\$unixsocket\" \
      $CE_OPTS logfile='$log' --run '$py $tmp/t.py $unit'"
}

run 32768 memory 1M
truncate -s 1M "$tmp/disk"
# The file system's block size is the file plugin's unit; it must
# report holes for this case to mean anything.
bsize=$(stat -f -c %S "$tmp")
if nbdkit -U - file "$tmp/disk" --run 'nbdinfo --map "$uri"' | grep -q hole
then
  run "$bsize" file "$tmp/disk"
else
  echo "note: the file system of $tmp reports no holes: file case skipped"
fi
