#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The summary line logged when a connection closes shows what that
# connection caused: its writes count as its invalidations, and the
# counters kept only process-wide (prefetch calls, backend errors,
# evictions) are left out of it; the total line at exit has them all.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin memory

# One connection writes (pwrite, zero, trim: 3 writes) and asks
# nothing; then another asks block status twice and writes nothing.
# nbdkit may exit (when --run's command ends) before it has closed a
# connection, so the script waits for each connection's line.
cat > "$tmp/t.py" <<'PY'
from cetest import *
STDERR = os.environ["tmp"] + "/stderr"

def closed(n):
    """Wait until nbdkit has logged n connection summary lines."""
    for _ in range(200):
        with open(STDERR) as f:
            if f.read().count("cacheextents: connection") >= n:
                return
        time.sleep(0.05)
    fail("no summary line for connection %d" % n)

w = conn()
w.pwrite(b"\x01" * 4096, 0)
w.zero(4096, 65536)
w.trim(4096, 131072)
w.shutdown()
closed(1)
r = conn()
bs(r, 0, 1 << 20)
bs(r, 0, 1 << 20)
r.shutdown()
closed(2)
PY

timeout 60 nbdkit -U - -v --filter="$FILTER" memory 1M $CE_OPTS \
  --run "$py $tmp/t.py" 2>"$tmp/stderr" || {
  tail -n 30 "$tmp/stderr"; exit 1; }

grep 'cacheextents: .*\(connection\|total\)' "$tmp/stderr" |
  sed 's/^.*cacheextents: /cacheextents: /' > "$tmp/lines"
cat "$tmp/lines"
conn_lines=$(grep -v total "$tmp/lines" || :)
total_line=$(grep total "$tmp/lines" || :)
assert_eq "connection summary lines" 2 "$(echo "$conn_lines" | grep -c . || :)"

# field LINE KEY: the value of KEY=N in LINE, or 'absent'.
field ()
{
  local v
  v=$(echo "$1" | tr ' ' '\n' | sed -n "s/^$2=\([0-9]*\)$/\1/p")
  echo "${v:-absent}"
}

writer=$(echo "$conn_lines" | sed -n 1p)
reader=$(echo "$conn_lines" | sed -n 2p)
assert_eq "writer's invalidations" 3 "$(field "$writer" invalidations)"
assert_eq "writer's requests" 0 "$(field "$writer" requests)"
assert_eq "reader's invalidations" 0 "$(field "$reader" invalidations)"
assert_eq "reader's requests" 2 "$(field "$reader" requests)"
for k in prefetch-calls failed-calls evictions; do
  assert_eq "$k in a connection's line" absent "$(field "$writer" $k)"
done
assert_eq "total invalidations" 3 "$(field "$total_line" invalidations)"
for k in requests prefetch-calls failed-calls evictions; do
  if [ "$(field "$total_line" $k)" = absent ]; then
    echo "FAIL: the total line lacks $k"; exit 1
  fi
done
case $total_line in
  *process-wide*) echo "ok: the total line says it is process-wide" ;;
  *) echo "FAIL: the total line does not say it is process-wide"; exit 1 ;;
esac
