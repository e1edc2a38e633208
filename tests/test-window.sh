#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# cacheextents-window: a miss asks the backend for at least the window
# from the requested offset (clamped to the end of the export and to a
# 32-bit count), always without REQ_ONE.
. "$(dirname "$0")/functions.sh"
requires qemu-img
requires_python_nbd
requires_nbdkit_plugin memory
requires_nbdkit_plugin data
requires_nbdkit_filter log

cat > "$tmp/t.py" <<'PY'
import sys
from cetest import *

K = 1 << 10
M = 1 << 20
window = int(sys.argv[1]) if sys.argv[1].isdigit() else None
h = conn()
size = h.get_size()

def no_req_one():
    check(all(one == 0 for (c, o, cnt, one) in backend_log()),
          "REQ_ONE never passed to the backend")

if sys.argv[2] == "walk":
    # Walk the first 1M with small REQ_ONE queries: one backend call
    # per window, each from the offset that missed, for a window; the
    # first (the export's density still unknown) also fetches the
    # window after its own (fast start).
    mapped = walk(h, 0, M, req_one=True, step=4 * K)
    eq("the map", [(0, M, HOLE | ZERO)], mapped)
    eq("backend calls", [(1, 0, 2 * window, 0)] +
       [(1, o, window, 0) for o in range(2 * window, M, window)],
       backend_log())
    # A miss in the middle asks from its own offset.
    n, _ = cost(bs, h, 3 * M + 4096, 4096)
    eq("backend calls for a miss at 3M+4K", 1, n)
    eq("that call", (1, 3 * M + 4096, window, 0), backend_log()[-1])
    # A query larger than the window asks for the whole query.
    n, _ = cost(bs, h, 2 * M, 4 * window)
    eq("call for a query of 4 windows", (1, 2 * M, 4 * window, 0),
       backend_log()[-1])
    # Near the end the window is clamped to the export.
    n, _ = cost(bs, h, size - 4096, 512, req_one=True)
    eq("that call", (1, size - 4096, 4096, 0), backend_log()[-1])
elif sys.argv[2] == "whole":
    # A small query at 0 learns the whole small disk in one call.
    n, _ = cost(bs, h, 0, 4096, req_one=True)
    eq("backend calls", [(1, 0, size, 0)], backend_log())
    n, m = cost(walk, h, req_one=True, step=64 * K)
    eq("backend calls for a REQ_ONE walk of the disk", 0, n)
    eq("the map", [(0, size, HOLE | ZERO)], m)
elif sys.argv[2] == "huge":
    # A huge window on a huge disk.  The first call knows nothing of
    # the export's density and asks only for two windows of what 1/16
    # of max-size could hold at one extent per 4K (64M / 64 / 16 * 4K
    # = 256M); once an answer showed the disk sparse, the count is the
    # window clamped to 32 bits.
    bs(h, 0, 4096, req_one=True)
    (c, o, cnt, one) = backend_log()[0]
    eq("first call", (0, 512 * M, 0), (o, cnt, one))
    bs(h, 512 * M, 4096, req_one=True)
    (c, o, cnt, one) = backend_log()[1]
    print("backend count for a huge window: %#x" % cnt)
    check(o == 512 * M and one == 0 and 3 << 30 < cnt <= 0xffffffff,
          "the count is the window clamped to 32 bits")
    no_req_one()
PY

# run SIZE WINDOW CASE [PARAMS...]
run ()
{
  local size=$1 window=$2 case=$3
  shift 3
  echo "== memory $size, window $window, $case"
  rm -f "$log"
  timeout 60 nbdkit -U - --filter="$FILTER" --filter=log memory "$size" \
    $CE_OPTS logfile="$log" "$@" --run "$py $tmp/t.py $window $case"
}

run 4M 65536 walk cacheextents-window=64K
run 1G 65536 walk cacheextents-window=64K
run 1G 262144 walk cacheextents-window=256K
run 16M default whole
run 64M default whole cacheextents-window=64M
run 8G huge huge cacheextents-window=4E

# qemu-img (which always sets REQ_ONE) maps a small disk in one call,
# and the REQ_ONE is not passed down.
echo "== qemu-img map"
rm -f "$log"
timeout 60 nbdkit -U - --filter="$FILTER" --filter=log \
  data data="1 @0x400000 2 @0xa00000 3" size=16M \
  $CE_OPTS logfile="$log" --run 'qemu-img map --output=json "$uri"' \
  > "$tmp/map.json"
cat "$tmp/map.json"
assert_eq "extents in qemu-img's map" 6 "$(grep -c '"start"' "$tmp/map.json")"
grep ' Extents id=' "$log"
assert_eq "backend calls for qemu-img map" 1 "$(backend_calls)"
assert_eq "backend calls with req_one=1" 0 \
  "$(grep ' Extents id=' "$log" | grep -c 'req_one=1' || :)"
