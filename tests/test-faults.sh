#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Faults below the cache: the error filter between the filter and the
# backend fails 20% of block status, pwrite, trim and zero calls (and
# 10% of reads) with EIO while a stress client (tests/stress.py
# --faults) runs several connections against it.  Asserted:
#
#  - every failed request fails with the injected errno, nothing else
#    (EIO; ENOSPC for pwrite and zero in the second variant: the errno
#    reaches the client unchanged), and each kind of request did fail;
#  - every successful block status answer that no write overlapped is
#    exactly the backend's (queried directly, see stress.py), so
#    nothing of a failed call was served;
#  - service continues: after the run the error file is removed, and
#    a walk of the whole disk plus random requests all succeed and are
#    exact, so nothing of a failed call (extents or write) was stored.
#
# Two variants: memory with prefetch and a small window (many backend
# calls, prefetch failures and single-flight waiters whose call
# failed), and a file on tmpfs without prefetch.
if [ -z "${TMPDIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] &&
   [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin memory
requires_nbdkit_plugin file
requires_nbdkit_plugin nbd
requires_nbdkit_filter error
requires_nbdkit_filter delay

seed=${STRESS_SEED:-$(( (RANDOM << 15 | RANDOM) ))}
ops=${FAULTS_OPS:-8000}
secs=${FAULTS_TIME:-15}
# The allocation unit of files in $tmp (4K on tmpfs with small pages):
# the data extent that a one-byte write makes in a sparse file.
file_unit=$("$PYTHON" - "$tmp/unit-probe" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
os.ftruncate(fd, 64 << 20)
os.pwrite(fd, b"x", (32 << 20) + 1)
a = os.lseek(fd, 0, os.SEEK_DATA)
print(max(4096, os.lseek(fd, a, os.SEEK_HOLE) - a))
os.close(fd)
os.unlink(sys.argv[1])
PY
)
echo "faults: base seed $seed, file allocation unit $file_unit"
n=0

# variant LABEL BACKEND PREFETCH STRESS-ARGS FRONT-PARAMS...
variant ()
{
  local label=$1 backend=$2 prefetch=$3 args=() back gran nhz=1
  read -r -a args <<<"$4"
  shift 4
  n=$((n + 1))
  local vseed=$((seed + n)) sock=$tmp/back-$n.sock inject=$tmp/inject-$n
  case $backend in
    memory) back=(memory 16M); gran=32768 ;;
    file)
      truncate -s 16M "$tmp/disk-$n"
      back=(file "$tmp/disk-$n"); gran=$file_unit
      [ "$(stat -f -c %T "$tmp")" = tmpfs ] || nhz=0 ;;
  esac
  touch "$inject"
  {
    printf 'exec nbdkit -U - --filter=%q --filter=error --filter=delay' \
      "$FILTER"
    printf ' nbd socket=%q' "$sock"
    printf ' %q' cacheextents-prefetch="$prefetch" error=EIO \
      error-file="$inject" error-extents-rate=20% error-pwrite-rate=20% \
      error-trim-rate=20% error-zero-rate=20% error-pread-rate=10% "$@"
    printf ' --run %q\n' "$py $(printf '%q ' "$top/tests/stress.py" \
      --back "$sock" --seed "$vseed" --ops "$ops" --time-limit "$secs" \
      --threads 4 --backend "$backend" --gran "$gran" \
      --prefetch "$prefetch" --no-hole-zero "$nhz" --label "$label" \
      --faults --inject-file "$inject" ${args[@]+"${args[@]}"})"
  } > "$tmp/front-$n.sh"
  echo "== $label (seed $vseed)"
  if ! timeout $((secs * 3 + 120)) nbdkit -U "$sock" "${back[@]}" \
         --run "bash $tmp/front-$n.sh" > "$tmp/out-$n" 2>&1; then
    grep -v 'injecting EIO error' "$tmp/out-$n" | tail -n 60
    echo "FAIL: variant $label (seed $vseed)"
    exit 1
  fi
  grep '^stress:' "$tmp/out-$n" | grep -v '^stress: seed='
  # Each kind of request failed at least once.
  local kind
  for kind in block-status pwrite trim zero; do
    if ! grep -q "^stress: errors by kind:.* $kind=[1-9]" "$tmp/out-$n" &&
       ! grep -q "^stress: errors by kind: $kind=[1-9]" "$tmp/out-$n"; then
      echo "FAIL: $label: no $kind request failed: the faults did not happen"
      exit 1
    fi
  done
  grep -q '^stress: errors switched off' "$tmp/out-$n"
  echo "ok: $label: errors had the injected errno, answers exact, exact after recovery"
}

variant mem-pf-faults    memory true  "" \
  cacheextents-window=256K delay-extents=1ms delay-write=1ms
# Writes fail with ENOSPC here (set after error=EIO, so it wins).
variant file-nopf-faults file  false \
  "--fault-errno pwrite=ENOSPC --fault-errno zero=ENOSPC" \
  error-pwrite=ENOSPC error-zero=ENOSPC delay-extents=1ms delay-write=2ms
