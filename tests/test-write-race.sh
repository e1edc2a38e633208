#!/usr/bin/env bash
# After a write (pwrite, trim, zero) has returned, no block status on
# any connection may show the state from before it, even when another
# connection asked about the range while the write was in flight.
#
# The delay filter below the cache makes each write slow.  Connection
# A writes; meanwhile connection B repeatedly asks block status of the
# range (the backend still reports the old state then, which a cache
# must not keep past the write); after A's write returns, B and a new
# connection C must see the new state.
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
    check(len(during) >= 4, "%s: B asked during the write" % what)
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
