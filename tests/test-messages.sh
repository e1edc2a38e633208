#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Messages: each bad value of each parameter makes nbdkit print exactly
# one line, which names the parameter and the value; ranges are given
# in nbdkit's size syntax (4E, not 4611686018427387904); --help gives
# the default of every key.
. "$(dirname "$0")/functions.sh"
requires_nbdkit_plugin null

failed=0

# one_line KEY VALUE [WORD]: nbdkit refuses KEY=VALUE with one line of
# output naming both (and containing WORD, if given).
one_line ()
{
  local key=$1 value=$2 word=${3-} n
  timeout 30 nbdkit -U - --filter="$FILTER" null cacheextents-prefetch=false \
    "$key=$value" --run true >"$tmp/out" 2>&1 && {
    echo "FAIL: $key=$value was accepted"; failed=1; return; }
  n=$(wc -l < "$tmp/out")
  if [ "$n" -ne 1 ]; then
    echo "FAIL: $key=$value: $n lines, expected 1:"
    sed 's/^/    /' "$tmp/out"; failed=1; return
  fi
  if ! grep -q -F -- "$key=$value:" "$tmp/out"; then
    echo "FAIL: $key=$value: the line does not name '$key=$value':"
    sed 's/^/    /' "$tmp/out"; failed=1; return
  fi
  if [ -n "$word" ] && ! grep -q -F -- "$word" "$tmp/out"; then
    echo "FAIL: $key=$value: the line does not say '$word':"
    sed 's/^/    /' "$tmp/out"; failed=1; return
  fi
  echo "ok: $(cat "$tmp/out")"
}

for key in cacheextents-window cacheextents-max-size \
           cacheextents-granularity; do
  for value in foo "" -1 1.5M 1KiB 0x10 "1M " M 1Z 8E \
               99999999999999999999; do
    one_line "$key" "$value"
  done
done
one_line cacheextents-window 511 "between 512 and 4E"
one_line cacheextents-window 5E "between 512 and 4E"
one_line cacheextents-max-size 4095 "at least 4K"
one_line cacheextents-max-size 8E "less than 8E"
one_line cacheextents-granularity 256 "between 512 and 1G"
one_line cacheextents-granularity 2G "between 512 and 1G"
one_line cacheextents-granularity 3000 "power of 2"
for value in maybe "" 2 " on" yes-ish; do
  one_line cacheextents-prefetch "$value"
done
for value in two "" -1 0 65 010 09 1.5 4294967296 99999999999 "8 "; do
  one_line cacheextents-prefetch-threads "$value"
done
one_line cacheextents-prefetch-threads 65 "between 1 and 64"
for value in two "" -1 17 010; do
  one_line cacheextents-prefetch-contexts "$value"
done
one_line cacheextents-prefetch-contexts 17 "between 0 and 16"
for value in bogus "" Export; do
  one_line cacheextents-scope "$value"
done
one_line cacheextents-statsfile ""

# No raw byte counts of 2^62 and the like in any of them.
for kv in cacheextents-window=511 cacheextents-window=8E \
          cacheextents-max-size=1; do
  timeout 30 nbdkit -U - --filter="$FILTER" null "$kv" --run true \
    >"$tmp/out" 2>&1 || :
  if grep -q '[0-9]\{10,\}' "$tmp/out"; then
    echo "FAIL: $kv: a raw byte count in: $(cat "$tmp/out")"; failed=1
  fi
done

# --help: every key with its default.
nbdkit --filter="$FILTER" null --help >"$tmp/help" 2>&1
for kv in window=4G max-size=64M granularity=2M scope=auto prefetch=true \
          prefetch-threads=16 prefetch-contexts=8 statsfile=none; do
  key=cacheextents-${kv%%=*} def=${kv#*=}
  # The key's line, and the next one when the description wraps.
  if grep -A1 -- "^$key=" "$tmp/help" | grep -q -F "(default $def)"; then
    echo "ok: --help gives $key's default $def"
  else
    echo "FAIL: --help does not give '(default $def)' for $key"; failed=1
  fi
done

exit $failed
