#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Side-by-side benchmark: no cache, nbdkit's bundled cacheextents filter,
# and this project's filter (with default parameters), under the same
# clients and the same slow backend.
#
# Usage: bench/bench.sh full|quick|cdi
#
#   full   sparse-random 64G, extents delay 0, 20 and 100 ms, and the
#          sections below -> bench/results/results.{md,csv,png}
#   quick  sparse-random 16G, extents delay 20 ms
#          -> bench/results/quick.{md,csv,png}
#   cdi    only the section of KubeVirt CDI's stack (bench/cdi.sh), on
#          Debian's nbdkit and each of $NBDKIT_VERSIONS
#          -> bench/results/cdi.{md,csv}
#
# Each run is a fresh nbdkit started with --run, so every run starts cold
# and no server outlives the script.  The stack is
#
#   nbdkit -U - [CACHE] --filter=stats --filter=delay PLUGIN ...
#
# so the stats filter counts the extents calls that get *past* the cache.
# A cell (client, stack, delay) whose first run takes longer than
# BENCH_SLOW_SECS is run once only and marked so in the results.
#
# Environment (mostly for testing the script itself):
#   BENCH_RUNS=3          runs per cell; the median is reported
#   BENCH_RUNS0=5         runs per cell with no delay
#   BENCH_SLOW_SECS=60    first run slower than this: run the cell once
#   BENCH_TIMEOUT=1500    seconds before a single run is killed
#   BENCH_SIZE            sparse-random size (full: 64G, quick: 16G)
#   BENCH_DELAYS          extents delays in ms (full: "0 20 100", quick: 20)
#   BENCH_STACKS          subset of "none bundled ours"
#   BENCH_CLIENTS         subset of "qemu-img-map nbdinfo-map nbdcopy
#                         qemu-img-convert"
#   BENCH_FAST=1          0 skips the fast-backend section
#   BENCH_FAST_SIZE=16G   sparse-random size in the fast-backend section
#   BENCH_OUTDIR          where results go (default bench/results)
#   BENCH_NAME            results file stem (full: results, quick: quick)
#   BENCH_COSTS=1         0 skips the costs section (bench/costs.sh)
#   BENCH_SERIAL          1 runs the serialized-backend section
#                         (bench/serial.sh) on Debian's nbdkit and on
#                         the last of $NBDKIT_VERSIONS (default 1.45.2,
#                         built by make bench); default 1 in full mode, 0
#                         in quick
#   BENCH_CDI             1 runs CDI's stack (bench/cdi.sh) on Debian's
#                         nbdkit and each of $NBDKIT_VERSIONS (default
#                         "1.38.5 1.44.1 1.45.2"); default 1 in full mode
#   BENCH_LANDED_REV      the revision measured as "landed" there

# The client commands are run by nbdkit's --run shell, which sets $uri.
# shellcheck disable=SC2016
set -eu -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
mode=${1:-}
case $mode in
  full)  def_name=results; def_size=64G; def_delays="0 20 100" ;;
  quick) def_name=quick;   def_size=16G; def_delays=20 ;;
  cdi)   def_name=cdi;     def_size=16G; def_delays= ;;
  *) echo "usage: $0 full|quick|cdi" >&2; exit 2 ;;
esac

runs=${BENCH_RUNS:-3}
# Cells with no delay are short and noisy: more runs.
runs0=${BENCH_RUNS0:-5}
slow=${BENCH_SLOW_SECS:-60}
tmo=${BENCH_TIMEOUT:-1500}
size=${BENCH_SIZE:-$def_size}
delays=${BENCH_DELAYS:-$def_delays}
stacks=${BENCH_STACKS:-none bundled ours}
clients=${BENCH_CLIENTS:-qemu-img-map nbdinfo-map nbdcopy qemu-img-convert}
fast=${BENCH_FAST:-1}
costs=${BENCH_COSTS:-1}
serial=${BENCH_SERIAL:-$([ "$mode" = full ] && echo 1 || echo 0)}
versions=${NBDKIT_VERSIONS-1.38.5 1.44.1 1.45.2}
next_version=${versions##* }
cdi=${BENCH_CDI:-$([ "$mode" = quick ] && echo 0 || echo 1)}
landed_rev=${BENCH_LANDED_REV:-4e51631}
fast_size=${BENCH_FAST_SIZE:-16G}
outdir=${BENCH_OUTDIR:-$top/bench/results}
name=${BENCH_NAME:-$def_name}
ours=$top/build/nbdkit-cacheextents-filter.so
sparse=(sparse-random percent=5 runlength=2097152 seed=1)

log () { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die () { log "error: $*"; exit 1; }

"$top/scripts/deps.sh" gnuplot-nox
for t in nbdkit nbdinfo nbdcopy qemu-img gnuplot timeout awk flock; do
  command -v "$t" >/dev/null || die "$t not found"
done

# Two benchmarks at once would spoil each other's numbers.
exec 9> /tmp/cacheextents-bench.lock
flock -n 9 || die "another bench/bench.sh is running (lock /tmp/cacheextents-bench.lock)"

# The revision measured, before this script writes its results (which
# are tracked files) into the tree.
rev=$(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)

tmp=$(mktemp -d /tmp/cacheextents-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$outdir"
csv=$outdir/$name.csv
md=$outdir/$name.md
png=$outdir/$name.png

# Which stacks can run here.  A missing one is reported, not fatal, so
# that the script can be exercised before the filter is built.
declare -A avail
for s in $stacks; do
  case $s in
    none) avail[$s]=yes ;;
    bundled)
      # Not this filter installed under the name (it lists our keys).
      if have_bundled
      then avail[$s]=yes
      else avail[$s]=no; log "nbdkit's bundled cacheextents filter is missing"
      fi ;;
    ours)
      if [ -f "$ours" ]; then avail[$s]=yes
      else avail[$s]=no; log "$ours not built (run make): skipping"
      fi ;;
    *) die "unknown stack '$s'" ;;
  esac
done

cache_args () {
  case $1 in
    none) ;;
    bundled) echo --filter=cacheextents ;;
    ours) echo "--filter=$ours" ;;
  esac
}

# The client commands, as run by nbdkit's --run shell where $uri is set.
client_cmd () {
  case $1 in
    qemu-img-map) echo 'qemu-img map --output=json "$uri" >/dev/null' ;;
    nbdinfo-map) echo 'nbdinfo --map "$uri" >/dev/null' ;;
    nbdcopy) echo 'nbdcopy "$uri" null:' ;;
    # --target-is-zero: into a null-co target it must zero, convert is
    # bound by memset and page faults here, not by block status.
    qemu-img-convert)
      echo 'qemu-img convert -n --target-is-zero -f raw "$uri" -O raw' \
           "'json:{\"file.driver\":\"null-co\",\"file.size\":\"1E\"}'" ;;
    *) die "unknown client '$1'" ;;
  esac
}

# run_once STACK CLIENT BACKEND-ARGS...
# One cold run.  Sets rt (seconds of client wall time), ot (seconds of
# the whole nbdkit process: startup, client, shutdown) and ext (backend
# extents calls); returns non-zero if the client or nbdkit failed.
run_once () {
  local stack=$1 client=$2 sf=$tmp/stats tf=$tmp/time lf=$tmp/log rc=0
  shift 2
  rm -f "$sf" "$tf"
  local o0 o1 script cmd
  cmd=$(client_cmd "$client")
  script="t0=\$(date +%s.%N); $cmd; rc=\$?;
t1=\$(date +%s.%N); echo \"\$t0 \$t1 \$rc\" > '$tf'; exit \$rc"
  o0=$(date +%s.%N)
  # shellcheck disable=SC2046
  timeout --kill-after=10 "$tmo" \
    nbdkit -U - $(cache_args "$stack") --filter=stats "$@" \
      statsfile="$sf" --run "$script" >"$lf" 2>&1 || rc=$?
  o1=$(date +%s.%N)
  if [ "$rc" -ne 0 ] || [ ! -s "$tf" ] || [ ! -f "$sf" ]; then
    [ "$rc" -eq 124 ] && log "timed out after $tmo s"
    log "run failed (status $rc); last lines of its output:"
    tail -n 20 "$lf" >&2
    return 1
  fi
  rt=$(awk '{ printf "%.3f", $2 - $1 }' "$tf")
  ot=$(awk -v a="$o0" -v b="$o1" 'BEGIN { printf "%.3f", b - a }')
  ext=$(awk '/^extents:/ { n = $2 } END { print n + 0 }' "$sf")
}

echo "section,backend,client,delay_ms,stack,runs,median_s,min_s,max_s,extents_median,extents_min,extents_max,nbdkit_median_s,status" > "$csv"
declare -A res      # "section|backend|client|delay|stack" -> "median ext runs status"
failed=0

# cell SECTION BACKEND-LABEL CLIENT DELAY STACK BACKEND-ARGS...
cell () {
  local section=$1 backend=$2 client=$3 delay=$4 stack=$5 i status=ok
  local -a times=() exts=() outs=()
  shift 5
  local key="$section|$backend|$client|$delay|$stack"
  if [ "${avail[$stack]}" != yes ]; then
    res[$key]="- - 0 n/a"
    echo "$section,$backend,$client,$delay,$stack,0,,,,,,,,n/a" >> "$csv"
    return 0
  fi
  local n=$runs
  [ "$delay" = 0 ] && n=$runs0
  for ((i = 1; i <= n; i++)); do
    if ! run_once "$stack" "$client" "$@"; then
      status=failed; failed=1; break
    fi
    times+=("$rt"); exts+=("$ext"); outs+=("$ot")
    log "$section $backend $client delay=${delay}ms $stack run $i/$n:" \
        "$rt s ($ot s with nbdkit start and exit), $ext backend extents calls"
    if [ "$i" -eq 1 ] && [ "$n" -gt 1 ] &&
       awk -v t="$rt" -v s="$slow" 'BEGIN { exit !(t > s) }'; then
      status=slow
      log "  first run over $slow s: this cell is run once"
      break
    fi
  done
  if [ "${#times[@]}" -eq 0 ]; then
    res[$key]="- - 0 $status"
    echo "$section,$backend,$client,$delay,$stack,0,,,,,,,,$status" >> "$csv"
    return 0
  fi
  local t e o
  t=$(stats "${times[@]}"); e=$(stats "${exts[@]}"); o=$(stats "${outs[@]}")
  # shellcheck disable=SC2086
  set -- $t $e $o
  res[$key]="$1 $4 ${#times[@]} $status"
  echo "$section,$backend,$client,$delay,$stack,${#times[@]},$1,$2,$3,$4,$5,$6,$7,$status" >> "$csv"
}

started=$(date +%s)
start_iso=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "mode $mode: sparse-random $size, delays '$delays' ms, stacks '$stacks'," \
    "$runs runs per cell (once if the first run is over $slow s)"

# Section 5, run here because the cdi mode runs it alone: KubeVirt
# CDI's stack (bench/cdi.sh) on Debian's nbdkit, with no cache there
# only (retry alone passes every call down on every nbdkit alike), and
# on each of $versions.  cdi_section CSV MD: the rows into MD.
cdi_section () {
  local v p so
  echo "section,nbdkit,case,client,stack,runs,median_s,extents_median" > "$1"
  BENCH_RUNS=$runs BENCH_CDI_NONE=1 "$top/bench/cdi.sh" "$1" \
    "nbdkit $(nbdkit --version | awk '{ print $2; exit }')" "$ours" > "$2" ||
    return 1
  for v in $versions; do
    p=$top/build/nbdkit-$v/prefix
    so=$top/build-$v/nbdkit-cacheextents-filter.so
    if [ -x "$p/sbin/nbdkit" ] && [ -f "$so" ]; then
      PATH=$p/sbin:$PATH BENCH_RUNS=$runs BENCH_CDI_NONE=0 \
        "$top/bench/cdi.sh" "$1" "nbdkit $v" "$so" >> "$2" || return 1
    else
      log "nbdkit $v or its filter not built: run make bench (it builds them)"
    fi
  done
}

# cdi_md MD: the section's heading, text and table.
cdi_md () {
  echo "## KubeVirt CDI's stack"
  echo
  echo "\`bench/cdi.sh\`: \`nbdkit --readonly STACK --filter=stats nbd\` in" \
       "front of \`nbdkit [--filter=noparallel] --filter=delay sparse-random" \
       "SIZE [serialize=requests] delay-extents=100ms\` (serial: one request" \
       "at a time per connection, as VDDK; parallel: not). Stacks: none" \
       "\`--filter=retry\`; bundled \`--filter=retry --filter=cacheextents\`" \
       "(CDI's command line today, where nbdkit has the filter); CDI order" \
       "\`--filter=retry --filter=OURS\`; recommended \`--filter=OURS" \
       "--filter=retry-request\`. Clients: \`qemu-img map\`, and" \
       "\`tests/cdi-client.py --read head\` (REQ_ONE block status over 2 GiB" \
       "windows in order, as CDI's importer, reading 4 KiB of each data" \
       "extent). No cache is run on Debian's nbdkit only, and not for the" \
       "256G map (about 20 minutes). Median of $runs runs; † one run (over" \
       "$slow s)."
  echo
  echo "| nbdkit | backend | client | none | bundled | CDI order | recommended | CDI/recommended | bundled/CDI | none/CDI |"
  echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"
  cat "$1"
}

if [ "$mode" = cdi ]; then
  cdi_section "$csv" "$tmp/cdi.md" || failed=1
  { echo "# cacheextents benchmark (cdi)"
    echo
    echo "- date: $start_iso; took $(( $(date +%s) - started )) s;" \
         "load average at start: $load_start, at end:" \
         "$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- project revision: $rev"
    echo
    cdi_md "$tmp/cdi.md"
  } > "$md"
  log "wrote $md and $csv"
  exit "$failed"
fi

# Section 1: a slow backend.
for d in $delays; do
  for c in $clients; do
    for s in $stacks; do
      cell slow "sparse-random $size" "$c" "$d" "$s" \
        --filter=delay "${sparse[@]}" size="$size" delay-extents="${d}ms"
    done
  done
done

# Section 2: fast backends, no delay filter.
fast_rows=()
if [ "$fast" = 1 ]; then
  for c in nbdcopy qemu-img-map; do
    for s in $stacks; do
      cell fast "empty memory 100G" "$c" 0 "$s" memory size=100G
    done
    fast_rows+=("empty memory 100G|$c")
  done
  for s in $stacks; do
    cell fast "sparse-random $fast_size" nbdcopy 0 "$s" \
      "${sparse[@]}" size="$fast_size"
  done
  fast_rows+=("sparse-random $fast_size|nbdcopy")
fi
# Section 3: what the caches cost (bench/costs.sh).
if [ "$costs" = 1 ]; then
  log "costs section"
  rm -f "$outdir/$name-costs.csv"
  BENCH_RUNS=$runs BENCH_STACKS="$stacks" BENCH_FILTER="$ours" \
    "$top/bench/costs.sh" "$outdir/$name-costs.csv" > "$tmp/costs.md" ||
    { log "costs section failed"; failed=1; }
fi

# Section 4: a backend that serializes requests, on each nbdkit, with
# the filter of the last landed revision beside this one.
# build_landed NAME [NBDKIT-PREFIX]: the landed revision's filter,
# built against Debian's nbdkit or the one under NBDKIT-PREFIX (that
# revision's Makefile did not find its headers: they are passed here).
build_landed () {
  local d=$tmp/landed-$1 p=${2:-}
  mkdir -p "$d"
  git -C "$top" archive "$landed_rev" | tar -x -C "$d" &&
    env -u MAKEFLAGS -u MAKELEVEL \
      PKG_CONFIG_PATH="${p:+$p/lib/pkgconfig}" \
      make -C "$d" EXTRA_CFLAGS="${p:+-isystem $p/include}" >"$d.log" 2>&1 &&
    echo "$d/build/nbdkit-cacheextents-filter.so"
}
if [ "$serial" = 1 ]; then
  rm -f "$outdir/$name-serial.csv"
  echo "section,nbdkit,size,stack,runs,median_s,extents_median," \
    > "$outdir/$name-serial.csv"
  sys_label="nbdkit $(nbdkit --version | awk '{ print $2; exit }')"
  landed_so=$(build_landed sys) || log "landed revision does not build"
  BENCH_LANDED=$landed_so "$top/bench/serial.sh" \
    "$outdir/$name-serial.csv" "$sys_label" "$ours" > "$tmp/serial.md" ||
    { log "serialized section failed"; failed=1; }
  next_so=$top/build-$next_version/nbdkit-cacheextents-filter.so
  next_prefix=$top/build/nbdkit-$next_version/prefix
  if [ -x "$next_prefix/sbin/nbdkit" ] && [ -f "$next_so" ]; then
    landed_so=$(build_landed next "$next_prefix") ||
      log "landed revision does not build on nbdkit $next_version"
    PATH=$next_prefix/sbin:$PATH BENCH_LANDED=$landed_so \
      "$top/bench/serial.sh" "$outdir/$name-serial.csv" \
      "nbdkit $next_version" "$next_so" >> "$tmp/serial.md" ||
      { log "serialized section failed"; failed=1; }
  else
    log "nbdkit $next_version or its filter not built: run make bench" \
        "(it builds them)"
  fi
fi

if [ "$cdi" = 1 ]; then
  log "CDI section"
  cdi_section "$outdir/$name-cdi.csv" "$tmp/cdi.md" ||
    { log "CDI section failed"; failed=1; }
fi

elapsed=$(( $(date +%s) - started ))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- Results -------------------------------------------------------------

fmt_s () {
  awk -v t="$1" 'BEGIN { if (t < 1) printf "%.3f", t
                         else if (t < 100) printf "%.2f", t
                         else printf "%.1f", t }'
}

# One table cell pair "time | calls" for KEY.
md_pair () {
  local median ext status
  read -r median ext _ status <<< "${res[$1]}"
  case $status in
    n/a) printf ' n/a | n/a |' ;;
    failed) printf ' **failed** | - |' ;;
    slow) printf ' %s † | %s |' "$(fmt_s "$median")" "$ext" ;;
    *) printf ' %s | %s |' "$(fmt_s "$median")" "$ext" ;;
  esac
}

speedup () {
  local a b
  read -r a _ <<< "${res[$1]}"
  read -r b _ <<< "${res[$2]}"
  case "$a$b" in *-*) printf ' - |'; return ;; esac
  awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf " %.1f× |", a / b
                                   else printf " - |" }'
}

header () {
  local s
  printf '| %s |' "$1"
  for s in $stacks; do printf ' %s s | %s calls |' "$s" "$s"; done
  case " $stacks " in *" none "*" ours "*) printf ' ours vs none |' ;; esac
  printf '\n|%s' "$(printf -- '---|%.0s' $(seq $(( $2 ))))"
  for s in $stacks; do printf -- '--:|--:|'; done
  case " $stacks " in *" none "*" ours "*) printf -- '--:|' ;; esac
  echo
}

row () {  # row KEY-PREFIX
  local s
  for s in $stacks; do md_pair "$1|$s"; done
  case " $stacks " in *" none "*" ours "*) speedup "$1|none" "$1|ours" ;; esac
  echo
}

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
{
  echo "# cacheextents benchmark ($mode)"
  echo
  echo "- date: $start_iso; whole benchmark took $elapsed s"
  echo "- machine: $cpu, $(nproc) cores, $mem RAM;" \
       "Debian $(cat /etc/debian_version 2>/dev/null || echo '?');" \
       "kernel $(uname -r)"
  echo "- load average (1, 5, 15 min) at start: $load_start; at end:" \
       "$load_end (other work on the machine makes times noisy)"
  echo "- $(nbdkit --version | head -n1); libnbd $(nbdinfo --version |
         awk '/^libnbd/ { print $2 }'); $(qemu-img --version | head -n1)"
  echo "- project revision: $rev"
  echo "- runs per cell: $runs ($runs0 with no delay; the median is shown)," \
       "except cells marked †"
  echo "- stacks: none (no cache); bundled (\`--filter=cacheextents\`," \
       "nbdkit's own); ours (\`build/nbdkit-cacheextents-filter.so\`," \
       "default parameters)"
  echo "- \"calls\" is the number of extents calls that reached the backend," \
       "counted by \`--filter=stats\` placed below the cache"
  echo
  echo "## Slow backend"
  echo
  echo "\`nbdkit -U - [CACHE] --filter=stats --filter=delay ${sparse[*]}" \
       "size=$size delay-extents=Nms\`; each run is a fresh, cold nbdkit." \
       "Times are client wall-clock seconds, measured inside \`--run\`;" \
       "$(basename "$csv") also has the whole nbdkit process time" \
       "(nbdkit_median_s: startup, client, shutdown)."
  echo
  header "client | delay" 2
  for d in $delays; do
    for c in $clients; do
      printf '| %s | %s ms |' "$c" "$d"
      row "slow|sparse-random $size|$c|$d"
    done
  done
  if [ "$fast" = 1 ]; then
    echo
    echo "## Fast backends (no delay filter)"
    echo
    header "backend | client" 2
    for r in "${fast_rows[@]}"; do
      printf '| %s | %s |' "${r%%|*}" "${r#*|}"
      row "fast|$r|0"
    done
  fi
  if [ "$costs" = 1 ] && [ -s "$tmp/costs.md" ]; then
    echo
    cat "$tmp/costs.md"
  fi
  if [ "$serial" = 1 ] && [ -s "$tmp/serial.md" ]; then
    echo
    echo "## A backend that serializes requests (VDDK-like)"
    echo
    echo "\`bench/serial.sh\`: qemu-img map through \`nbdkit [CACHE]" \
         "--filter=stats nbd\` in front of \`nbdkit --filter=noparallel" \
         "--filter=delay sparse-random SIZE serialize=requests" \
         "delay-extents=100ms\`, on each nbdkit; \"landed\" is this filter" \
         "at revision $landed_rev (the engine before this one); no cache" \
         "at 256G is not run (about 20 minutes)."
    echo
    echo "| nbdkit | size | none | bundled | landed | ours |"
    echo "|---|---|--:|--:|--:|--:|"
    cat "$tmp/serial.md"
  fi
  if [ "$cdi" = 1 ] && [ -s "$tmp/cdi.md" ]; then
    echo
    cdi_md "$tmp/cdi.md"
  fi
  echo
  if printf '%s\n' "${res[@]}" | grep -q ' slow$'; then
    echo "† The first run took longer than $slow s, so this cell was run" \
         "**once only** (1 run, no median)."
  else
    echo "No cell needed the one-run rule (first run over $slow s)."
  fi
  [ "$failed" = 0 ] ||
    echo "**failed**: a run failed or timed out (limit $tmo s); see the log."
  echo
  echo "Clients: \`qemu-img map --output=json\`, \`nbdinfo --map\`," \
       "\`nbdcopy URI null:\`, and \`qemu-img convert -n --target-is-zero -f raw URI -O raw\`" \
       "into a 1E \`null-co\` target."
  echo
  echo "Plot: $(basename "$png") (log scale)."
} > "$md"
log "wrote $md and $csv"

# ---- Plot ----------------------------------------------------------------

# Only stacks that could run get a bar: gnuplot refuses a column that
# has no valid point at all.
dat=$tmp/plot.dat
titles=
pstacks='' colors=
for s in $stacks; do
  if [ "${avail[$s]}" = yes ]; then
    pstacks="$pstacks $s"
    case $s in
      none) colors="$colors #8c8c8c" ;;
      bundled) colors="$colors #e69f00" ;;
      ours) colors="$colors #0072b2" ;;
    esac
  fi
done
plot_val () {
  local median
  read -r median _ <<< "${res[$1]}"
  [ "$median" = - ] && median=NaN
  printf ' %s' "$median"
}
{
  for d in $delays; do
    echo "client$pstacks"
    for c in $clients; do
      printf '%s' "$c"
      for s in $pstacks; do plot_val "slow|sparse-random $size|$c|$d|$s"; done
      echo
    done
    printf '\n\n'
    titles="$titles \"sparse-random $size, extents delay $d ms\""
  done
  if [ "$fast" = 1 ]; then
    echo "client$pstacks"
    for r in "${fast_rows[@]}"; do
      case ${r%%|*} in *memory*) b=mem100G ;; *) b=sparse$fast_size ;; esac
      printf '%s' "$b:${r#*|}"
      for s in $pstacks; do plot_val "fast|$r|0|$s"; done
      echo
    done
    printf '\n\n'
    titles="$titles \"fast backends, no delay\""
  fi
} > "$dat"
npanels=$(echo "$delays" | wc -w)
[ "$fast" = 1 ] && npanels=$((npanels + 1))
term=png
gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo && term=pngcairo
# One y axis for all panels, from 0.01 s to the next power of ten.
ymax=$(awk 'NR > 1 && $7 != "" && $7 > m { m = $7 }
            END { y = 1; while (y < m) y *= 10; print y }' FS=, "$csv")
if gnuplot -e "datafile='$dat'; outfile='$png'; term='$term'; ymax=$ymax;
      npanels=$npanels; nstacks=$(echo "$pstacks" | wc -w); titles='$titles';
      colors='$colors';
      heading='cacheextents benchmark ($mode): median of $runs runs, $runs0 with no delay (a cell whose first run took over $slow s: 1 run)'" \
    "$top/bench/plot.gp"
then log "wrote $png"
else log "warning: gnuplot failed, no plot"; failed=1
fi
log "done in $elapsed s"
exit "$failed"
