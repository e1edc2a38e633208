#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# A representative workload for the sanitizer and valgrind runs: every
# part of the filter in a few seconds, with prefetch ON (the shell
# tests turn it off to count backend calls).
#
#   1. file dir= with three exports of different layouts, a small
#      window and a tiny max-size (evictions, the prefetch throttle),
#      4 prefetch workers: walks, REQ_ONE queries, and writes, trims
#      and zeroes from several threads while others ask block status;
#      connections come and go, so prefetch stops and restarts under
#      another owner.  In the end the map through the filter must equal
#      the map of the files without it.
#   2. qemu-img map and nbdinfo --map through the filter (data plugin),
#      compared with the same without it.
#   3. The error filter failing 30% of block status calls below the
#      cache, with the delay filter: client errors, prefetch back-off,
#      single-flight waits; debug flags and the stats file on.
#   4. Every scope mode on the memory plugin, with writes via nbdsh.
#
# It checks results only where they are exact; its main job is to run
# the code while the sanitizer watches.
. "$(dirname "$0")/../functions.sh"
requires qemu-img nbdinfo truncate dd cmp
requires_python_nbd
requires_nbdkit_plugin file
requires_nbdkit_plugin data
requires_nbdkit_plugin memory
requires_nbdkit_filter error
requires_nbdkit_filter delay

# Whatever functions.sh found, this workload wants prefetch.
PF="cacheextents-prefetch=true cacheextents-prefetch-threads=4"
# Under a valgrind tool (tests/sanitizers/bin/nbdkit) everything in
# nbdkit runs 20-100 times slower, and each thread costs: do a fifth
# of the work, with 4 request threads per connection instead of 16.
case ${CE_SAN_MODE:-} in
  memcheck|helgrind|drd) rounds=8 T="-t 4" ;;
  *) rounds=40 T= ;;
esac
K=1024
M=$((1024 * 1024))

# 1. Three exports.  'frag' has a 4K data block every 16K (many small
# extents); 'sparse' is all hole; 'full' all data.
mkdir "$tmp/dir"
truncate -s 4M "$tmp/dir/frag" "$tmp/dir/sparse"
for ((o = 0; o < 4 * M; o += 16 * K)); do
  printf 'x%.0s' {1..4096} | dd of="$tmp/dir/frag" bs=4096 seek=$((o / 4096)) \
    conv=notrunc status=none
done
head -c 4M /dev/urandom > "$tmp/dir/full"

cat > "$tmp/maps.py" <<'PY'
import json, sys
from cetest import *
EXPORTS = ["frag", "sparse", "full"]
print(json.dumps({e: walk(conn(e)) for e in EXPORTS}))
PY

cat > "$tmp/t1.py" <<'PY'
import json, random, sys, threading
import nbd
from cetest import *

K = 1024
M = 1024 * K
EXPORTS = ["frag", "sparse", "full"]
with open(sys.argv[1]) as f:
    truth = json.load(f)
ROUNDS = int(sys.argv[2])

# Cold walks and REQ_ONE queries of every export, checked exactly.
for e in EXPORTS:
    h = conn(e)
    got = [list(x) for x in walk(h)]
    if got != truth[e]:
        fail("cold walk of %s: expected %r, got %r" % (e, truth[e], got))
    print("ok: cold walk of %s: %d extents" % (e, len(got)))
    for o in range(0, 4 * M, (192 * K + 512) * (40 // ROUNDS)):
        bs(h, o, min(64 * K, 4 * M - o), req_one=True)
    h.shutdown()

errors = []
def worker(seed, writer):
    rnd = random.Random(seed)
    try:
        for i in range(ROUNDS):
            e = rnd.choice(EXPORTS)
            h = conn(e)              # a new connection each time
            for j in range(6):
                o = rnd.randrange(0, 4 * M - 4096) & ~511
                n = rnd.randrange(512, 256 * K) & ~511
                n = min(n, 4 * M - o)
                op = rnd.randrange(10) if writer else 0
                if op < 6:
                    bs(h, o, n, req_one=rnd.random() < 0.3)
                elif op < 8:
                    h.pwrite(bytes([rnd.randrange(1, 256)]) * n, o)
                elif op < 9:
                    h.trim(n & ~4095 or 4096, o & ~4095)
                else:
                    h.zero(n, o)
            h.shutdown()
    except Exception as ex:
        errors.append(repr(ex))

ts = [threading.Thread(target=worker, args=(i, i % 2 == 0)) for i in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
check(not errors, "no errors in the concurrent part %r" % errors[:3])

# The final map, for comparison with the files.
print("FINAL " + json.dumps({e: walk(conn(e)) for e in EXPORTS}))
PY

echo "== 1. file dir=, three exports"
timeout 120 nbdkit -U - file dir="$tmp/dir" \
  --run "$py $tmp/maps.py" > "$tmp/truth.json"
timeout 300 nbdkit $T -U - --filter="$FILTER" file dir="$tmp/dir" $PF \
  cacheextents-window=256K cacheextents-max-size=8K \
  --run "$py $tmp/t1.py $tmp/truth.json $rounds" > "$tmp/out1" || {
  cat "$tmp/out1"; exit 1; }
grep -v '^FINAL ' "$tmp/out1"
grep '^FINAL ' "$tmp/out1" | sed 's/^FINAL //' > "$tmp/final-cached.json"
timeout 120 nbdkit -U - file dir="$tmp/dir" \
  --run "$py $tmp/maps.py" > "$tmp/final-plain.json"
if ! cmp "$tmp/final-plain.json" "$tmp/final-cached.json"; then
  echo "FAIL: after the writes the filter's map differs from the files'"
  exit 1
fi
echo "ok: after the writes the filter's map equals the files'"

echo "== 2. qemu-img map and nbdinfo --map"
disk=(data data="1 @0x100000 2 @0x300000 3 @0x7f0000 4" size=8M)
for tool in 'qemu-img map --output=json "$uri"' 'nbdinfo --map "$uri"'; do
  timeout 120 nbdkit -U - "${disk[@]}" --run "$tool" > "$tmp/plain"
  timeout 120 nbdkit $T -U - --filter="$FILTER" "${disk[@]}" $PF \
    cacheextents-window=64K --run "$tool" > "$tmp/cached"
  if ! cmp "$tmp/plain" "$tmp/cached"; then
    echo "FAIL: $tool differs with the filter"
    diff -u "$tmp/plain" "$tmp/cached" || true
    exit 1
  fi
  echo "ok: $tool is the same with the filter"
done

echo "== 3. backend errors, delays, debug flags, stats file"
cat > "$tmp/t3.py" <<'PY'
import sys, threading
import nbd
from cetest import *
M = 1 << 20
ROUNDS = int(sys.argv[1])
results = {"ok": 0, "err": 0}
lock = threading.Lock()
def worker(k):
    h = conn()
    for i in range(3 * ROUNDS // 4):
        try:
            bs(h, ((i * 7 + k * 3) % 16) * 512 * 1024, 256 * 1024,
               req_one=(i % 3 == 0))
            r = "ok"
        except nbd.Error:
            r = "err"
        with lock:
            results[r] += 1
        if i % 10 == 5:
            h.pwrite(b"\x05" * 4096, (k * 1024 + i) * 4096 % (8 * M))
ts = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("block status results:", results)
check(results["ok"] > 0, "some block status succeeded")
PY
timeout 300 nbdkit $T -U - -D cacheextents.cache=1 -D cacheextents.prefetch=1 \
  --filter="$FILTER" --filter=delay --filter=error memory 8M $PF \
  cacheextents-window=128K cacheextents-statsfile="$tmp/stats" \
  delay-extents=5ms error=EIO error-extents-rate=30% \
  --run "$py $tmp/t3.py $rounds" 2>"$tmp/stderr3" || {
  tail -n 30 "$tmp/stderr3"; exit 1; }
echo "stats: $(cat "$tmp/stats")"
grep -q 'failed-calls=[1-9]' "$tmp/stats" || {
  echo "FAIL: no backend error was seen"; exit 1; }

echo "== 4. scopes, writes via nbdsh"
for scope in auto export connection; do
  timeout 120 nbdkit $T -U - --filter="$FILTER" memory 16M $PF \
    cacheextents-scope="$scope" cacheextents-window=1M \
    --run '
      export uri
      for i in 1 2 3; do
        nbdinfo --map "$uri" >/dev/null &
      done
      "$PYTHON" -m nbd -u "$uri" -c "
h.pwrite(b\"x\" * 65536, 3 << 20)
h.trim(1 << 20, 8 << 20)
h.zero(4096, 12 << 20)
" &
      wait
      nbdinfo --map "$uri"
    ' > "$tmp/map4"
  echo "scope=$scope:"; cat "$tmp/map4"
  grep -q '^ *3145728 *65536 *0 *data' "$tmp/map4" || {
    echo "FAIL: scope=$scope: the write at 3M is not in the map"; exit 1; }
done
echo "scenario done"
