#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# cacheextents-statsfile=FILE: at unload the filter writes one summary
# line whose counters match a known sequence of requests; and
# -D cacheextents.cache=1 logs one debug line per hit and per miss.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin data
requires_nbdkit_filter log

# [0,32K) data, [32K,1M) hole, [1M,1M+32K) data, then hole to 2M.
disk=(data data="1 @0x100000 2" size=2M)

cat > "$tmp/t.py" <<'PY'
from cetest import *
M = 1 << 20
K = 1 << 10
h = conn()
# 1 miss (the whole disk is learnt), then 2 hits answering 2M and 32K.
n, a = cost(bs, h, 0, 2 * M)
eq("first query", (1, 4), (n, len(a)))
n, b = cost(bs, h, 0, 2 * M)
eq("second query", (0, a), (n, b))
n, c = cost(bs, h, M, 32 * K, req_one=True)
eq("third query", (0, [(M, 32 * K, 0)]), (n, c))
# A write forgets the extent at 1M: 1 more miss.
h.pwrite(b"\x09" * 512, M)
n, d = cost(bs, h, M, 32 * K, req_one=True)
eq("query after a write", (1, [(M, 32 * K, 0)]), (n, d))
PY

timeout 60 nbdkit -U - -v -D cacheextents.cache=1 \
  --filter="$FILTER" --filter=log "${disk[@]}" $CE_OPTS logfile="$log" \
  cacheextents-statsfile="$tmp/stats" \
  --run "$py $tmp/t.py" 2>"$tmp/stderr" || {
  tail -n 30 "$tmp/stderr"; exit 1; }
assert_eq "backend calls in the log" 2 "$(backend_calls)"

# The debug lines: 2 hits, 2 misses.
grep 'cacheextents: \(hit\|miss\)' "$tmp/stderr" || true
assert_eq "hit debug lines" 2 "$(grep -c 'cacheextents: hit' "$tmp/stderr" || :)"
assert_eq "miss debug lines" 2 "$(grep -c 'cacheextents: miss' "$tmp/stderr" || :)"

# The summary: one line of key=value counters.
echo "stats file:"; cat "$tmp/stats"
assert_eq "lines in the stats file" 1 "$(wc -l < "$tmp/stats")"
# value KEY-REGEX: the value of the one key=value field matching it.
value ()
{
  local v
  v=$(tr ' ' '\n' < "$tmp/stats" | grep -E "^($1)=[0-9]+$" | cut -d= -f2)
  if [ "$(echo "$v" | wc -w)" != 1 ]; then
    echo "FAIL: no single field matching '$1=N' in the stats file"
    exit 1
  fi
  echo "$v"
}
assert_eq hits 2 "$(value hits)"
assert_eq misses 2 "$(value misses)"
assert_eq "backend calls" 2 "$(value 'backend[-_]calls|calls')"
assert_eq "bytes answered from the cache" $((2 * 1048576 + 32768)) \
  "$(value 'bytes[-_a-z]*')"

# Without the debug flag there are no hit/miss lines.
rm -f "$log"
timeout 60 nbdkit -U - -v --filter="$FILTER" --filter=log "${disk[@]}" \
  $CE_OPTS logfile="$log" --run "$py $tmp/t.py" >/dev/null 2>"$tmp/stderr"
assert_eq "hit/miss lines without -D" 0 \
  "$(grep -c 'cacheextents: \(hit\|miss\)' "$tmp/stderr" || :)"
