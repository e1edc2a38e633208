#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# qemu-img map through the filter must equal the map without it, and
# the whole (small) disk must cost exactly one backend extents call:
# the first miss learns the whole disk and every later REQ_ONE query
# of qemu-img is answered from the cache.
. "$(dirname "$0")/functions.sh"
requires qemu-img
requires_nbdkit_plugin data
requires_nbdkit_filter log

disk=(data data="0 @0x100000 1 @0x180000 2 3" size=2M)

timeout 60 nbdkit -U - "${disk[@]}" \
  --run 'qemu-img map --output=json "$uri"' > "$tmp/plain.json"

timeout 60 nbdkit -U - --filter="$FILTER" --filter=log \
  "${disk[@]}" $CE_OPTS logfile="$log" \
  --run 'qemu-img map --output=json "$uri"' > "$tmp/cached.json"

cat "$tmp/cached.json"
# The disk has data at both ends and holes between: several extents.
assert_eq "extents in the map" 6 "$(grep -c '"start"' "$tmp/plain.json")"
if ! cmp "$tmp/plain.json" "$tmp/cached.json"; then
  echo "FAIL: the map differs with the filter:"
  diff -u "$tmp/plain.json" "$tmp/cached.json" || true
  exit 1
fi
echo "ok: the map is identical with and without the filter"
assert_eq "backend extents calls" 1 "$(backend_calls)"
