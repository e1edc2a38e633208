#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# A VDDK-like backend: a second nbdkit that answers one request at a
# time per connection (noparallel serialize=requests) with 100 ms per
# extents call, behind the nbd plugin of the nbdkit under test:
#
#   back:  nbdkit --filter=noparallel --filter=delay sparse-random SIZE
#   front: nbdkit [CACHE] --filter=stats nbd socket=BACK
#
# qemu-img map through the front, for no cache (16G only: 256G would
# take about 20 minutes), nbdkit's bundled filter (where the nbdkit has
# one), the filter as it was at the last landed revision ("landed", if
# BENCH_LANDED names its .so) and this filter, all with default
# parameters.  Called by bench.sh once per nbdkit; prints a markdown
# table's rows on stdout and appends rows to CSV.
#
# Usage: bench/serial.sh CSV LABEL OURS-SO
#   (the nbdkit first on PATH is the one measured)
# Environment: BENCH_RUNS, BENCH_SLOW_SECS, BENCH_LANDED, BENCH_SERIAL_SIZES
set -eu -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
section_init serial "$@"
landed=${BENCH_LANDED:-}
sizes=${BENCH_SERIAL_SIZES:-16G 256G}

stacks="none"
have_bundled && stacks="$stacks bundled"
[ -n "$landed" ] && [ -f "$landed" ] && stacks="$stacks landed"
stacks="$stacks ours"

cache_args () {
  case $1 in
    none) ;;
    bundled) echo --filter=cacheextents ;;
    landed) echo "--filter=$landed" ;;
    ours) echo "--filter=$ours" ;;
  esac
}

# The front, run by the back's --run (which sets $unixsocket).
cat > "$tmp/front.sh" <<'SH'
t0=$(date +%s.%N)
# shellcheck disable=SC2086
nbdkit -U - $CACHE --filter=stats nbd socket="$unixsocket" \
  statsfile="$STATS" --run 'qemu-img map --output=json "$uri" >/dev/null'
rc=$?
t1=$(date +%s.%N)
echo "$t0 $t1" > "$TIMES"
exit $rc
SH

for size in $sizes; do
  printf '| %s | %s |' "$label" "$size"
  for s in none bundled landed ours; do
    if ! grep -qw "$s" <<<"$stacks" ||
       { [ "$s" = none ] && [ "$size" != 16G ]; }; then
      printf ' n/a |'
      echo "serial,$label,$size,$s,0,,," >> "$csv"
      continue
    fi
    times=() exts=()
    for ((i = 1; i <= runs; i++)); do
      rm -f "$tmp/stats" "$tmp/times"
      CACHE=$(cache_args "$s") STATS=$tmp/stats TIMES=$tmp/times \
        timeout --kill-after=10 1500 \
        nbdkit -U - --filter=noparallel --filter=delay sparse-random "$size" \
          serialize=requests delay-extents=100ms \
          --run "export unixsocket; bash $tmp/front.sh" >"$tmp/out" 2>&1 ||
        { log "run failed:"; tail -n 20 "$tmp/out" >&2; exit 1; }
      t=$(awk '{ printf "%.3f", $2 - $1 }' "$tmp/times")
      e=$(awk '/^extents:/ { n = $2 } END { print n + 0 }' "$tmp/stats")
      times+=("$t"); exts+=("$e")
      log "$label $size $s run $i: $t s, $e backend extents calls"
      awk -v t="$t" -v m="$slow" 'BEGIN { exit !(t > m) }' && break
    done
    mt=$(median "${times[@]}"); me=$(median "${exts[@]}")
    mark=
    [ "${#times[@]}" -lt "$runs" ] && mark=' †'
    printf ' %.2f s%s, %s calls |' "$mt" "$mark" "$me"
    echo "serial,$label,$size,$s,${#times[@]},$mt,$me," >> "$csv"
  done
  echo
done
