#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# After a write (pwrite, trim, zero) has returned, no block status on
# any connection may show the state from before it, even when another
# connection asked about the range while the write was in flight.
#
# The delay filter below the cache makes each write slow.  Connection
# A writes; meanwhile connection B repeatedly asks block status of the
# range (the backend still reports the old state then, which a cache
# must not keep past the write); after A's write returns, B and a new
# connection C must see the new state.
#
# Part 2 turns it round: a backend call that read the old state before
# a write and replies only after the write returned.  Its answer may go
# to the request that made it, but must not be stored, nor served to a
# request that arrived after the write returned (one that waited for
# that call, say).  The sh plugin below reads its state, then sleeps.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin memory
requires_nbdkit_filter delay
requires_nbdkit_filter log

cat > "$tmp/t.py" <<'PY'
import threading, time
from cetest import *

M = 1 << 20
K = 1 << 10
a = conn()
b = conn()

def race(what, off, length, write, want):
    before = flags_at(b, off, length)       # B's cache holds the old state
    print("%s: before the write B sees flags %d at %#x" % (what, before, off))
    check(before != want, "%s: the write changes the state" % what)
    errors = []
    def run():
        try:
            write()
        except Exception as e:
            errors.append(e)
    t = threading.Thread(target=run)
    start = time.time()
    t.start()
    during = []
    while t.is_alive():
        time.sleep(0.2)
        during.append(bs(b, off, length))
        during.append(bs(b, off, length, req_one=True))
    t.join()
    took = time.time() - start
    check(not errors, "%s: the write succeeded %r" % (what, errors))
    check(took >= 1.0, "%s: the write was slow (%.1fs)" % (what, took))
    print("%s: B asked %d times during the write" % (what, len(during)))
    check(len(during) >= 2, "%s: B asked during the write" % what)
    # After the write returned: B, A and a new connection C.
    c = conn()
    for name, h in (("B", b), ("A", a), ("C", c)):
        got = bs(h, off, length)
        eq("%s: %s's block status of [%#x, +%#x) after the write"
           % (what, name, off, length), [(off, length, want)],
           [(o, min(l, off + length - o), f) for (o, l, f) in got
            if o < off + length])
        eq("%s: %s's REQ_ONE flags at %#x" % (what, name, off + length // 2),
           want, flags_at(h, off + length // 2))
    c.shutdown()

# pwrite of real data into a hole.
race("pwrite", 1 * M, 64 * K, lambda: a.pwrite(b"\xab" * (64 * K), 1 * M), 0)

# trim of data: data first (not slow enough to matter: delay is 1.5s)
a.pwrite(b"\xcd" * (64 * K), 3 * M)
race("trim", 3 * M, 64 * K, lambda: a.trim(64 * K, 3 * M), HOLE | ZERO)

# zero over data
a.pwrite(b"\xef" * (64 * K), 5 * M)
race("zero", 5 * M, 64 * K, lambda: a.zero(64 * K, 5 * M), HOLE | ZERO)
PY

timeout 120 nbdkit -U - --filter="$FILTER" --filter=delay --filter=log \
  memory 8M $CE_OPTS delay-write=1500ms delay-trim=1500ms delay-zero=1500ms \
  logfile="$log" --run "$py $tmp/t.py"

if ! nbdkit sh --version >/dev/null 2>&1; then
  echo "note: no sh plugin: part 2 skipped"
  exit 0
fi

# 8M, a hole except [1M, 1M+64K) once anything was written.  Extents
# are read first and sent 1.5s later while the file 'slow' exists
# ('has-read' says the state has been read).
cat > "$tmp/slow-extents.sh" <<'SH'
#!/bin/sh
dir=$(dirname "$0")
case "$1" in
  get_size) echo 8M ;;
  thread_model) echo parallel ;;
  can_write|can_extents|can_multi_conn) exit 0 ;;
  can_trim|can_zero|can_flush) exit 3 ;;
  can_fua|can_cache) echo none ;;
  pread) head -c "$3" /dev/zero ;;
  pwrite) cat >/dev/null; touch "$dir/written" ;;
  extents)
    if [ -e "$dir/written" ]; then t=; else t=hole,zero; fi
    if [ -e "$dir/slow" ]; then touch "$dir/has-read"; sleep 1.5; fi
    echo "0 1M hole,zero"
    echo "1M 64K $t"
    echo "1114112 7274496 hole,zero" ;;
  *) exit 2 ;;
esac
SH
chmod +x "$tmp/slow-extents.sh"

cat > "$tmp/t2.py" <<'PY'
import os, threading, time
from cetest import *

M = 1 << 20
K = 1 << 10
slow = os.path.join(os.environ["tmp"], "slow")
a, b, c = conn(), conn(), conn()
open(slow, "w").close()
got = {}
t = threading.Thread(target=lambda: got.setdefault("b", bs(b, M, 64 * K)))
t.start()
# Wait until B's call has read the old state.
has_read = os.path.join(os.environ["tmp"], "has-read")
for i in range(100):
    if os.path.exists(has_read):
        break
    time.sleep(0.05)
check(os.path.exists(has_read) and t.is_alive(),
      "B's backend call has read the state and not replied yet")
a.pwrite(b"\x11" * 512, M)
print("the write returned while B's call is in flight", flush=True)
time.sleep(0.2)
eq("C's flags at 1M, asked after the write returned", 0, flags_at(c, M))
t.join()
# The premise: B's own answer was the old state.
eq("B's answer (old state, from a call that began before the write)",
   HOLE | ZERO, got["b"][0][2])
os.unlink(slow)
for name, h in (("B", b), ("A", a), ("new D", conn())):
    eq("%s's flags at 1M afterwards" % name, 0, flags_at(h, M))
PY

rm -f "$log"
timeout 60 nbdkit -U - --filter="$FILTER" --filter=log sh "$tmp/slow-extents.sh" \
  $CE_OPTS logfile="$log" --run "$py $tmp/t2.py"
