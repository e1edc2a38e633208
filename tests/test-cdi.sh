#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# KubeVirt CDI's command line, as CDI starts it, with the filter in
# CDI's place (loaded by name where make install put it there, else by
# its path), over a VDDK-like backend: a second nbdkit that answers one
# request at a time per connection, 100 ms per extents call, behind the
# nbd plugin.
#
#   back:  nbdkit --filter=stats --filter=noparallel --filter=delay
#            sparse-random 16G ... serialize=requests delay-extents=100ms
#   front: nbdkit --foreground --readonly --exit-with-parent -U SOCK
#            --pidfile F --filter=retry --filter=cacheextents
#            --filter=log nbd socket=BACK --verbose -D ...
#
# tests/cdi-client.py does what CDI's importer does (REQ_ONE block
# status over 2 GiB windows in order, a read of every data extent).
# Then: the map is exact; the backend saw at least 10 times fewer
# extents calls than the client made (without a cache, retry passes
# every one down); prefetch made calls; no two calls at once on one
# context below the cache; no line says "error"; the server exits
# cleanly.  The same again over a backend that is not serialized.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin sparse-random
requires_nbdkit_plugin nbd
for f in retry log stats noparallel delay; do requires_nbdkit_filter "$f"; done

disk='sparse-random 16G seed=11 percent=5 runlength=4194304'
cdi=("$PYTHON" "$top/tests/cdi-client.py")

if [ "$(cacheextents_by_name)" = ours ]; then
  cache=--filter=cacheextents
  echo "the filter is loaded by name (make install put it there)"
else
  cache=--filter=$FILTER
  echo "the filter is loaded by its path: $FILTER"
fi

timeout 60 nbdkit -U - -r $disk \
  --run "${cdi[*]} --read none --map-out $tmp/truth.json \"\$uri\"" >/dev/null

for back in serialized parallel; do
  echo "== a $back backend"
  rm -f "$log" "$tmp"/*.err "$tmp"/*.stats "$tmp/stats"
  serial=()
  [ "$back" = serialized ] &&
    serial=(--filter=noparallel serialize=requests)
  start_server back -U "$tmp/back.sock" --filter=stats "${serial[@]:0:1}" \
    --filter=delay $disk "${serial[@]:1}" delay-extents=100ms \
    statsfile="$tmp/back.stats"
  # CDI's flags and order (pkg/image/nbdkit.go); the log filter sits
  # below the cache to see every call it makes.
  start_server front --readonly -U "$tmp/front.sock" --filter=retry \
    "$cache" --filter=log nbd socket="$tmp/back.sock" logfile="$log" \
    cacheextents-statsfile="$tmp/stats" \
    --verbose -D nbdkit.backend.datapath=0 -D vddk.datapath=0 -D vddk.stats=1
  timeout 120 "${cdi[@]}" --read full --truth "$tmp/truth.json" \
    "nbd+unix:///?socket=$tmp/front.sock" > "$tmp/client.out"
  cat "$tmp/client.out"
  stop_server front
  stop_server back

  asked=$(sed -n 's/.* block_status=\([0-9]*\).*/\1/p' "$tmp/client.out")
  calls=$(sed -n 's/^extents: \([0-9]*\).*/\1/p' "$tmp/back.stats")
  echo "the client asked $asked times; the backend answered $calls calls"
  if [ "$((calls * 10))" -gt "$asked" ]; then
    echo "FAIL: the backend saw more than a tenth of the client's calls"
    exit 1
  fi
  p=$(stats_value prefetch-calls "$tmp/stats")
  [ "${p:-0}" -ge 1 ] || { echo "FAIL: prefetch made no call"; exit 1; }
  echo "ok: $p calls by prefetch"
  assert_eq "calls beside another call of their context" 0 "$(overlaps)"
  if grep -i error "$tmp/front.err"; then
    echo "FAIL: a line of the server's output says error"
    exit 1
  fi
  echo "ok: no line of the server's output says error"
done
