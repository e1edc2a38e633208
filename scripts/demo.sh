#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The demo behind "make demo": map a large sparse disk whose block-status
# answers are slow, with no cache, with nbdkit's bundled cacheextents
# filter (if installed) and with this project's filter, then show the
# time taken, how many extents calls reached the backend, and whether the
# maps agree (they must: a difference is a bug and the demo fails).
#
# Environment: DEMO_SIZE (default 48G), DEMO_DELAY (extents delay in ms,
# default 20).  With the defaults the whole demo takes about a minute,
# almost all of it the uncached qemu-img map.

# The map commands are run by nbdkit's --run shell, which sets $uri.
# shellcheck disable=SC2016
set -eu -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
size=${DEMO_SIZE:-48G}
delay=${DEMO_DELAY:-20}
ours=$top/build/nbdkit-cacheextents-filter.so
backend=(sparse-random size="$size" percent=5 runlength=2097152 seed=1)

die () { echo "demo: error: $*" >&2; exit 1; }

for t in nbdkit nbdinfo qemu-img; do
  command -v "$t" >/dev/null || die "$t not found (run scripts/deps.sh)"
done
[ -f "$ours" ] || die "$ours is missing: run make first"

stacks="none"
# --filter=cacheextents is nbdkit's own filter unless it lists our
# parameters (this filter installed by name: nbdkit >= 1.45.1, DIVERT=yes).
if help=$(nbdkit --filter=cacheextents null --help 2>/dev/null) &&
   ! grep -q '^cacheextents-window=' <<<"$help"; then
  stacks="$stacks bundled"
else
  echo "demo: nbdkit's bundled cacheextents filter is not installed; skipping it"
fi
stacks="$stacks ours"

tmp=$(mktemp -d /tmp/cacheextents-demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cache_args () {
  case $1 in
    none) ;;
    bundled) echo --filter=cacheextents ;;
    ours) echo "--filter=$ours" ;;
  esac
}

label () {
  case $1 in
    none) echo "no cache" ;;
    bundled) echo "nbdkit's cacheextents" ;;
    ours) echo "this project" ;;
  esac
}

# run STACK NAME CLIENT-COMMAND: one cold nbdkit; the client writes its
# map to $tmp/NAME.STACK.  Prints "seconds backend-extents-calls".
run () {
  local stack=$1 name=$2 cmd=$3 sf=$tmp/stats tf=$tmp/time
  rm -f "$sf" "$tf"
  # shellcheck disable=SC2046
  timeout --kill-after=10 900 \
    nbdkit -U - $(cache_args "$stack") --filter=stats --filter=delay \
      "${backend[@]}" delay-extents="${delay}ms" statsfile="$sf" \
      --run "t0=\$(date +%s.%N); $cmd > '$tmp/$name.$stack'; rc=\$?;
             t1=\$(date +%s.%N); echo \"\$t0 \$t1\" > '$tf'; exit \$rc" ||
    die "$name through stack '$stack' failed"
  if [ ! -s "$tf" ] || [ ! -f "$sf" ]; then
    die "$name through '$stack': no measurement"
  fi
  awk '{ printf "%.2f ", $2 - $1 }' "$tf"
  awk '/^extents:/ { n = $2 } END { print n + 0 }' "$sf"
}

echo "Backend: nbdkit [CACHE] --filter=stats --filter=delay ${backend[*]} \\"
echo "           delay-extents=${delay}ms"
echo "Each line is a fresh nbdkit, so every cache starts cold."
echo "\"calls\" are extents calls that reached the backend (the stats filter"
echo "sits below the cache).  The uncached qemu-img map takes a while..."
echo

declare -A res
for s in $stacks; do
  echo "  ... qemu-img map and nbdinfo --map through: $(label "$s")"
  res[$s.qemu]=$(run "$s" qemu 'qemu-img map --output=json "$uri"')
  res[$s.nbdinfo]=$(run "$s" nbdinfo 'nbdinfo --map "$uri"')
done
echo

printf '%-22s  %21s  %21s\n' "" "qemu-img map" "nbdinfo --map"
printf '%-22s  %10s %10s  %10s %10s\n' stack seconds calls seconds calls
for s in $stacks; do
  read -r qt qc <<< "${res[$s.qemu]}"
  read -r nt nc <<< "${res[$s.nbdinfo]}"
  printf '%-22s  %10s %10s  %10s %10s\n' "$(label "$s")" "$qt" "$qc" "$nt" "$nc"
done
echo

same=yes
for name in qemu nbdinfo; do
  for s in $stacks; do
    [ "$s" = none ] && continue
    if ! cmp -s "$tmp/$name.none" "$tmp/$name.$s"; then
      same=no
      echo "demo: MISMATCH: $name map through '$s' differs from no cache:" >&2
      diff -u "$tmp/$name.none" "$tmp/$name.$s" | head -n 40 >&2 || :
    fi
  done
done
n_q=$(wc -l < "$tmp/qemu.none")
n_n=$(wc -l < "$tmp/nbdinfo.none")
if [ "$same" = yes ]; then
  echo "Map outputs identical across all stacks: YES" \
       "(qemu-img map: $n_q lines, nbdinfo --map: $n_n lines each)"
else
  echo "Map outputs identical across all stacks: NO -- this is a bug" >&2
  exit 1
fi
