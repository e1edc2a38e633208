#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Several exports never share a map: through the filter, block status
# of each export of 'file dir=' equals that export's own truth (the
# same queries without the filter), whichever export is asked first
# and with several connections open at once.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires truncate dd head
requires_nbdkit_plugin file

# Three files of the same size with different layouts.
mkdir "$tmp/dir"
head -c 4M /dev/urandom > "$tmp/dir/full"
truncate -s 4M "$tmp/dir/sparse"
truncate -s 4M "$tmp/dir/mixed"
printf 'hello' | dd of="$tmp/dir/mixed" bs=1 seek=1048576 conv=notrunc \
  status=none

cat > "$tmp/t.py" <<'PY'
import json, os, sys
from cetest import *

EXPORTS = ["full", "sparse", "mixed"]
truthfile = os.path.join(os.environ["tmp"], "truth.json")

def maps(h):
    """What a client sees: a walk and single REQ_ONE queries."""
    size = h.get_size()
    return {"walk": walk(h),
            "req_one": [bs(h, o, 4096, req_one=True)[0][2]
                        for o in range(0, size, 256 * 1024)],
            "first": bs(h, 0, size)}

if sys.argv[1] == "truth":
    truth = {e: maps(conn(e)) for e in EXPORTS}
    # The layouts really differ, or this test proves nothing.
    check(len({json.dumps(t["walk"]) for t in truth.values()}) == 3,
          "the three exports have different maps")
    with open(truthfile, "w") as f:
        json.dump(truth, f)
    sys.exit(0)

with open(truthfile) as f:
    truth = json.load(f)
def same(a, b):
    return json.loads(json.dumps(a)) == b

order = EXPORTS if sys.argv[1] == "forward" else EXPORTS[::-1]
# Several connections per export, all open together, asked in turns:
# first connection of each export, then the second of each, ...
handles = [[conn(e) for e in order] for i in range(3)]
for rnd, row in enumerate(handles):
    for e, h in zip(order, row):
        got = maps(h)
        for k in ("walk", "req_one", "first"):
            if not same(got[k], truth[e][k]):
                fail("order %s, round %d, export %s, %s: expected %r, got %r"
                     % (sys.argv[1], rnd, e, k, truth[e][k], got[k]))
        print("ok: round %d export %s matches its truth" % (rnd, e))
# The cache did cache: repeating costs no backend call.
n, _ = cost(lambda: [maps(h) for row in handles for h in row])
eq("backend calls of repeated queries", 0, n)
PY

timeout 60 nbdkit -U - file dir="$tmp/dir" --run "$py $tmp/t.py truth"
for order in forward reverse; do
  rm -f "$log"
  timeout 60 nbdkit -U - --filter="$FILTER" --filter=log file dir="$tmp/dir" \
    $CE_OPTS logfile="$log" --run "$py $tmp/t.py $order"
done
