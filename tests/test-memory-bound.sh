#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Memory bound: a disk of 2,097,152 extents (sparse-random, 8G,
# alternating 4K runs) walked through the filter with
# cacheextents-max-size=1M.  The resident memory of nbdkit (VmHWM from
# /proc/PID/status, read after every request of the walk) must stay
# within
#
#     overhead + 3 * max-size + 16M + 2 * answer
#
# 'overhead' is VmHWM of the same walk with the filter at a large bound
# on a small disk (8M, 2048 extents), measured here first.  3 * max-size
# allows for what the filter does not count (malloc's headers,
# per-thread arenas); 16M for buffers.  'answer' is what a backend
# answer of one window costs: VmHWM of a plain nbdkit (no filter)
# answering one block status request of the window's size on this
# disk, less that of one 16M request: 0 for a 16M window, about 32M
# for the default window (4G, ~1M extents on this disk).  Twice: see
# the limit of run 4 below.
#
# Runs, each against a second nbdkit serving the same disk without the
# filter (same seed) as the truth:
#   1. overhead: large bound, small disk;
#   2. max-size=1M, cacheextents-window=16M: within the limit; then 400
#      random block status requests near the end of the walk (answered
#      from the map after millions of evictions) and a re-walk of the
#      last 64M are compared exactly with the truth; the statsfile
#      shows evictions > 0 and hits > 0;
#   3. max-size=1G, same window: resident memory is far above run 2,
#      so it is the bound that limits run 2;
#   4. max-size=1M with the default window (the filter's defaults
#      otherwise): within the limit, with 'answer' for a 4G window.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin sparse-random
requires_nbdkit_plugin nbd
[ -r /proc/self/status ] || { echo "$0: test skipped: no /proc"; exit 77; }

disk=(sparse-random seed=4242 percent=50 runlength=4096)
bound=$((1 << 20))

cat > "$tmp/walk.py" <<'PY'
import os, random, sys, time
import nbd
from cetest import *

limit_kb = int(sys.argv[1])         # 0: no limit
check_exact = sys.argv[2] == "1"
one = int(sys.argv[3])              # >0: only one request of this size
pidfile = os.environ["pidfile"]


def status():
    pid = open(pidfile).read().strip()
    out = {}
    for line in open("/proc/%s/status" % pid):
        k, v = line.split(":", 1)
        out[k] = v.strip()
    return int(out["VmRSS"].split()[0]), int(out["VmHWM"].split()[0])


h = conn()
size = h.get_size()
if one:
    got = bs(h, 0, one)
    rss, hwm = status()
    print("one request of %#x: %d extents, VmHWM %d kB"
          % (one, len(got), hwm))
    with open(os.environ["result"], "w") as f:
        f.write("%d %d\n" % (len(got), hwm))
    sys.exit(0)
truth = conn(sock=os.environ["truth"])
pos, n, reqs = 0, 0, 0
t0 = time.time()
worst = 0
while pos < size:
    got = bs(h, pos, min(16 << 20, size - pos))
    n += len(got)
    reqs += 1
    pos = got[-1][0] + got[-1][1]
    rss, hwm = status()
    worst = max(worst, hwm)
    if limit_kb and hwm > limit_kb:
        fail("VmHWM %d kB exceeds the limit %d kB after %d requests "
             "(offset %#x, %.1fs)" % (hwm, limit_kb, reqs, pos,
                                      time.time() - t0))
print("walk: %d extents in %d requests, %.1fs, VmRSS %d kB, VmHWM %d kB"
      % (n, reqs, time.time() - t0, rss, hwm), flush=True)
with open(os.environ["result"], "w") as f:
    f.write("%d %d\n" % (n, hwm))

if check_exact:
    r = random.Random(1)
    lo = max(0, size - (64 << 20))
    for i in range(400):
        off = r.randrange(lo, size)
        count = r.choice((1, 512, 4096, 10000, 1 << 20))
        count = min(count, size - off)
        one = r.random() < 0.3
        a = bs(h, off, count, one)
        end = min(off + count, a[-1][0] + a[-1][1])
        want = walk(truth, off, end)
        got = []
        for (o, l, f) in a:
            o2, e2 = max(o, off), min(o + l, end)
            if o2 >= e2:
                continue
            if got and got[-1][2] == f:
                got[-1] = (got[-1][0], e2 - got[-1][0], f)
            else:
                got.append((o2, e2 - o2, f))
        if got != want:
            fail("answer at %#x+%#x%s differs from the truth:\n  got  %s\n"
                 "  want %s" % (off, count, " REQ_ONE" if one else "",
                                fmt(got), fmt(want)))
    print("ok: 400 random answers near the end equal the truth")
    want, got = walk(truth, lo, size), walk(h, lo, size)
    if got != want:
        i = next(k for k in range(min(len(got), len(want)))
                 if got[k] != want[k])
        fail("re-walk of the last 64M differs at extent %d: got %s, "
             "want %s" % (i, fmt(got[i:i + 4]), fmt(want[i:i + 4])))
    print("ok: re-walk of the last 64M (%d extents) equals the truth"
          % len(got))
    rss, hwm = status()
    check(not limit_kb or hwm <= limit_kb,
          "VmHWM %d kB still within %d kB" % (hwm, limit_kb))
PY

# run NAME SIZE LIMIT_KB EXACT FILTER-PARAMS...: walk, leave figures
# in $tmp/NAME.result ("extents hwm_kb") and the stats in $tmp/NAME.stats.
run ()
{
  local name=$1 size=$2 limit=$3 exact=$4
  shift 4
  echo "== $name: size=$size $*"
  pidfile=$tmp/$name.pid result=$tmp/$name.result truth=$tmp/truth.sock
  export pidfile result truth
  rm -f "$truth"
  timeout 300 nbdkit -U "$truth" "${disk[@]}" size="$size" --run "
    timeout 250 nbdkit -U - -P '$pidfile' --filter='$FILTER' \
      ${disk[*]} size=$size cacheextents-statsfile='$tmp/$name.stats' $* \
      --run '$py $tmp/walk.py $limit $exact 0'"
  cat "$tmp/$name.stats"
}

# plain NAME COUNT: a plain nbdkit answering one request of COUNT bytes.
plain ()
{
  pidfile=$tmp/$1.pid result=$tmp/$1.result
  export pidfile result
  timeout 100 nbdkit -U - -P "$pidfile" "${disk[@]}" size=8G \
    --run "$py $tmp/walk.py 0 0 $2"
}

plain plain-16M $((16 << 20))
read -r extents hwm_16m < "$tmp/plain-16M.result"
plain plain-4G $((0xfff00000))
read -r extents hwm_4g < "$tmp/plain-4G.result"
answer=$((hwm_4g - hwm_16m))
echo "answer of a 4G window ($extents extents): $answer kB"

run overhead 8M 0 0 cacheextents-max-size=1G cacheextents-window=16M
read -r extents overhead < "$tmp/overhead.result"
limit=$((overhead + 3 * bound / 1024 + 16 * 1024))
echo "overhead: VmHWM $overhead kB; limit for max-size=$bound: $limit kB"

run bounded 8G "$limit" 1 cacheextents-max-size=$bound \
  cacheextents-window=16M
read -r extents hwm_bounded < "$tmp/bounded.result"
if [ "$extents" -lt 2000000 ]; then
  echo "FAIL: the disk has only $extents extents"
  exit 1
fi
echo "ok: the disk has $extents extents"
evictions=$(stats_value evictions "$tmp/bounded.stats")
hits=$(stats_value hits "$tmp/bounded.stats")
if [ "${evictions:-0}" -eq 0 ] || [ "${hits:-0}" -eq 0 ]; then
  echo "FAIL: expected evictions > 0 and hits > 0 in the stats"
  exit 1
fi
echo "ok: evictions=$evictions hits=$hits"

run large 8G 0 0 cacheextents-max-size=1G cacheextents-window=16M
read -r extents hwm_large < "$tmp/large.result"
if [ "$hwm_large" -lt $((hwm_bounded + 64 * 1024)) ]; then
  echo "FAIL: with max-size=1G VmHWM is $hwm_large kB, not far above" \
       "$hwm_bounded kB: the bound does not seem to be what limits it"
  exit 1
fi
echo "ok: max-size=1G: VmHWM $hwm_large kB, max-size=1M: $hwm_bounded kB"

# With a window this large the filter holds the backend's answer and,
# for a client that asked for the whole window, the part of it copied
# for nbdkit's reply: two answers at most.
limit4g=$((limit + 2 * answer))
echo "limit with the default window: $limit4g kB"
run default-window 8G "$limit4g" 0 cacheextents-max-size=$bound
read -r extents hwm_default < "$tmp/default-window.result"
echo "memory-bound: overhead $overhead kB; max-size=1M: $hwm_bounded kB" \
     "(window 16M, limit $limit kB), $hwm_default kB (default window," \
     "limit $limit4g kB); max-size=1G: $hwm_large kB (window 16M)"
