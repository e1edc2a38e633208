#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# retry's reopen in CDI's order.  After a failed request the retry
# filter, above the cache, closes and reopens everything below it: this
# filter's handle for that connection included, while prefetch may be
# in the middle of a call on that context or waiting to make one.  A
# CDI-like copy (tests/cdi-client.py) of a 256 GiB disk over a
# VDDK-like backend (serialized, 100 ms per extents call) meets a burst
# of failures in its middle:
#   a. the error filter below the cache fails every call for 1.5 s;
#   b. the back server behind the nbd plugin is killed (SIGKILL, as a
#      crash would end it) and, 1.5 s later, started again on the same
#      socket.
# Either way: the copy finishes; the map is exact and every piece read
# is what the disk without any cache gives at that offset;
# prefetch makes calls after the burst (its debug lines after the
# burst's end, marked in the same log); nothing crashes or hangs, and
# the server exits cleanly.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin sparse-random
requires_nbdkit_plugin nbd
for f in retry error log noparallel delay; do requires_nbdkit_filter "$f"; done

disk='sparse-random 256G seed=5'
cdi=("$PYTHON" "$top/tests/cdi-client.py" --read head)

# The disk without any cache: the truth for the map, and for every
# piece the client reads (--verify).
start_server plain -r -U "$tmp/plain.sock" $disk
"${cdi[@]}" --read none --map-out "$tmp/truth.json" \
  "nbd+unix:///?socket=$tmp/plain.sock" >/dev/null

back ()
{
  start_server back -U "$tmp/back.sock" --filter=noparallel --filter=delay \
    $disk serialize=requests delay-extents=100ms
}

# burst START STOP: once the cache has made 12 calls, run START, wait
# 1.5 s, run STOP, and mark the end of the burst in the server's log.
burst ()
{
  local i
  for ((i = 0; i < 600; i++)); do
    [ "$(backend_calls)" -ge 12 ] && break
    sleep 0.05
  done
  eval "$1"
  echo "burst: started after $(backend_calls) calls"
  sleep 1.5
  eval "$2"
  echo "=== the burst is over" >> "$tmp/front.err"
}

for scenario in error restart; do
  echo "== $scenario"
  rm -f "$log" "$tmp"/*.err "$tmp/fail" "$tmp/stats"
  back
  below=()
  [ "$scenario" = error ] &&
    below=(--filter=error error-rate=100% error-file="$tmp/fail")
  start_server front --readonly -U "$tmp/front.sock" --filter=retry \
    --filter="$FILTER" "${below[@]:0:1}" --filter=log \
    nbd socket="$tmp/back.sock" retry=20 "${below[@]:1}" \
    retries=20 retry-delay=1 retry-exponential=no logfile="$log" \
    cacheextents-statsfile="$tmp/stats" -v -D cacheextents.prefetch=1
  timeout 120 "${cdi[@]}" --truth "$tmp/truth.json" \
    --verify "nbd+unix:///?socket=$tmp/plain.sock" \
    "nbd+unix:///?socket=$tmp/front.sock" > "$tmp/client.out" &
  client=$!
  if [ "$scenario" = error ]; then
    burst 'touch "$tmp/fail"' 'rm "$tmp/fail"'
  else
    burst 'kill_server back' 'back'
  fi
  wait "$client" || { echo "FAIL: the client failed"; cat "$tmp/client.out"; exit 1; }
  cat "$tmp/client.out"
  stop_server front
  stop_server back

  reopens=$(grep -c 'retry [0-9]*: waiting' "$tmp/front.err" || true)
  after=$(sed -n '/^=== the burst is over/,$p' "$tmp/front.err" |
            grep -c 'cacheextents: prefetch offset=' || true)
  echo "retries: $reopens; prefetch calls after the burst: $after;" \
       "$(stats_value prefetch-calls "$tmp/stats") in all," \
       "$(stats_value failed-calls "$tmp/stats") failed"
  [ "$reopens" -ge 1 ] || { echo "FAIL: retry never retried"; exit 1; }
  [ "$after" -ge 1 ] ||
    { echo "FAIL: prefetch made no call after the burst"; exit 1; }
  if grep -E 'Assertion|Segmentation|double free|AddressSanitizer' \
       "$tmp/front.err"; then
    echo "FAIL: the server crashed or asserted"
    exit 1
  fi
done
