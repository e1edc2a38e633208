#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Replies nbdkit can always send: block status with count = 2^32-1,
# asked three times (the later ones is served from the map, whose merged extents
# are longer than the request), at offset 0 and at offsets near the
# export end, on plugins that report one huge hole (file over a sparse
# file, memory) and many extents (sparse-random).  nbdkit before 1.43.7
# aborts the server on an extent that reaches 2^32-1 bytes past the
# request offset and beyond (CVE-2025-47711); without the filter the
# file plugin is served fine (it answers in pieces), memory is not (so
# the truth is asked of the plugin alone in 1G pieces).  Every answer must start at the offset,
# cover at most the request and agree with the plugin's own.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires truncate
requires_nbdkit_plugin file
requires_nbdkit_plugin memory
requires_nbdkit_plugin sparse-random

cat > "$tmp/t.py" <<'PY'
import os
from cetest import *

MAXC = 0xffffffff
ref = conn(sock=os.environ["refsock"])
h = conn()
size = h.get_size()
for off in (0, 512, size - (5 << 30), size - MAXC, size - (1 << 20),
            size - 512):
    if off < 0:
        continue
    count = min(MAXC, size - off)           # libnbd refuses more
    # Asked of the plugin alone in 1G pieces: nbdkit 1.32 itself dies
    # on count 2^32-1 over memory's one huge hole.
    want = walk(ref, off, off + count, step=1 << 30)
    for n in (1, 2, 3):
        got = bs(h, off, count)
        end = got[-1][0] + got[-1][1]
        check(end <= off + count,
              "answer %d at %#x ends within the request" % (n, off))
        eq("answer %d at %#x, clipped" % (n, off),
           fmt(clip(want, off, end)), fmt(clip(got, off, end)))
    one = bs(h, off, count, req_one=True)
    check(len(one) == 1 and one[0][1] <= count, "REQ_ONE at %#x" % off)
eq("server alive", size, conn().get_size())
PY
cat >> "$tmp/cetest.py" <<'PY'


def clip(extents, lo, hi):
    """Extents clipped to [lo, hi)."""
    out = []
    for (o, l, f) in extents:
        a, b = max(o, lo), min(o + l, hi)
        if a < b:
            if out and out[-1][2] == f and out[-1][0] + out[-1][1] == a:
                out[-1] = (out[-1][0], out[-1][1] + b - a, f)
            else:
                out.append((a, b - a, f))
    return out
PY

truncate -s 16G "$tmp/hole.img"
# run FILTER-PARAMS PLUGIN ARGS...: the plugin alone is the truth.
run ()
{
  local params=$1
  shift
  echo "== $* $params"
  rm -f "$tmp/ref.sock"
  timeout 120 nbdkit -U "$tmp/ref.sock" "$@" --run "
    refsock=$tmp/ref.sock; export refsock
    nbdkit -U - --filter='$FILTER' $* $params --run '$py $tmp/t.py'"
}
run "" file "$tmp/hole.img"
run "" memory 16G
run "" sparse-random 16G seed=3 percent=5 runlength=268435456
run "$CE_OPTS" file "$tmp/hole.img"
