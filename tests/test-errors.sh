#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Errors from the backend's block status reach the client with their
# errno, and nothing is cached from a failed call: once the errors
# stop, the next query goes to the backend and is exact.  Cached
# answers keep working while the backend fails.
#
# The error filter sits below the cache and the log filter between
# them, so the log counts every call the cache makes.  Errors happen
# exactly while the file $tmp/inject exists.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin data
requires_nbdkit_filter error
requires_nbdkit_filter log

disk=(data data="1 @0x200000 2 @0x500000 3" size=8M)

cat > "$tmp/t.py" <<'PY'
import os, sys
import nbd
from cetest import *

M = 1 << 20
K = 1 << 10
want_errno = sys.argv[1]
inject = os.path.join(os.environ["tmp"], "inject")
TRUTH = [(0, 32 * K, 0), (32 * K, 2 * M - 32 * K, HOLE | ZERO),
         (2 * M, 32 * K, 0), (2 * M + 32 * K, 3 * M - 32 * K, HOLE | ZERO),
         (5 * M, 32 * K, 0), (5 * M + 32 * K, 3 * M - 32 * K, HOLE | ZERO)]

def failing(what, h, off, count, req_one=False):
    n0 = calls()
    try:
        r = bs(h, off, count, req_one)
    except nbd.Error as e:
        eq("%s: errno" % what, want_errno, e.errno)
        # The error came from the backend, not from a cached failure.
        eq("%s: backend calls" % what, 1, calls() - n0)
        return
    fail("%s: block status succeeded while the backend fails: %s"
         % (what, fmt(r)))

h = conn()
open(inject, "w").close()
failing("cold, whole disk", h, 0, 8 * M)
failing("cold again", h, 0, 8 * M)
failing("cold, REQ_ONE", h, 2 * M, 512, req_one=True)
# The connection still works after errors.
h.pread(512, 0)
os.unlink(inject)

# The errors cached nothing: the first query asks the backend.
n, m = cost(walk, h)
check(n >= 1, "after the errors stop the backend is asked (%d calls)" % n)
eq("map after the errors", fmt(TRUTH), fmt(m))
n, m = cost(walk, conn())
eq("backend calls for the same map again", 0, n)
eq("cached map", fmt(TRUTH), fmt(m))

# A write at 5M forgets that extent only; while the backend fails,
# cached ranges are still answered and the forgotten one fails.
h.pwrite(b"\x07" * 512, 5 * M + 4096)
open(inject, "w").close()
n, f = cost(flags_at, h, 2 * M)
eq("cached flags at 2M while failing", 0, f)
eq("backend calls for them", 0, n)
failing("written range while failing", h, 5 * M, 64 * K)
failing("written range while failing, REQ_ONE", h, 5 * M + 4096, 512,
        req_one=True)
os.unlink(inject)
n, f = cost(flags_at, h, 5 * M)
eq("flags at 5M after the errors stop", 0, f)
eq("backend calls for them", 1, n)
eq("map in the end", fmt(TRUTH), fmt(walk(conn())))
PY

for e in EIO EPERM; do
  echo "== error=$e"
  rm -f "$log"
  timeout 60 nbdkit -U - --filter="$FILTER" --filter=log --filter=error \
    "${disk[@]}" $CE_OPTS logfile="$log" \
    error="$e" error-extents-rate=100% error-extents-file="$tmp/inject" \
    --run "$py $tmp/t.py $e" 2>"$tmp/stderr" || {
    cat "$tmp/stderr"; exit 1; }
done
