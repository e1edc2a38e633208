#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The README: its parameter table lists every parameter --help lists,
# with the same default; it keeps the two commands; it says how to see
# the filter at work and what VDDK users should set.
. "$(dirname "$0")/functions.sh"
requires_nbdkit_plugin null
readme=$top/README.md
failed=0

nbdkit --filter="$FILTER" null --help >"$tmp/help" 2>&1
for key in $(sed -n 's/^\(cacheextents-[a-z-]*\)=.*/\1/p' "$tmp/help"); do
  # The default from --help: '(default X)' on the key's line or the next.
  def=$(grep -A1 -- "^$key=" "$tmp/help" |
        sed -n 's/.*(default \([^)]*\)).*/\1/p' | head -n 1)
  row=$(grep -- "^| \`$key=" "$readme" || :)
  if [ -z "$row" ]; then
    echo "FAIL: the README's table lacks $key"; failed=1; continue
  fi
  cell=$(echo "$row" | sed 's/\\|/,/g' | cut -d'|' -f3 | tr -d ' ')
  if [ "$cell" = "$def" ]; then
    echo "ok: README: $key, default $cell"
  else
    echo "FAIL: README: $key default '$cell', --help says '$def'"; failed=1
  fi
done

for cmd in 'make demo' 'make check'; do
  grep -q "^    $cmd " "$readme" ||
    { echo "FAIL: the README lost '$cmd'"; failed=1; }
done

# How to tell it is working: the stats filter below it, -v with the
# debug flag, the statsfile.
for s in '--filter=cacheextents --filter=stats' '-v -D cacheextents.cache=1' \
         'cacheextents-statsfile=FILE' '## VMware VDDK' \
         'cacheextents-prefetch-threads=N' 'cacheextents-scope=export'; do
  if grep -q -F -- "$s" "$readme"; then
    echo "ok: the README mentions $s"
  else
    echo "FAIL: the README does not mention $s"; failed=1
  fi
done
exit $failed
