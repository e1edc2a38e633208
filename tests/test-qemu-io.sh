#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# qemu-io against the filter: repeated maps cost one backend call, a
# read invalidates nothing, and write, discard and write-zeroes each
# force the next block status of their range to the backend while an
# unrelated extent stays cached.
. "$(dirname "$0")/functions.sh"
requires qemu-io
requires_python_nbd
requires_nbdkit_plugin data
requires_nbdkit_filter log

# 8M with 32K of data at 0, 2M, 4M and 6M, holes between.
disk=(data data="1 @0x200000 2 @0x400000 3 @0x600000 4" size=8M)

# The map without the filter, for comparison (qemu-io sees a raw image
# as allocated throughout, so this mostly shows it asks block status).
timeout 60 nbdkit -U - "${disk[@]}" \
  --run 'qemu-io -f raw -r "$uri" -c map' > "$tmp/plain.map"
cat "$tmp/plain.map"

cat > "$tmp/t.py" <<'PY'
import os, subprocess
from cetest import *

M = 1 << 20
K = 1 << 10

def qemu_io(*cmds, readonly=False):
    args = ["qemu-io", "-f", "raw"] + (["-r"] if readonly else [])
    args.append(os.environ["uri"])
    for c in cmds:
        args += ["-c", c]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or "error" in r.stdout.lower():
        fail("qemu-io %r: rc=%d %s %s" % (cmds, r.returncode, r.stdout,
                                           r.stderr))
    return r.stdout

with open(os.path.join(os.environ["tmp"], "plain.map")) as f:
    plain = f.read()

# Three maps in one qemu-io: one backend call in all.
n, out = cost(qemu_io, "map", "map", "map", readonly=True)
eq("qemu-io map output", plain * 3, out)
eq("backend calls for three maps", 1, n)
for (c, o, cnt, one) in backend_log():
    eq("req_one passed down", 0, one)

h = conn()
size = h.get_size()
DATA = [(0, 32 * K, 0), (32 * K, 2 * M - 32 * K, HOLE | ZERO),
        (2 * M, 32 * K, 0), (2 * M + 32 * K, 2 * M - 32 * K, HOLE | ZERO),
        (4 * M, 32 * K, 0), (4 * M + 32 * K, 2 * M - 32 * K, HOLE | ZERO),
        (6 * M, 32 * K, 0), (6 * M + 32 * K, 2 * M - 32 * K, HOLE | ZERO)]
# The data plugin reports its first byte (value 1) as data; check the
# whole layout from a fresh connection: all from the cache.
n, m = cost(walk, h)
eq("map through the filter", fmt(DATA), fmt(m))
eq("backend calls for a cached walk", 0, n)

# A read changes nothing.
n, _ = cost(qemu_io, "read -P 2 2M 1", "read 0 8M", readonly=True)
eq("backend calls of a read", 0, n)
n, m = cost(walk, h)
eq("backend calls for a walk after a read", 0, n)
eq("map after a read", fmt(DATA), fmt(m))

def step(what, cmd, off, want_flags, far, mask=HOLE | ZERO):
    qemu_io(cmd)
    # An extent that does not overlap the write stays cached ...
    n, f = cost(flags_at, h, far)
    eq("%s: backend calls at unrelated %#x" % (what, far), 0, n)
    # ... and the written range goes to the backend, with the new state.
    n, f = cost(flags_at, h, off)
    eq("%s: backend calls at %#x" % (what, off), 1, n)
    eq("%s: flags at %#x (mask %d)" % (what, off, mask), want_flags, f & mask)

# write into the hole after the first data extent
step("write", "write -P 0x55 1M 64K", 1 * M, 0, 6 * M)
# discard the data at 2M
step("discard", "discard 2M 32K", 2 * M, HOLE | ZERO, 6 * M)
# write zeroes over the data at 4M (whether the plugin punches a hole is
# its own business; it must read as zero)
step("write -z", "write -z 4M 32K", 4 * M, ZERO, 0, mask=ZERO)

# In the end, the whole map through the filter equals the backend.
final = walk(h)
h2 = conn()
print("final map:", fmt(final))
check(final[1] == (32 * K, M - 32 * K, HOLE | ZERO) and
      final[2] == (M, 64 * K, 0), "data written at 1M is seen")
check(all(f & ZERO for (o, l, f) in final if 2 * M <= o < 6 * M),
      "2M..6M reads as zero after discard and write -z")
check((6 * M, 32 * K, 0) in final, "data at 6M untouched")
PY

# Writes forget cached extents within cacheextents-granularity (2M by
# default) of themselves; the data plugin allocates 32K pages, so 64K
# keeps the extents 2M away from each write out of reach.
gran=
filter_has_param cacheextents-granularity && gran=cacheextents-granularity=64K
timeout 120 nbdkit -U - --filter="$FILTER" --filter=log \
  "${disk[@]}" $CE_OPTS $gran logfile="$log" --run "$py $tmp/t.py"
