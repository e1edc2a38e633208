#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Prefetch hides the backend's latency.  Backend calls are counted with
# the log filter below the cache; answers are compared with a second
# nbdkit serving the same disk without the filter (sparse-random with
# the same seed).
#
#  A. Filling ahead: after two requests moving forward and a pause,
#     prefetch has made more backend calls, then a walk of what lies
#     within the horizon (16 calls of the 8M window) makes no call
#     there (only calls that read on ahead of it).
#  B. A client that jumps far ahead is served (exactly), and a walk
#     from there misses nothing: the workers followed, one call ahead
#     after the jump, then further as the client walks on.
#  C. Writes during a scan (memory plugin, whole pages, checked
#     against a model): no answer is stale, during or after the scan.
#  D. The workers stop on close: nbdkit with a slow backend
#     (delay-extents=200ms) exits within 10s after nbdinfo --map, at
#     several sizes, 10 times each; and after a client that asked once
#     and left a 1T disk mostly unscanned.
#  E. A failing backend under prefetch (error-extents-rate=50% while
#     the error file exists): a client asking only what it already has
#     never sees an error, the server survives, and once the errors
#     stop the whole disk is answered exactly.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires nbdinfo
requires_nbdkit_plugin sparse-random
requires_nbdkit_plugin memory
requires_nbdkit_filter log
requires_nbdkit_filter delay
requires_nbdkit_filter error

M=$((1 << 20))

cat >> "$tmp/cetest.py" <<'EOF'


def truth():
    return conn(sock=os.environ["truth"])


def settle(quiet=1.0, limit=60):
    """Wait until the log shows no new backend call for 'quiet'
    seconds; return the number of calls."""
    end = time.time() + limit
    n, since = calls(), time.time()
    while time.time() < end:
        time.sleep(0.1)
        m = calls()
        if m != n:
            n, since = m, time.time()
        elif time.time() - since >= quiet:
            return n
    fail("backend calls did not stop within %ds" % limit)


def clipped(ext, lo, hi):
    out = []
    for (o, l, f) in ext:
        a, b = max(o, lo), min(o + l, hi)
        if a >= b:
            continue
        if out and out[-1][2] == f and out[-1][0] + out[-1][1] == a:
            out[-1] = (out[-1][0], b - out[-1][0], f)
        else:
            out.append((a, b - a, f))
    return out


def exact(h, t, off, count, req_one=False):
    """h's answer at off equals the truth t's; returns the answer."""
    got = bs(h, off, count, req_one)
    end = min(off + count, got[-1][0] + got[-1][1])
    want = walk(t, off, end)
    if clipped(got, off, end) != want:
        fail("answer at %#x+%#x: %s, truth: %s"
             % (off, count, fmt(clipped(got, off, end)), fmt(want)))
    return got


def same_map(what, a, b):
    if a != b:
        i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]),
                 min(len(a), len(b)))
        fail("%s: differ at extent %d: %s vs %s"
             % (what, i, fmt(a[i:i + 3]), fmt(b[i:i + 3])))
    print("ok: %s (%d extents)" % (what, len(a)), flush=True)
EOF

# with_truth DISK-PARAMS -- FRONT-PARAMS -- SCRIPT: a truth server
# serving DISK-PARAMS and the filter in front of the same disk.
with_truth ()
{
  local disk=() filters=() params=()
  while [ "$1" != -- ]; do disk+=("$1"); shift; done
  shift
  while [ "$1" != -- ]; do
    case $1 in
      --filter=*) filters+=("$1") ;;
      *) params+=("$1") ;;
    esac
    shift
  done
  shift
  rm -f "$log" "$tmp/truth.sock"
  truth=$tmp/truth.sock
  export truth
  timeout 200 nbdkit -U "$truth" "${disk[@]}" --run "
    timeout 180 nbdkit -U - --filter='$FILTER' --filter=log ${filters[*]} \
      ${disk[*]} ${params[*]} logfile='$log' --run '$py $tmp/$1'"
}

# A.
cat > "$tmp/a.py" <<'PY'
from cetest import *
M = 1 << 20
h, t = conn(), truth()
exact(h, t, 0, 512)
exact(h, t, 8 * M, 512)
time.sleep(0.5)
n = settle()
check(n > 2, "after two requests and a pause prefetch made more calls "
      "(%d in all)" % n)
before = len(backend_log())
m = walk(h, 0, 128 * M)
# The walk moves the horizon on, so prefetch goes on past 128M; but
# nothing below 128M is asked for again.
eq("backend calls below 128M during a walk of the first 128M", [],
   [c for c in backend_log()[before:] if c[1] < 128 * M])
same_map("the walk equals the truth", walk(t, 0, 128 * M), m)
same_map("the whole disk equals the truth", walk(t), walk(h))
PY
echo "== A: filling ahead"
with_truth sparse-random size=256M seed=7 percent=50 runlength=65536 -- \
  cacheextents-window=8M --filter=delay delay-extents=20ms -- a.py

# B.
cat > "$tmp/b.py" <<'PY'
from cetest import *
M = 1 << 20
G = 1 << 30
h, t = conn(), truth()
exact(h, t, 0, 512)
time.sleep(0.3)
far = 3 * G + 12345
t0 = time.time()
exact(h, t, far, 512)
check(time.time() - t0 < 5, "the jump was answered in %.2fs"
      % (time.time() - t0))
time.sleep(2)
pos = far
while pos < far + 64 * M:
    got = exact(h, t, pos, M)
    pos = min(pos + M, got[-1][0] + got[-1][1])
PY
echo "== B: a client jumping ahead"
rm -f "$tmp/b.stats"
with_truth sparse-random size=4G seed=8 percent=50 runlength=262144 -- \
  cacheextents-window=16M cacheextents-prefetch-threads=2 \
  cacheextents-statsfile="$tmp/b.stats" \
  --filter=delay delay-extents=200ms -- b.py
cat "$tmp/b.stats"
assert_eq "client misses (the first request and the jump; none in the walk)" \
  2 "$(stats_value misses "$tmp/b.stats")"

# C.
cat > "$tmp/c.py" <<'PY'
import random, threading
from cetest import *
PG = 32768
r = random.Random(int(os.environ["seed"]))
a, b = conn(), conn()
size = a.get_size()
model = [HOLE | ZERO] * (size // PG)


def expect(lo, hi):
    out = []
    for p in range(lo // PG, (hi + PG - 1) // PG):
        x, y = max(lo, p * PG), min(hi, (p + 1) * PG)
        if out and out[-1][2] == model[p]:
            out[-1] = (out[-1][0], y - out[-1][0], model[p])
        else:
            out.append((x, y - x, model[p]))
    return out


bs(a, 0, 512)                           # starts the scan
n_writes = 0
t_end = time.time() + 4
while time.time() < t_end:
    p = r.randrange(len(model))
    k = min(len(model) - p, r.randrange(1, 4))
    if r.random() < 0.6:
        a.pwrite(bytes([r.randrange(1, 256)]) * (k * PG), p * PG)
        new = 0
    else:
        a.trim(k * PG, p * PG)
        new = HOLE | ZERO
    for i in range(p, p + k):
        model[i] = new
    n_writes += 1
    lo, hi = max(0, (p - 1) * PG), min(size, (p + k + 1) * PG)
    same_map("after write %d, B's map around it" % n_writes,
             expect(lo, hi), walk(b, lo, hi))
settle()
for name, h in (("A", a), ("B", b), ("new C", conn())):
    same_map("after the scan, %s's map of the disk" % name,
             expect(0, size), walk(h))
PY
echo "== C: writes during a scan"
rm -f "$log"
seed=${STRESS_SEED:-$RANDOM}
echo "seed $seed"
export seed
if ! timeout 120 nbdkit -U - --filter="$FILTER" --filter=log --filter=delay \
     memory 64M cacheextents-window=1M cacheextents-prefetch-threads=2 \
     delay-extents=50ms logfile="$log" --run "$py $tmp/c.py" > "$tmp/c.out"
then
  tail -n 20 "$tmp/c.out"
  exit 1
fi
echo "ok: $(grep -c '^ok: after write' "$tmp/c.out") writes, each seen at once"
grep -v '^ok: after write' "$tmp/c.out"

# D.
echo "== D: the workers stop on close"
worst=0
# A hang, not a speed: under a sanitizer (tests/sanitizers/) nbdkit's
# own start and exit are slow on a busy host.
limit_ms=10000 tmo=20
runs=10
if [ -n "${CE_SAN_MODE:-}" ]; then limit_ms=40000 tmo=60 runs=3; fi
for size in 1M $((4 << 30 | 512)) 16G; do
  for i in $(seq $runs); do
    t0=$(date +%s%N)
    # (The delay filter complains when shutdown cuts a sleep short.)
    timeout $tmo nbdkit -U - --filter="$FILTER" --filter=delay memory "$size" \
      delay-extents=200ms --run 'nbdinfo --map "$uri" >/dev/null' \
      2> "$tmp/d.err" || { cat "$tmp/d.err"; exit 1; }
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ "$ms" -gt "$worst" ] && worst=$ms
    if [ "$ms" -gt "$limit_ms" ]; then
      echo "FAIL: size $size run $i took ${ms}ms"
      exit 1
    fi
  done
  echo "ok: size $size: $runs runs, each under $((limit_ms / 1000))s"
done
cat > "$tmp/d.py" <<'PY'
from cetest import *
bs(conn(), 0, 512)
PY
for i in $(seq $runs); do
  t0=$(date +%s%N)
  timeout $tmo nbdkit -U - --filter="$FILTER" --filter=delay memory 1T \
    cacheextents-window=1G delay-extents=200ms --run "$py $tmp/d.py" \
    2> "$tmp/d.err" || { cat "$tmp/d.err"; exit 1; }
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$ms" -gt "$worst" ] && worst=$ms
  if [ "$ms" -gt "$limit_ms" ]; then
    echo "FAIL: 1T disk left mid-scan: run $i took ${ms}ms"
    exit 1
  fi
done
echo "ok: 1T disk left mid-scan: $runs runs, each under $((limit_ms / 1000))s (slowest of" \
     "all: ${worst}ms)"

# E.
cat > "$tmp/e.py" <<'PY'
import random
from cetest import *
M = 1 << 20
inject = os.environ["inject"]
h, t = conn(), truth()
exact(h, t, 0, 512)                     # [0, 16M) is now known
open(inject, "w").close()               # backend calls fail half the time
r = random.Random(5)
n = 0
t_end = time.time() + 3
while time.time() < t_end:
    off = r.randrange(16 * M - 4096)
    exact(h, t, off, r.randrange(1, 16 * M - off), r.random() < 0.3)
    n += 1
print("ok: %d requests of known ranges while the backend fails" % n)
failed = sum(1 for line in open(LOG) if "Extents" in line and
             "return=-1" in line)
check(failed > 0, "prefetch calls failed meanwhile (%d)" % failed)
os.unlink(inject)
settle()
same_map("once the errors stop, the whole disk", walk(t), walk(h))
PY
echo "== E: a failing backend under prefetch"
inject=$tmp/inject
export inject
with_truth sparse-random size=1G seed=9 percent=50 runlength=262144 -- \
  cacheextents-window=16M cacheextents-prefetch-threads=2 \
  --filter=error --filter=delay error-extents-rate=50% \
  error-extents-file="$inject" delay-extents=20ms -- e.py > "$tmp/e.out" 2>&1 ||
  { grep -v 'injecting EIO error into extents' "$tmp/e.out"; exit 1; }
grep -v 'injecting EIO error into extents' "$tmp/e.out"
