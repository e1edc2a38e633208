#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# KubeVirt CDI's stack, side by side.  The backend stands in for VDDK:
# a second nbdkit with 100 ms per extents call, serialized per
# connection as VDDK is (noparallel serialize=requests) or not, behind
# the nbd plugin of the front nbdkit, the one under test:
#
#   back:  nbdkit [--filter=noparallel] --filter=delay sparse-random SIZE
#   front: nbdkit --readonly STACK --filter=stats nbd socket=BACK
#
# STACK is one of
#   none     --filter=retry                   (no cache)
#   bundled  --filter=retry --filter=cacheextents   (nbdkit's own, where
#            the nbdkit has one: CDI's command line today)
#   cdi      --filter=retry --filter=OURS     (CDI's order: retry above)
#   rec      --filter=OURS --filter=retry-request   (the README's order)
# and the stats filter below counts the extents calls that reach the
# backend.  Clients: qemu-img map, and tests/cdi-client.py, which does
# what CDI's importer does (REQ_ONE block status over 2 GiB windows in
# order) and reads the first 4 KiB of each data extent (CDI reads all
# of it; those reads cost the same with or without a cache, so they are
# left out here to measure block status).
#
# Usage: bench/cdi.sh CSV LABEL OURS-SO
#   (the nbdkit first on PATH is the one measured; prints markdown table
#   rows on stdout and appends rows to CSV)
# Environment:
#   BENCH_RUNS=3        runs per cell (median); once if over BENCH_SLOW_SECS
#   BENCH_CDI_NONE=1    0 leaves out the no-cache cells (they take
#                       minutes and do not depend on the nbdkit version)
#   BENCH_CDI_CASES     subset of "serial-16G serial-256G parallel-16G"
set -eu -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
section_init cdi "$@"
with_none=${BENCH_CDI_NONE:-1}
cases=${BENCH_CDI_CASES:-serial-16G serial-256G parallel-16G}
PYTHON=${PYTHON:-/usr/bin/python3}

stacks=
[ "$with_none" = 1 ] && stacks=none
have_bundled && stacks="$stacks bundled"
stacks="$stacks cdi rec"

stack_args () {
  case $1 in
    none) echo --filter=retry ;;
    bundled) echo --filter=retry --filter=cacheextents ;;
    cdi) echo "--filter=retry --filter=$ours" ;;
    rec) echo "--filter=$ours --filter=retry-request" ;;
  esac
}

client_cmd () {
  case $1 in
    map) echo 'qemu-img map --output=json "$uri" >/dev/null' ;;
    cdi) echo "$PYTHON $top/tests/cdi-client.py --read head \"\$uri\" >/dev/null" ;;
  esac
}

# The front, run by the back's --run (which sets $unixsocket).
cat > "$tmp/front.sh" <<'SH'
t0=$(date +%s.%N)
# shellcheck disable=SC2086
nbdkit -U - --readonly $STACK --filter=stats nbd socket="$unixsocket" \
  statsfile="$STATS" --run "$CLIENT"
rc=$?
t1=$(date +%s.%N)
echo "$t0 $t1" > "$TIMES"
exit $rc
SH

# cell CASE CLIENT STACK: prints ' TIME s, CALLS calls |'.
cell () {
  local case=$1 client=$2 s=$3 size=${1#*-} noparallel= i t e mt me mark=
  local -a times=() exts=()
  case $case in serial-*) noparallel='--filter=noparallel serialize=requests' ;; esac
  for ((i = 1; i <= runs; i++)); do
    rm -f "$tmp/stats" "$tmp/times"
    # shellcheck disable=SC2086
    STACK=$(stack_args "$s") CLIENT=$(client_cmd "$client") \
    STATS=$tmp/stats TIMES=$tmp/times \
      timeout --kill-after=10 1500 \
      nbdkit -U - ${noparallel%% *} --filter=delay sparse-random "$size" \
        ${noparallel#* } delay-extents=100ms \
        --run "export unixsocket; bash $tmp/front.sh" >"$tmp/out" 2>&1 ||
      { log "run failed:"; tail -n 20 "$tmp/out" >&2; return 1; }
    t=$(awk '{ printf "%.3f", $2 - $1 }' "$tmp/times")
    e=$(awk '/^extents:/ { n = $2 } END { print n + 0 }' "$tmp/stats")
    times+=("$t"); exts+=("$e")
    log "$label $case $client $s run $i: $t s, $e backend extents calls"
    awk -v t="$t" -v m="$slow" 'BEGIN { exit !(t > m) }' && break
  done
  mt=$(median "${times[@]}"); me=$(median "${exts[@]}")
  [ "${#times[@]}" -lt "$runs" ] && mark=' †'
  printf ' %.2f s%s, %s calls |' "$mt" "$mark" "$me"
  echo "cdi,$label,$case,$client,$s,${#times[@]},$mt,$me" >> "$csv"
  eval "t_$s=$mt"
}

# ratio A B: ' A/B× |'.
ratio () {
  if [ -n "$1" ] && [ -n "$2" ]; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf " %.2f× |", a / b }'
  else
    printf ' - |'
  fi
}

for c in $cases; do
  for client in map cdi; do
    t_none= t_bundled= t_cdi= t_rec=
    printf '| %s | %s | %s |' "$label" "$c" "$client"
    for s in none bundled cdi rec; do
      # No cache at 256G: the map would take about 20 minutes (one
      # call of 100 ms per extent); the CDI client's run once shows it.
      if grep -qw "$s" <<<"$stacks" &&
         ! [ "$s/$c/$client" = none/serial-256G/map ]; then
        cell "$c" "$client" "$s"
      else
        printf ' n/a |'
      fi
    done
    # CDI's order against the recommended one, nbdkit's filter, no cache.
    ratio "$t_cdi" "$t_rec"
    ratio "$t_bundled" "$t_cdi"
    ratio "$t_none" "$t_cdi"
    echo
  done
done
