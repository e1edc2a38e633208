#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Many connections writing, trimming, zeroing and asking block status
# at once, with background prefetch on (when the filter has it) and a
# small window.  Each thread owns a region and keeps a model of it;
# whenever one of its writes has returned, block status of the range,
# on its own connection and on a connection shared by all threads,
# must match the model.  Writes are slowed a little below the cache so
# that block status often runs while a write is in flight.  The
# operations come from a fixed seed (CACHEEXTENTS_SEED overrides it);
# their interleaving is up to the scheduler.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin memory
requires_nbdkit_filter delay

opts=
if filter_has_param cacheextents-window; then
  opts=cacheextents-window=256K
fi
if filter_has_param cacheextents-prefetch; then
  opts="$opts cacheextents-prefetch=true cacheextents-prefetch-threads=4"
fi

cat > "$tmp/t.py" <<'PY'
import os, random, sys, threading, time
from cetest import *

K = 1 << 10
M = 1 << 20
PAGE = 32 * K                    # the memory plugin's granularity
THREADS = 6
REGION = 4 * M
OPS = 400
seed = int(os.environ.get("CACHEEXTENTS_SEED", "20240601"))
print("seed", seed, flush=True)

shared = conn()
lock = threading.Lock()          # libnbd handles are thread-safe; this
                                 # only keeps the printed output tidy
errors = []

def expect(model, first, n):
    """The map the model predicts for pages [first, first+n)."""
    out = []
    for p in range(first, first + n):
        f = 0 if model[p] else HOLE | ZERO
        if out and out[-1][2] == f:
            out[-1] = (out[-1][0], out[-1][1] + PAGE, f)
        else:
            out.append((p * PAGE, PAGE, f))
    return out

def worker(i):
    rng = random.Random(seed * 100 + i)
    h = conn()
    base = i * REGION
    npages = REGION // PAGE
    model = [False] * npages          # True: data
    for op in range(OPS):
        first = rng.randrange(npages - 3)
        n = rng.randrange(1, 4)
        off = base + first * PAGE
        kind = rng.choice(["write", "write", "trim", "zero"])
        if kind == "write":
            h.pwrite(b"\x5a" * (n * PAGE), off)
        elif kind == "trim":
            h.trim(n * PAGE, off)
        else:
            h.zero(n * PAGE, off)
        for p in range(first, first + n):
            model[p] = kind == "write"
        # Look somewhere else too, maybe where another thread's write
        # is in flight: any answer is fine, but must not be kept stale.
        o = rng.randrange(0, THREADS * REGION - M, 512)
        bs(h if rng.random() < 0.5 else shared, o, M)
        # The write has returned: every connection sees it.
        lo = max(first - 1, 0)
        hi = min(first + n + 1, npages)
        want = [(base + o, l, f) for (o, l, f) in expect(model, lo, hi - lo)]
        for name, hh in (("own", h), ("shared", shared)):
            got = walk(hh, base + lo * PAGE, base + hi * PAGE,
                       req_one=rng.random() < 0.5)
            if got != want:
                errors.append("thread %d op %d (%s %#x+%#x), %s connection:"
                              " expected %s, got %s"
                              % (i, op, kind, off, n * PAGE, name,
                                 fmt(want), fmt(got)))
                return
    got = walk(h, base, base + REGION)
    want = [(base + o, l, f) for (o, l, f) in expect(model, 0, npages)]
    if got != want:
        errors.append("thread %d, whole region: expected %s, got %s"
                      % (i, fmt(want), fmt(got)))

threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    fail("seed %d: %s" % (seed, "\n".join(errors)))
print("ok: %d threads x %d operations, all block status exact"
      % (THREADS, OPS))
PY

timeout 150 nbdkit -U - --filter="$FILTER" --filter=delay memory 32M \
  $opts delay-write=3ms delay-trim=3ms delay-zero=3ms \
  --run "$py $tmp/t.py"
