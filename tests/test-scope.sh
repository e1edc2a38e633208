#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Which connections share a map.  scope=auto shares iff the backend
# reports multi-conn (memory does; the multi-conn filter in disable
# mode below the cache hides it); scope=export always shares;
# scope=connection never does.  Whatever the scope, a write on one
# connection is seen by block status on every other one.
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires nbdinfo
requires_nbdkit_plugin memory
requires_nbdkit_filter multi-conn
requires_nbdkit_filter log

# The premise: memory reports multi-conn, and the filter hides it.
mc=$(nbdkit -U - memory 1M --run 'nbdinfo --can multi-conn "$uri" && echo yes || echo no')
assert_eq "memory reports multi-conn" yes "$mc"
mc=$(nbdkit -U - --filter=multi-conn memory 1M multi-conn-mode=disable \
       --run 'nbdinfo --can multi-conn "$uri" && echo yes || echo no')
assert_eq "multi-conn-mode=disable hides it" no "$mc"

cat > "$tmp/t.py" <<'PY'
import sys
from cetest import *

M = 1 << 20
shared = sys.argv[1] == "shared"
other = 0 if shared else 1        # what another connection's walk costs

h1 = conn()
h1.pwrite(b"\x01" * 4096, 2 * M)
n, m1 = cost(walk, h1)
eq("first connection's walk", 1, n)
n, _ = cost(walk, h1)
eq("first connection again", 0, n)
h2 = conn()
n, m2 = cost(walk, h2)
eq("concurrent second connection", other, n)
eq("second connection's map", fmt(m1), fmt(m2))
h2.shutdown()
h3 = conn()
n, _ = cost(walk, h3)
eq("later third connection", other, n)
n, _ = cost(walk, h1)
eq("first connection once more", 0, n)

# A write on h3 is seen at once by h1, shared map or not.
check(flags_at(h1, 5 * M) == HOLE | ZERO, "5M is a hole before the write")
h3.pwrite(b"\x02" * 4096, 5 * M)
eq("h1's flags at 5M after h3 wrote there", 0, flags_at(h1, 5 * M))
h3.trim(4096, 2 * M)
eq("h1's flags at 2M after h3 trimmed it", HOLE | ZERO, flags_at(h1, 2 * M))
h3.shutdown()
PY

# run WHAT SHARED|PRIVATE [--no-multi-conn] [PARAMS...]
run ()
{
  local what=$1 expect=$2 below=
  shift 2
  if [ "${1:-}" = --no-multi-conn ]; then
    below="--filter=multi-conn multi-conn-mode=disable"
    shift
  fi
  echo "== $what: expect $expect maps"
  rm -f "$log"
  # $below's filter sits below ours; its parameter goes after the plugin.
  timeout 60 nbdkit -U - --filter="$FILTER" ${below%% *} --filter=log \
    memory 8M ${below#* } $CE_OPTS logfile="$log" "$@" \
    --run "$py $tmp/t.py $expect"
}

run "auto, multi-conn backend" shared
run "auto, no multi-conn" private --no-multi-conn
run "export, no multi-conn" shared --no-multi-conn cacheextents-scope=export
run "explicit auto, multi-conn backend" shared cacheextents-scope=auto
run "connection, multi-conn backend" private cacheextents-scope=connection
