#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Many exports and connections.
#
# Part 1: `file dir=DIR` serving five sparse files of different sizes
# (some not a multiple of 4K) and contents.  Six threads, each with its
# own connections to every export, pick exports at random: write
# (pwrite, trim, zero of whole 4K pages) or ask block status at random
# offsets (aligned and not, with and without REQ_ONE).  Requests on one
# export are serialised by the test, requests on different exports
# run concurrently.  Every answer must equal that file's truth, read
# with SEEK_DATA/SEEK_HOLE by the test itself at the time: so no export
# is answered from another export's map, and no answer is stale.
#
# Part 2: a backend without multi-conn (the multi-conn filter below the
# cache turns it off), so each connection has a map of its own.
# Connection A writes while B (and C) ask; after each write returns, B
# and C see it; and the maps are private: what B learned costs A a call
# of its own (counted with the log filter below the cache).
if [ -z "${TMPDIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] &&
   [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin file
requires_nbdkit_plugin memory
requires_nbdkit_filter multi-conn
requires_nbdkit_filter log

seed=${STRESS_SEED:-$(( (RANDOM << 15 | RANDOM) ))}
echo "many-exports: seed $seed"
mkdir "$tmp/dir"

cat > "$tmp/exports.py" <<'PY'
import os, random, sys, threading, time
import nbd
from cetest import *

seed, d = int(sys.argv[1]), sys.argv[2]
P = 4096
rng = random.Random(seed)
SIZES = {"a": 1 << 20, "b": (3 << 20) + 1234, "c": 8 << 20,
         "d": 256 * 1024 + 512, "e": 5 << 20}
for name, size in SIZES.items():
    with open(os.path.join(d, name), "wb") as f:
        f.truncate(size)
        for i in range(rng.randrange(5, 40)):
            off = rng.randrange(size) // P * P
            n = min(size - off, P * rng.randrange(1, 16))
            f.seek(off)
            f.write(bytes([ord(name)]) * n)


def truth(name, lo, hi):
    fd = os.open(os.path.join(d, name), os.O_RDONLY)
    try:
        out, pos = [], lo
        while pos < hi:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                data = hi
            if data > pos:
                out.append((pos, min(data, hi) - pos, HOLE | ZERO))
                pos = min(data, hi)
                continue
            hole = os.lseek(fd, pos, os.SEEK_HOLE)
            out.append((pos, min(hole, hi) - pos, 0))
            pos = min(hole, hi)
        return out
    finally:
        os.close(fd)


def clip(ext, lo, hi):
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


locks = {name: threading.Lock() for name in SIZES}
counts = {"bs": 0, "writes": 0}
clock = threading.Lock()
failed = []
deadline = time.time() + float(sys.argv[3])


def worker(tid):
    r = random.Random(seed * 100 + tid)
    hs = {}
    try:
        while time.time() < deadline and not failed:
            name = r.choice(list(SIZES))
            size = SIZES[name]
            if name not in hs:
                hs[name] = conn(name)
                eq("size of export %s" % name, size, hs[name].get_size())
            h = hs[name]
            with locks[name]:
                if r.random() < 0.3:
                    off = r.randrange(size) // P * P
                    n = min(size - off, P * r.randrange(1, 9))
                    k = r.random()
                    if k < 0.5:
                        h.pwrite(bytes([r.randrange(1, 256)]) * n, off)
                    elif k < 0.75:
                        h.trim(n, off)
                    else:
                        h.zero(n, off)
                    with clock:
                        counts["writes"] += 1
                off = r.randrange(size)
                if r.random() < 0.3:
                    off = off // P * P
                count = r.choice((1, 512, P, 65536, 1 << 20, size - off))
                count = max(1, min(count, size - off))
                req_one = r.random() < 0.3
                got = bs(h, off, count, req_one)
                end = min(off + count, got[-1][0] + got[-1][1])
                want = truth(name, off, end)
                if clip(got, off, end) != clip(want, off, end):
                    failed.append(
                        "export %s: block status offset=%#x count=%#x%s:\n"
                        "  filter: %s\n  truth:  %s"
                        % (name, off, count, " REQ_ONE" if req_one else "",
                           fmt(clip(got, off, end)), fmt(want)))
                with clock:
                    counts["bs"] += 1
    except Exception as e:
        failed.append("thread %d: %s: %s" % (tid, type(e).__name__, e))


threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failed:
    fail(failed[0])
print("many-exports: %d block status answers checked, %d writes, "
      "%d exports" % (counts["bs"], counts["writes"], len(SIZES)))
check(counts["bs"] > 500, "enough answers were checked")
PY

timeout 120 nbdkit -U - --filter="$FILTER" file dir="$tmp/dir" \
  --run "$py $tmp/exports.py $seed $tmp/dir ${MANY_EXPORTS_TIME:-12}"

# Part 2.
cat > "$tmp/private.py" <<'PY'
import random, sys, threading
from cetest import *

seed = int(sys.argv[1])
r = random.Random(seed)
PG = 32768                              # the memory plugin's page
SIZE = 8 << 20
NP = SIZE // PG
model = [HOLE | ZERO] * NP              # state of each page

def expect(lo, hi):
    out = []
    for p in range(lo // PG, (hi + PG - 1) // PG):
        a, b = max(lo, p * PG), min(hi, (p + 1) * PG)
        if out and out[-1][2] == model[p] and out[-1][0] + out[-1][1] == a:
            out[-1] = (out[-1][0], b - out[-1][0], model[p])
        else:
            out.append((a, b - a, model[p]))
    return out

def same(h, who, lo, hi):
    got = walk(h, lo, hi)
    want = expect(lo, hi)
    if got != want:
        fail("%s: map of [%#x, %#x):\n  got:  %s\n  want: %s"
             % (who, lo, hi, fmt(got), fmt(want)))

a, b, c = conn(), conn(), conn()
# The maps are private: B's walk does not help A or C.
n, _ = cost(walk, b)
check(n >= 1, "B's first walk asks the backend (%d calls)" % n)
n, _ = cost(walk, b)
eq("backend calls for B's second walk", 0, n)
n, _ = cost(walk, a)
check(n >= 1, "A's first walk asks the backend too (%d calls): "
      "B's map was not shared" % n)

def write_some():
    p = r.randrange(NP)
    k = min(NP - p, r.randrange(1, 5))
    what = r.random()
    if what < 0.5:
        a.pwrite(bytes([r.randrange(1, 256)]) * (k * PG), p * PG)
        new = 0
    elif what < 0.8:
        a.trim(k * PG, p * PG)
        new = HOLE | ZERO
    else:
        a.zero(k * PG, p * PG)
        new = HOLE | ZERO
    for i in range(p, p + k):
        model[i] = new
    return p * PG, (p + k) * PG

checked = 0
for rnd in range(150):
    lo, hi = write_some()
    # Just written: every connection sees it, around it and inside it.
    for who, h in (("B", b), ("C", c), ("A", a)):
        same(h, who, max(0, lo - PG), min(SIZE, hi + PG))
        off = r.randrange(SIZE)
        same(h, who, off, min(SIZE, off + r.randrange(1, 1 << 20)))
        checked += 2

# B asks in a loop while A writes; afterwards nobody is stale.
stop = []
def asker():
    while not stop:
        walk(b, 0, SIZE)
t = threading.Thread(target=asker)
t.start()
for rnd in range(60):
    write_some()
stop.append(1)
t.join()
for who, h in (("B", b), ("C", c), ("A", a), ("new D", conn())):
    same(h, who, 0, SIZE)
    checked += 1
print("private maps: %d maps compared" % checked)
PY

timeout 120 nbdkit -U - --filter="$FILTER" --filter=log \
  --filter=multi-conn memory 8M multi-conn-mode=disable logfile="$log" \
  $CE_OPTS --run "$py $tmp/private.py $seed"
echo "ok: private maps with a backend without multi-conn"
