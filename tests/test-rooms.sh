#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The rooms (README, Layout): calls between the cache and prefetch go
# one way.  No file of the cache (cache.c, scope.c, writes.c,
# flight.c) calls a function of prefetch.c by name: the cache tells
# prefetch of events only through struct cache_events.  No header of
# src/ includes, directly or not, a header that includes it back.
# struct scope carries no field of prefetch's own (they are in struct
# prefetch_scope, prefetch.h).  Each room's .c opens with a design
# note.
. "$(dirname "$0")/functions.sh"
src=$top/src

for f in cache.c scope.c writes.c flight.c; do
  [ -f "$src/$f" ] || { echo "FAIL: src/$f is missing"; exit 1; }
  # The code without its comments (a comment may name them).
  perl -0pe 's{/\*.*?\*/}{}gs' "$src/$f" > "$tmp/code"
  # Every name of prefetch's is prefetch_*; struct prefetch_scope is
  # data, not a call.
  if grep -nE '\bprefetch_[a-z_]+ *\(|\bprefetch_events\b' "$tmp/code"; then
    echo "FAIL: src/$f calls prefetch by name"; exit 1
  fi
done
echo "ok: no file of the cache calls prefetch by name"

# The include graph of src/*.h has no cycle.
/usr/bin/python3 - "$src" <<'PY' || exit 1
import os, re, sys
src = sys.argv[1]
inc = {}
for h in os.listdir(src):
    if h.endswith('.h'):
        with open(os.path.join(src, h)) as f:
            inc[h] = [m for m in re.findall(r'^#include "([^"]+)"', f.read(), re.M)
                      if m in os.listdir(src)]
def walk(h, path):
    if h in path:
        sys.exit("FAIL: include cycle " + " -> ".join(path[path.index(h):] + [h]))
    for i in inc.get(h, []):
        walk(i, path + [h])
for h in inc:
    walk(h, [])
print("ok: no header of src/ includes one that includes it back (%d headers)" % len(inc))
PY

# Prefetch's state is its own.
if sed -n '/^struct scope {/,/^};/p' "$src/scope.h" | grep -n 'pf_'; then
  echo "FAIL: struct scope has prefetch fields of its own"; exit 1
fi
grep -q '^struct prefetch_scope {' "$src/prefetch.h" || {
  echo "FAIL: prefetch.h does not define struct prefetch_scope"; exit 1; }
echo "ok: prefetch's per-scope state is struct prefetch_scope (prefetch.h)"

for f in cache.c scope.c writes.c flight.c map.c; do
  head -12 "$src/$f" | grep -q '^ \* Design note$' || {
    echo "FAIL: src/$f does not open with a design note"; exit 1; }
done
echo "ok: every room of the cache opens with a design note"
