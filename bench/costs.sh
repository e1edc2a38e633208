#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# What a cache costs besides what it saves, side by side: no cache,
# nbdkit's bundled filter, this filter (and this filter with prefetch
# off where prefetch is the cost in question).  Called by bench.sh;
# prints a markdown section on stdout, progress on stderr, and appends
# rows to the CSV file given.
#
# Usage: bench/costs.sh CSV
#
#   write latency   sparse-random 4G runlength=4096 seed=2 (about 200,000
#                   extents): one block status, a 4 s pause, then 100 x
#                   (pread 4 KiB, pwrite it back): median pwrite latency
#   copy            file dir= with a 1 GiB file holding 8 MiB of data:
#                   nbdcopy and qemu-img convert -n -W to a second export:
#                   backend extents calls and time
#   connections     100 connections with private maps (multi-conn
#                   hidden) to sparse-random 128G, one block status each:
#                   backend calls, threads, nbdkit CPU seconds
#   idle            one block status of memory 1E, then idle: backend
#                   calls after 3 s and after 8 s
#   stuck call      memory 1G with a block status call held 8 s (delay
#                   filter) while another connection writes 512 bytes
#                   at a time, 64 in flight: writes done in 5 s
#
# Environment: BENCH_RUNS (runs of the write latency, median shown),
# BENCH_STACKS, BENCH_FILTER (this filter's .so).
set -eu -o pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
. "$top/tests/copy-exports.sh"
csv=${1:?usage: $0 CSV}
runs=${BENCH_RUNS:-3}
stacks=${BENCH_STACKS:-none bundled ours}
ours=${BENCH_FILTER:-$top/build/nbdkit-cacheextents-filter.so}
PYTHON=/usr/bin/python3

log () { printf '[costs %s] %s\n' "$(date +%T)" "$*" >&2; }

tmp=$(mktemp -d /tmp/cacheextents-costs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The stacks of this section: name and cache arguments.
declare -a names=()
declare -A args params
for s in $stacks; do
  case $s in
    none) names+=(none); args[none]= ;;
    bundled) have_bundled || continue
             names+=(bundled); args[bundled]=--filter=cacheextents ;;
    ours) names+=(ours "ours, prefetch off")
          args[ours]=--filter=$ours
          args["ours, prefetch off"]=--filter=$ours
          params["ours, prefetch off"]=cacheextents-prefetch=false ;;
  esac
done

# run STACK NBDKIT-ARGS...: nbdkit with the stack's cache in front
# (its parameters go last: nbdkit takes key=value anywhere after the
# plugin's name).
run () {
  local s=$1
  shift
  # shellcheck disable=SC2086
  timeout --kill-after=10 600 nbdkit -U - ${args[$s]} "$@" ${params[$s]:-}
}

calls () { grep -c ' Extents id=' "$1" || true; }

cat > "$tmp/lat.py" <<'PY'
import os, random, statistics, sys, time
import nbd
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_unix(os.environ["unixsocket"])
h.block_status(65536, 0, lambda *a: 0)
time.sleep(4)
rng = random.Random(7)
size = h.get_size()
lat = []
for i in range(100):
    off = rng.randrange(size // 4096) * 4096
    buf = h.pread(4096, off)
    t = time.perf_counter()
    h.pwrite(buf, off)
    lat.append(time.perf_counter() - t)
print("%.4f" % (statistics.median(lat) * 1000))
PY

cat > "$tmp/many.py" <<'PY'
import os, time
import nbd
hs = []
for i in range(100):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_unix(os.environ["unixsocket"])
    h.block_status(65536, i << 30, lambda *a: 0)
    hs.append(h)
pid = open(os.environ["tmp"] + "/pid").read().strip()
threads = len(os.listdir("/proc/%s/task" % pid))
time.sleep(1)
st = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
cpu = (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
print(threads, "%.2f" % cpu)
PY

cat > "$tmp/idle.py" <<'PY'
import os, time
import nbd
log = os.environ["log"]
def calls():
    return sum(1 for l in open(log) if " Extents id=" in l)
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_unix(os.environ["unixsocket"])
h.block_status(65536, 0, lambda *a: 0)
time.sleep(3)
a = calls()
time.sleep(5)
print(a, calls())
PY
cat > "$tmp/stuck.py" <<'PY'
import os, time
import nbd
def conn():
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_unix(os.environ["unixsocket"])
    return h
a, b = conn(), conn()
a.aio_block_status(1 << 20, 0, lambda *x: 0)
time.sleep(0.5)
buf = b"x" * 512
n, t0 = 0, time.time()
while time.time() - t0 < 5:
    for i in range(64):
        b.aio_pwrite(buf, ((n + i) * 4096) % (512 << 20))
    while b.aio_in_flight() > 0:
        b.poll(-1)
    n += 64
print(n)
PY
export tmp PYTHON log=$tmp/log

echo "section,stack,measure,value" >> "$csv"
declare -A out

log "write latency, $runs runs per stack"
for s in "${names[@]}"; do
  vals=()
  for ((i = 1; i <= runs; i++)); do
    v=$(run "$s" sparse-random 4G runlength=4096 seed=2 \
          --run "export unixsocket; $PYTHON $tmp/lat.py")
    vals+=("$v")
  done
  out["lat|$s"]=$(median "${vals[@]}")
  log "  $s: ${vals[*]} ms"
  echo "write-latency,$s,median_pwrite_ms,${out["lat|$s"]}" >> "$csv"
done

log "copy between two exports"
copy_fixture "$tmp/dir"
for tool in nbdcopy convert; do
  for s in "${names[@]}"; do
    rm -f "$tmp/log" "$tmp/dir/b"
    truncate -s 1G "$tmp/dir/b"
    t0=$(date +%s.%N)
    run "$s" --filter=log file dir="$tmp/dir" logfile="$tmp/log" \
      --run "$(copy_client "$tool")"
    t1=$(date +%s.%N)
    cmp "$tmp/dir/a" "$tmp/dir/b"
    out["copy-$tool|$s"]="$(calls "$tmp/log") $(awk -v a="$t0" -v b="$t1" \
      'BEGIN { printf "%.2f", b - a }')"
    log "  $tool $s: ${out["copy-$tool|$s"]} (calls, s)"
    read -r c t <<< "${out["copy-$tool|$s"]}"
    echo "copy-$tool,$s,backend_calls,$c" >> "$csv"
    echo "copy-$tool,$s,seconds,$t" >> "$csv"
  done
done

log "100 private connections"
for s in "${names[@]}"; do
  rm -f "$tmp/log" "$tmp/pid"
  r=$(run "$s" -P "$tmp/pid" --filter=multi-conn --filter=log \
        sparse-random 128G multi-conn-mode=disable logfile="$tmp/log" \
        --run "export unixsocket; $PYTHON $tmp/many.py")
  out["many|$s"]="$(calls "$tmp/log") $r"
  log "  $s: ${out["many|$s"]} (calls, threads, cpu s)"
  read -r c th cpu <<< "${out["many|$s"]}"
  echo "connections,$s,backend_calls,$c" >> "$csv"
  echo "connections,$s,threads,$th" >> "$csv"
  echo "connections,$s,cpu_s,$cpu" >> "$csv"
done

log "idle client"
for s in "${names[@]}"; do
  rm -f "$tmp/log"
  r=$(run "$s" --filter=log memory 1E logfile="$tmp/log" \
        --run "export unixsocket log; $PYTHON $tmp/idle.py")
  out["idle|$s"]=$r
  log "  $s: $r (calls after 3 s, after 8 s)"
  read -r a b <<< "$r"
  echo "idle,$s,calls_after_3s,$a" >> "$csv"
  echo "idle,$s,calls_after_8s,$b" >> "$csv"
done

log "writes while a block status call is stuck"
for s in "${names[@]}"; do
  out["stuck|$s"]=$(run "$s" --filter=delay memory 1G delay-extents=8 \
                      --run "export unixsocket; $PYTHON $tmp/stuck.py")
  log "  $s: ${out["stuck|$s"]} writes in 5 s"
  echo "stuck-call,$s,writes_in_5s,${out["stuck|$s"]}" >> "$csv"
done

# ---- The section -------------------------------------------------------

echo "## Costs"
echo
echo "What each stack costs writes, copies between exports, many"
echo "connections and idle clients (\`bench/costs.sh\`); backend calls are"
echo "counted by \`--filter=log\` below the cache."
echo
printf '| measure |'
for s in "${names[@]}"; do printf ' %s |' "$s"; done
printf '\n|---|'
for s in "${names[@]}"; do printf -- '--:|'; done
echo
printf '| pwrite latency, median ms (sparse-random 4G runlength=4096, %s runs) |' "$runs"
for s in "${names[@]}"; do printf ' %s |' "${out["lat|$s"]}"; done
echo
for tool in nbdcopy convert; do
  printf '| copy a to b, %s: backend calls, s |' \
    "$([ $tool = nbdcopy ] && echo nbdcopy || echo 'qemu-img convert -n -W')"
  for s in "${names[@]}"; do
    read -r c t <<< "${out["copy-$tool|$s"]}"
    printf ' %s, %s s |' "$c" "$t"
  done
  echo
done
printf '| 100 private connections: backend calls, threads, nbdkit CPU s |'
for s in "${names[@]}"; do
  read -r c th cpu <<< "${out["many|$s"]}"
  printf ' %s, %s, %s s |' "$c" "$th" "$cpu"
done
echo
printf '| idle after one block status of memory 1E: calls after 3 s / 8 s |'
for s in "${names[@]}"; do
  read -r a b <<< "${out["idle|$s"]}"
  printf ' %s / %s |' "$a" "$b"
done
echo
printf '| 512-byte writes in 5 s while a block status call is stuck |'
for s in "${names[@]}"; do printf ' %s |' "${out["stuck|$s"]}"; done
echo
