#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# What prefetch may cost, counted below the filter with the log filter:
#   1. idle: after one block status of `memory 1E` the client idles;
#      the backend calls after 1.5 s and after 4 s are the same (and a
#      handful): prefetch stops when the clients stop asking;
#   2. many connections: 100 connections with private maps (multi-conn
#      hidden), one block status each, cost at most 3 backend calls per
#      connection, and nbdkit has at most 64 more threads than without
#      the filter (one pool of 16 workers whatever the connections; the
#      old design had 8 per connection: 800 more);
#   3. a slow write (2 s) in flight while a client walks the disk with
#      a 1M window: calls during the write stay within the walk's own
#      (64 windows + a few), no fetching again and again of what rule S
#      would throw away;
#   4. nbdcopy and qemu-img convert from one export of `file dir=` to
#      another: at most twice the calls without the filter, plus 20;
#   5. shutdown while prefetch is in the middle of a slow call (delay
#      filter, 8 s per extents call): nbdkit exits within 6 s of the
#      client leaving (the delay filter's sleep ends when the
#      connection closes, and nothing waits for more than that);
#   6. a stack that serializes all requests: prefetch is off and
#      nbdkit says so once, without -v, in a line without "error";
#   7. a request far out, then one at 0: the jump back costs a call or
#      two, not a scan up to the first request; and prefetch follows
#      it: a walk from 0 in steps of 2G then misses at most twice,
#      even when the jump back is shorter than the horizon (64 GiB);
#   8. one full pass over a sparse 16G disk (4G window, 20 ms per
#      extents call) costs at most ceil(16G / 4G) + 1 calls per client
#      connection: qemu-img map and nbdinfo --map 5, nbdcopy (4
#      connections) 8.  The fast start must not add a call.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/copy-exports.sh"
requires_python_nbd
requires nbdcopy qemu-img nbdinfo
requires_nbdkit_plugin memory
requires_nbdkit_plugin sparse-random
requires_nbdkit_plugin file
requires_nbdkit_filter log
requires_nbdkit_filter delay
requires_nbdkit_filter multi-conn
[ -r /proc/self/status ] || { echo "$0: test skipped: no /proc"; exit 77; }
if ! filter_has_param cacheextents-prefetch; then
  echo "$0: test skipped: the filter has no prefetch"
  exit 77
fi

echo "== 1. idle client"
cat > "$tmp/idle.py" <<'PY'
import time
from cetest import *
h = conn()
bs(h, 0, 65536)
time.sleep(1.5)
a = calls()
time.sleep(2.5)
b = calls()
print("backend calls after 1.5 s: %d, after 4 s: %d" % (a, b))
eq("calls after 4 s", a, b)
check(b <= 4, "a handful of calls (%d <= 4)" % b)
PY
rm -f "$log"
timeout 60 nbdkit -U - --filter="$FILTER" --filter=log memory 1E \
  logfile="$log" --run "$py $tmp/idle.py"

echo "== 2. 100 private connections"
cat > "$tmp/many.py" <<'PY'
import os
from cetest import *
hs = []
for i in range(100):
    h = conn()
    bs(h, i << 30, 65536)
    hs.append(h)
pid = open(os.environ["tmp"] + "/pid").read().strip()
threads = len(os.listdir("/proc/%s/task" % pid))
time.sleep(0.5)
with open(os.environ["tmp"] + "/many", "w") as f:
    f.write("%d %d\n" % (calls(), threads))
PY
many ()
{
  rm -f "$log" "$tmp/pid" "$tmp/many"
  timeout 120 nbdkit -U - -P "$tmp/pid" "$@" --filter=multi-conn \
    --filter=log sparse-random 128G multi-conn-mode=disable \
    logfile="$log" --run "$py $tmp/many.py"
  cat "$tmp/many"
}
read -r base_calls base_threads < <(many)
read -r our_calls our_threads < <(many --filter="$FILTER")
echo "without the filter: $base_calls calls, $base_threads threads;" \
     "with: $our_calls calls, $our_threads threads"
[ "$our_calls" -le 300 ] ||
  { echo "FAIL: $our_calls backend calls for 100 connections"; exit 1; }
[ "$our_threads" -le $((base_threads + 64)) ] ||
  { echo "FAIL: $our_threads threads against $base_threads"; exit 1; }
echo "ok: at most 3 calls per connection, threads do not grow with them"

echo "== 3. a slow write in flight"
cat > "$tmp/slow.py" <<'PY'
import threading
from cetest import *
M = 1 << 20
h, h2 = conn(), conn()
bs(h, 0, 65536)
time.sleep(0.5)
t = threading.Thread(target=lambda: h2.pwrite(b"x" * 4096, 8 * M))
t.start()
time.sleep(0.2)
a = calls()
for off in range(0, 64 * M, M):
    bs(h, off, 65536)
t.join()
n = calls() - a
print("backend calls during the write: %d" % n)
check(n <= 72, "calls during the slow write bounded (%d <= 72)" % n)
PY
rm -f "$log"
timeout 60 nbdkit -U - --filter="$FILTER" --filter=delay --filter=log \
  memory 64M delay-write=2 cacheextents-window=1M logfile="$log" \
  --run "$py $tmp/slow.py"

echo "== 4. copy between two exports"
copy_fixture "$tmp/dir"
copy ()
{
  local tool=$1
  shift
  rm -f "$log" "$tmp/dir/b"
  truncate -s 1G "$tmp/dir/b"
  timeout 120 nbdkit -U - "$@" --filter=log file dir="$tmp/dir" \
    logfile="$log" --run "$(copy_client "$tool")"
  cmp "$tmp/dir/a" "$tmp/dir/b"
  backend_calls
}
for tool in nbdcopy convert; do
  base=$(copy $tool)
  ours=$(copy $tool --filter="$FILTER")
  echo "$tool: $base backend calls without the filter, $ours with"
  [ "$ours" -le $((2 * base + 20)) ] ||
    { echo "FAIL: $tool: $ours > 2 * $base + 20"; exit 1; }
done
echo "ok: copies cost at most twice the calls plus 20"

echo "== 5. shutdown during a slow prefetch call"
cat > "$tmp/quit.py" <<'PY'
from cetest import *
h = conn()
bs(h, 0, 65536)          # 8 s; prefetch has started its own calls
h.shutdown()
PY
start=$(date +%s)
timeout 60 nbdkit -U - --filter="$FILTER" --filter=delay memory 64G \
  delay-extents=8 cacheextents-window=1G \
  --run "($py $tmp/quit.py); date +%s > $tmp/left"
end=$(date +%s)
took=$((end - $(cat "$tmp/left")))
echo "nbdkit exited ${took} s after the client left ($((end - start)) s in all)"
# Under a sanitizer (tests/sanitizers/) nbdkit's own exit is slow on a
# busy host: there the limit only catches a hang.
limit=6
[ -n "${CE_SAN_MODE:-}" ] && limit=40
[ "$took" -le "$limit" ] ||
  { echo "FAIL: shutdown took ${took} s (limit $limit s)"; exit 1; }
echo "ok: shutdown prompt"

echo "== 6. a stack that serializes all requests"
# Prefetch cannot run beside any request of the server: nbdkit must
# say so without -v (once), not as an error, and serve as usual.
# (Stacks that serialize requests per connection keep prefetch:
# test-thread-model.sh.)
requires_nbdkit_filter noparallel
timeout 60 nbdkit -U - --filter="$FILTER" --filter=noparallel memory 1M \
  serialize=all-requests --run 'nbdinfo --map "$uri" >/dev/null' \
  2>"$tmp/err"
cat "$tmp/err"
assert_eq "lines saying prefetch is off" 1 \
  "$(grep -c 'cacheextents: prefetch is off' "$tmp/err")"
assert_eq "lines saying error" 0 "$(grep -ci 'error' "$tmp/err" || true)"
timeout 60 nbdkit -U - --filter="$FILTER" --filter=noparallel memory 1M \
  serialize=all-requests cacheextents-prefetch=false \
  --run 'nbdinfo --map "$uri" >/dev/null' 2>"$tmp/err"
assert_eq "with cacheextents-prefetch=false, messages" 0 \
  "$(wc -l < "$tmp/err")"

echo "== 7. a jump back"
# One request far out, then one at 0: the second costs its own call
# and one call read ahead, not a scan up to where the first one was.
cat > "$tmp/jump.py" <<'PY'
from cetest import *
G = 1 << 30
h = conn()
bs(h, 60 * G, 65536)
time.sleep(1.5)
a = calls()
bs(h, 0, 65536)
time.sleep(2)
n = calls() - a
print("backend calls after the jump back: %d" % n)
check(n <= 3, "a jump back costs a call or two (%d <= 3)" % n)
PY
rm -f "$log"
timeout 60 nbdkit -U - --filter="$FILTER" --filter=log memory 64G \
  logfile="$log" --run "$py $tmp/jump.py"

cat > "$tmp/jump-walk.py" <<'PY'
from cetest import *
G = 1 << 30
h = conn()
bs(h, 60 * G, 65536)
time.sleep(1)
for off in range(0, 21 * G, 2 * G):
    bs(h, off, 65536)
PY
rm -f "$tmp/stats"
timeout 60 nbdkit -U - --filter="$FILTER" --filter=delay memory 64G \
  delay-extents=50ms cacheextents-statsfile="$tmp/stats" \
  --run "$py $tmp/jump-walk.py"
cat "$tmp/stats"
misses=$(stats_value misses "$tmp/stats")
echo "client misses for the walk after the jump back: $((misses - 1))"
[ "$((misses - 1))" -le 2 ] ||
  { echo "FAIL: prefetch did not follow the jump back"; exit 1; }


echo "== 8. one full pass"
full_pass ()
{
  local most=$1 client=$2 n
  rm -f "$log"
  timeout 60 nbdkit -U - -r --filter="$FILTER" --filter=log --filter=delay \
    sparse-random 16G seed=5 percent=5 runlength=2097152 \
    delay-extents=20ms logfile="$log" --run "$client"
  n=$(backend_calls)
  echo "$client: $n backend calls"
  [ "$n" -le "$most" ] ||
    { echo "FAIL: $client: $n backend calls (most $most)"; exit 1; }
}
full_pass 5 'qemu-img map --output=json "$uri" >/dev/null'
full_pass 5 'nbdinfo --map "$uri" >/dev/null'
full_pass 8 'nbdcopy "$uri" null:'
echo "ok: a full pass costs at most one call per client over size / window"
