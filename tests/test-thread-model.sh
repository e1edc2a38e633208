#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Prefetch under stacks that are not parallel.  The log filter just
# below the cache sees every call the filter makes, one "connection"
# per context; no context may ever have two calls at once where the
# layers below forbid it, and prefetch must still run:
#   1. CDI's order (retry above the cache, so the server is
#      serialize_requests): a REQ_ONE walk with reads of the data
#      extents; no overlapping calls on a context, prefetch calls made,
#      the map exact, no line saying "error", with or without -v;
#   2. noparallel serialize=requests below the cache, nbdcopy's four
#      connections: no overlaps, prefetch calls made; on nbdkit
#      >= 1.43.9 prefetch has contexts of its own (more contexts than
#      client connections in the log);
#   3. serialize=requests below a writable export: block status,
#      writes, reads and flushes interleaved, no overlaps, and the map
#      right after each write;
#   4. serialize=connections below: no overlaps, prefetch calls made,
#      and no context of prefetch's own (one context in the log).
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires nbdcopy qemu-img
requires_nbdkit_plugin sparse-random
requires_nbdkit_plugin memory
requires_nbdkit_filter log
requires_nbdkit_filter delay
requires_nbdkit_filter noparallel
requires_nbdkit_filter retry

disk='sparse-random 16G seed=7 percent=5 runlength=2097152'

# The truth: the map of the disk without any cache, as the CDI-like
# client (tests/cdi-client.py) sees it.
cdi=("$PYTHON" "$top/tests/cdi-client.py" --read head)
timeout 60 nbdkit -U - -r $disk \
  --run "${cdi[*]} --map-out $tmp/truth.json \"\$uri\"" >/dev/null

# check_run WHAT: the assertions every scenario shares.
check_run ()
{
  local what=$1 n p
  n=$(overlaps "$log")
  assert_eq "$what: calls beside another call of their context" 0 "$n"
  p=$(stats_value prefetch-calls "$tmp/stats")
  echo "$what: $(backend_calls) backend calls, $p by prefetch," \
       "$(contexts "$log") contexts"
  [ "$p" -ge 1 ] || { echo "FAIL: $what: prefetch made no call"; exit 1; }
}

echo "== 1. CDI's order: retry above the cache"
for v in "" -v; do
  rm -f "$log" "$tmp/stats"
  timeout 90 nbdkit $v -U - -r --filter=retry --filter="$FILTER" \
    --filter=log --filter=delay $disk delay-extents=50ms logfile="$log" \
    cacheextents-statsfile="$tmp/stats" \
    --run "${cdi[*]} --truth $tmp/truth.json \"\$uri\"" >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; exit 1; }
  grep '^cdi-client: the map is exactly' "$tmp/out"
  check_run "CDI's order${v:+ ($v)}"
  if grep -i error "$tmp/out"; then
    echo "FAIL: a line says error"; exit 1
  fi
  echo "ok: no line says error${v:+ ($v)}"
done

echo "== 2. serialize=requests below the cache, nbdcopy"
rm -f "$log" "$tmp/stats"
timeout 90 nbdkit -U - -r --filter="$FILTER" --filter=log \
  --filter=noparallel --filter=delay $disk serialize=requests \
  delay-extents=50ms logfile="$log" cacheextents-statsfile="$tmp/stats" \
  --run 'nbdcopy "$uri" null:'
check_run "serialize=requests"
if nbdkit_at_least 1.43.9; then
  [ "$(contexts "$log")" -gt 4 ] ||
    { echo "FAIL: prefetch used no context of its own"; exit 1; }
  echo "ok: prefetch has contexts of its own"
fi

echo "== 3. serialize=requests below a writable export"
cat > "$tmp/rw.py" <<'PY'
from cetest import *
M = 1 << 20
h = conn()
size = h.get_size()
for i in range(16):
    off = (i * 37 % 64) * M
    bs(h, 0, size)
    h.pwrite(b"x" * 4096, off)
    eq("data after the write at %#x" % off, 0, flags_at(h, off) & HOLE)
    h.pread(4096, (off + 8 * M) % size)
    if i % 4 == 3:
        h.flush()
    bs(h, (off + 32 * M) % (size - 4 * M), 4 * M, req_one=True)
PY
rm -f "$log" "$tmp/stats"
timeout 90 nbdkit -U - --filter="$FILTER" --filter=log \
  --filter=noparallel --filter=delay memory 64M serialize=requests \
  delay-extents=20ms delay-write=5ms cacheextents-window=4M \
  logfile="$log" cacheextents-statsfile="$tmp/stats" \
  --run "$py $tmp/rw.py"
check_run "serialize=requests, writes"

echo "== 4. serialize=connections below the cache"
rm -f "$log" "$tmp/stats"
timeout 90 nbdkit -U - -r --filter="$FILTER" --filter=log \
  --filter=noparallel --filter=delay $disk serialize=connections \
  delay-extents=50ms logfile="$log" cacheextents-statsfile="$tmp/stats" \
  --run 'qemu-img map --output=json "$uri" >/dev/null'
check_run "serialize=connections"
assert_eq "contexts (none of prefetch's own)" 1 "$(contexts "$log")"
