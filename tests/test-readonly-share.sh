#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Read-only sources pay once.  virt-v2v's pattern on a read-only
# source: qemu-img map, then qemu-img convert, on two connections one
# after the other, over `nbdkit -r` with a backend that does not report
# multi-conn (VDDK does not; the multi-conn filter hides memory's).
# Nothing can be written through such a server, so with scope auto the
# second connection shares the first one's map and makes no backend
# extents call; with cacheextents-scope=connection it repeats them.
# The same for a read-only plugin without -r (eval without pwrite).  And a writable server without multi-conn
# still keeps maps private.
. "$(dirname "$0")/functions.sh"
requires qemu-img
requires_nbdkit_plugin eval
requires dd
requires_nbdkit_plugin sparse-random
requires_nbdkit_filter multi-conn
requires_nbdkit_filter log

cat > "$tmp/run.sh" <<'EOF2'
set -e
qemu-img map --output=json "$uri" > "$tmp/map.json"
first=$(grep -c ' Extents id=' "$log")
qemu-img convert -n --target-is-zero -O raw "$uri" \
  "json:{\"file.driver\":\"null-co\",\"file.size\":\"$(qemu-img info --output=json "$uri" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')\"}"
total=$(grep -c ' Extents id=' "$log")
echo "$first $((total - first))" > "$tmp/calls"
EOF2

# calls EXPECT-SECOND [nbdkit args...]: prints calls of map, of convert.
run ()
{
  local expect=$1 first second
  shift
  rm -f "$log" "$tmp/calls"
  timeout 120 nbdkit -U - "$@" --run "export uri; bash $tmp/run.sh"
  read -r first second < "$tmp/calls"
  echo "== $*: map $first backend extents calls, convert $second"
  [ "$first" -gt 0 ] || { echo "FAIL: map made no backend call"; exit 1; }
  case $expect in
    none) assert_eq "convert's backend extents calls" 0 "$second" ;;
    some) [ "$second" -gt 0 ] ||
            { echo "FAIL: convert made no backend call"; exit 1; }
          echo "ok: convert repeated the calls" ;;
  esac
}

disk=(sparse-random 4G seed=7 percent=2 runlength=1048576)
below=(--filter=multi-conn --filter=log)
after=(multi-conn-mode=disable logfile="$log")

run none -r --filter="$FILTER" "${below[@]}" "${disk[@]}" "${after[@]}" \
  $CE_OPTS
run some -r --filter="$FILTER" "${below[@]}" "${disk[@]}" "${after[@]}" \
  $CE_OPTS cacheextents-scope=connection
# A plugin that cannot write (eval without pwrite; no multi-conn
# either), without -r.
run none --filter="$FILTER" --filter=log eval get_size='echo 64M' \
  pread='env -u LD_PRELOAD dd if=/dev/zero count=$3 iflag=count_bytes status=none' \
  extents='echo 0 60M hole,zero; echo 60M 4M ""' logfile="$log" \
  $CE_OPTS
# Writable and no multi-conn: each connection keeps its own map.
run some --filter="$FILTER" "${below[@]}" "${disk[@]}" "${after[@]}" \
  $CE_OPTS
