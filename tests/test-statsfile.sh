#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# cacheextents-statsfile=FILE: a relative name is taken relative to
# the directory nbdkit was started in, even when nbdkit runs as a
# daemon (which changes directory to /); a file that cannot be created
# is refused at startup, with a message naming the parameter, instead
# of silently never appearing.
. "$(dirname "$0")/functions.sh"
requires_nbdkit_plugin memory
requires nbdinfo

echo "== relative name, nbdkit as a daemon"
# The daemon is killed however the test ends.
trap 'rc=$?; [ -s "$tmp/pid" ] && kill "$(cat "$tmp/pid")" 2>/dev/null
      (exit $rc); cleanup' EXIT
mkdir "$tmp/run"
(
  cd "$tmp/run"
  timeout 60 nbdkit -U "$tmp/sock" -P "$tmp/pid" --filter="$FILTER" \
    memory 1M cacheextents-statsfile=rel.txt $CE_OPTS
)
for i in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
nbdinfo --map "nbd+unix:///?socket=$tmp/sock" >/dev/null
kill "$(cat "$tmp/pid")"
rm "$tmp/pid"
for i in $(seq 100); do [ -s "$tmp/run/rel.txt" ] && break; sleep 0.1; done
cat "$tmp/run/rel.txt"
grep -q '^cacheextents: requests=1 ' "$tmp/run/rel.txt"
echo "ok: the summary is in the directory nbdkit was started in"
[ ! -e /rel.txt ] || echo "note: /rel.txt exists (not ours?)"

echo "== a file that cannot be created"
for bad in "$tmp/no/such/dir/stats" "$tmp/run"; do
  if timeout 60 nbdkit -U - --filter="$FILTER" memory 1M \
       cacheextents-statsfile="$bad" --run true 2>"$tmp/err"; then
    echo "FAIL: cacheextents-statsfile=$bad accepted"
    exit 1
  fi
  cat "$tmp/err"
  grep -q "cacheextents-statsfile=$bad" "$tmp/err"
  echo "ok: refused, naming the parameter and the value"
done
