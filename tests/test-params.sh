#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Parameters: every invalid value stops nbdkit with a message naming
# the parameter and the value; every valid value is accepted; --help
# lists every key.
. "$(dirname "$0")/functions.sh"
requires nbdinfo
requires_nbdkit_plugin memory

failed=0

# refused KEY VALUE: nbdkit must exit non-zero, must not serve (the
# --run command must not run), and one line of stderr must name both
# the parameter and the value.
refused ()
{
  local key=$1 value=$2 rc=0
  rm -f "$tmp/ran"
  timeout 30 nbdkit -U - --filter="$FILTER" memory 1M $CE_OPTS \
    "$key=$value" --run 'touch "$tmp/ran"' >"$tmp/out" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ] || [ -e "$tmp/ran" ]; then
    echo "FAIL: $key=$value was accepted (exit $rc)"
    failed=1
    return
  fi
  if [ "$rc" -eq 124 ]; then
    echo "FAIL: $key=$value: nbdkit timed out"
    failed=1
    return
  fi
  # grep -F for both on one line; an empty value just needs the key.
  if ! grep -F -- "$key" "$tmp/out" | grep -q -F -- "$value"; then
    echo "FAIL: $key=$value: no line of stderr names both parameter and value:"
    sed 's/^/    /' "$tmp/out"
    failed=1
    return
  fi
  echo "ok: $key=$value refused: $(grep -F -- "$key" "$tmp/out" | head -1)"
}

# accepted KEY=VALUE...: nbdkit starts and serves the export.
accepted ()
{
  local rc=0
  timeout 30 nbdkit -U - --filter="$FILTER" memory 1M "$@" \
    --run 'nbdinfo --size "$uri"' >"$tmp/out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] || [ "$(tail -n 1 "$tmp/out")" != 1048576 ]; then
    echo "FAIL: $* was not accepted (exit $rc):"
    sed 's/^/    /' "$tmp/out"
    failed=1
    return
  fi
  echo "ok: $* accepted"
}

refused cacheextents-granularity 0
refused cacheextents-granularity 3000
refused cacheextents-granularity abc
refused cacheextents-granularity 256
refused cacheextents-granularity 2G
refused cacheextents-window 0
refused cacheextents-window abc
refused cacheextents-window -1
refused cacheextents-window 511
# 2^62 is the largest window; 2^62 + 512 and 5E (5 * 2^60) exceed it.
refused cacheextents-window 4611686018427388416
refused cacheextents-window 5E
refused cacheextents-window 8E
refused cacheextents-max-size 0
refused cacheextents-max-size xyz
refused cacheextents-max-size 1
refused cacheextents-max-size 4095
refused cacheextents-max-size -4096
refused cacheextents-scope bogus
refused cacheextents-scope ""
refused cacheextents-statsfile ""

accepted cacheextents-granularity=4K
accepted cacheextents-granularity=1G
accepted cacheextents-window=512
accepted cacheextents-window=64K
accepted cacheextents-window=4E
accepted cacheextents-window=4611686018427387904
accepted cacheextents-max-size=4096 $CE_OPTS
accepted cacheextents-max-size=1G
accepted cacheextents-scope=auto
accepted cacheextents-scope=export
accepted cacheextents-scope=connection
accepted cacheextents-statsfile="$tmp/stats" $CE_OPTS

keys="window granularity max-size scope statsfile"
if filter_has_param cacheextents-prefetch; then
  keys="$keys prefetch prefetch-threads prefetch-contexts"
  refused cacheextents-prefetch maybe
  refused cacheextents-prefetch ""
  refused cacheextents-prefetch-threads 0
  refused cacheextents-prefetch-threads 65
  refused cacheextents-prefetch-threads 100
  refused cacheextents-prefetch-threads -1
  refused cacheextents-prefetch-threads two
  accepted cacheextents-prefetch=false
  accepted cacheextents-prefetch=true
  accepted cacheextents-prefetch=on cacheextents-prefetch-threads=1
  accepted cacheextents-prefetch-threads=64
  refused cacheextents-prefetch-contexts 17
  accepted cacheextents-prefetch-contexts=0
  accepted cacheextents-prefetch-contexts=16
else
  echo "note: the filter has no cacheextents-prefetch: prefetch cases skipped"
fi

# --help lists every key.
nbdkit --filter="$FILTER" null --help >"$tmp/help" 2>&1
for k in $keys; do
  if grep -q -- "^cacheextents-$k=" "$tmp/help"; then
    echo "ok: --help lists cacheextents-$k"
  else
    echo "FAIL: --help does not list cacheextents-$k"
    failed=1
  fi
done

exit $failed
