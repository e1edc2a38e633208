#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Scopes that come and go.  3000 connections, each to a new export
# name of 4 KiB, four at a time, each leaving at once: nbdkit's resident memory may grow
# by at most 4 MB more than the same run without the filter.  Then the
# same with one block status per connection (each name's map then holds
# something, and idle shared scopes are kept while the bound allows):
# the growth stays within cacheextents-max-size (1M here) plus 4 MB
# (the run without the filter is measured once: it grows the same).
# Last, a read-only walk on two export names, one after the other: the
# second connection to a name finds its map (no backend call), so
# idle scopes are kept when there is room.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin memory
requires_nbdkit_filter log
[ -r /proc/self/status ] || { echo "$0: test skipped: no /proc"; exit 77; }

cat > "$tmp/t.py" <<'PY'
import concurrent.futures, os, sys
from cetest import *

N = 3000
ask = sys.argv[1] == "bs"


def rss_kb():
    pid = open(os.environ["tmp"] + "/pid").read().strip()
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def one(i):
    h = conn(export=("%05d" % i) * 819)          # 4095 bytes
    if ask:
        bs(h, 0, 1 << 20)
    h.shutdown()


def run(first, n):
    # Four clients at a time, each connecting, maybe asking, leaving.
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(one, range(first, first + n)))


run(0, 200)                       # warm up malloc and nbdkit's threads
before = rss_kb()
run(200, N)
after = rss_kb()
print("rss growth %d KiB" % (after - before))
with open(os.environ["tmp"] + "/growth", "w") as f:
    f.write("%d\n" % (after - before))
PY

# growth FILTER-ARGS...: nbdkit's RSS growth in KiB over the run.
growth ()
{
  rm -f "$tmp/growth" "$tmp/pid"
  timeout 240 nbdkit -U - -P "$tmp/pid" "$@" \
    --run "$py $tmp/t.py $mode" >/dev/null
  cat "$tmp/growth"
}

mode=connect
base=$(growth memory 1M)
for mode in connect bs; do
  ours=$(growth --filter="$FILTER" memory 1M cacheextents-max-size=1M)
  echo "== $mode: growth without the filter ${base} KiB, with ${ours} KiB"
  allow=4096
  [ "$mode" = bs ] && allow=$((4096 + 1024))
  if [ "$ours" -gt $((base + allow)) ]; then
    echo "FAIL: $mode: RSS grew ${ours} KiB, more than ${base} + ${allow} KiB"
    exit 1
  fi
  echo "ok: $mode: within ${allow} KiB of the run without the filter"
done

cat > "$tmp/again.py" <<'PY'
from cetest import *
for name in ("a", "b", "a", "b"):
    h = conn(export=name)
    n, _ = cost(walk, h)
    print("%s: %d backend calls" % (name, n))
    h.shutdown()
eq("backend calls in all", 2, calls())
PY
echo "== idle scopes kept"
timeout 60 nbdkit -U - -r --filter="$FILTER" --filter=log memory 1M \
  logfile="$log" $CE_OPTS --run "$py $tmp/again.py"
