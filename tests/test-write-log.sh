#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The write log is bounded and stays exact.  Rule S remembers each
# write that completes while an older backend call is in flight; a
# call that hangs (a remote server that stopped answering) while
# writes go on must not grow that log, or the time each write spends
# on it, without bound.  At LOG_MAX (16384) entries the log is folded
# into fewer, larger ranges instead.
#
# Connection A's block status of the whole 64M disk is held 5 s by the
# delay filter below the cache; B writes 512 bytes at 20,000 places
# 4K apart in the upper half meanwhile (granularity 512, so that the
# log cannot merge them).  Then:
#   - A's answer is stored where nothing was written: asking at 0
#     costs no backend call (a log that made every call in flight
#     store nothing once full would cost one);
#   - the map through the filter equals the plugin's own map, read by
#     a second server on the same file.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin file
requires_nbdkit_filter delay
requires_nbdkit_filter log

cat > "$tmp/t.py" <<'PY'
import os
from cetest import *
M = 1 << 20
writes = 20000
ref = conn(sock=os.environ["refsock"])
a, b = conn(), conn()
held = a.aio_block_status(64 * M, 0, lambda *x: 0)
time.sleep(0.5)
buf = b"\x02" * 512
for i in range(0, writes, 64):
    for j in range(i, min(i + 64, writes)):
        b.aio_pwrite(buf, 32 * M + (j * 4096) % (32 * M) + (j // 8192) * 512)
    while b.aio_in_flight() > 0:
        b.poll(-1)
if a.aio_command_completed(held):
    print("%s: test skipped: the held call ended before %d writes"
          % (sys.argv[0], writes))
    sys.exit(77)
while not a.aio_command_completed(held):
    a.poll(-1)
print("%d writes while the call was held" % writes)
n, f = cost(flags_at, a, 0)
eq("flags at 0", HOLE | ZERO, f)
eq("backend calls asking at 0 again", 0, n)
eq("the map", fmt(walk(ref)), fmt(walk(a, req_one=True, step=M)))
PY
truncate -s 64M "$tmp/disk"
rm -f "$tmp/ref.sock"
timeout 120 nbdkit -U "$tmp/ref.sock" file "$tmp/disk" --run "
  refsock=$tmp/ref.sock; export refsock
  nbdkit -U - --filter='$FILTER' --filter=log --filter=delay \
    file '$tmp/disk' delay-extents=5 logfile='$log' \
    cacheextents-window=64M cacheextents-granularity=512 $CE_OPTS \
    --run '$py $tmp/t.py'"
