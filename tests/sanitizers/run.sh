#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Run tests with nbdkit under a sanitizer or a valgrind tool.
#
#   tests/sanitizers/run.sh MODE FILTER LOGROOT TEST...
#
# MODE is asan (FILTER built with -fsanitize=address,undefined; the
# runtimes are preloaded into nbdkit), memcheck, helgrind or drd
# (nbdkit under valgrind, with the suppressions in MODE.supp here), or
# tsan (only instrumented programs such as tests/tsan-harness.c;
# FILTER is then '-').  Each TEST (a shell test or a test program)
# runs through tests/run-tests.sh, so the output and the summary line
# are the usual ones, with FILTER as CACHEEXTENTS_FILTER and
# tests/sanitizers/bin first on PATH, so that every nbdkit the test
# starts is the wrapper there.  A test fails if it fails, or if any
# sanitizer or valgrind report was left in its log directory
# LOGROOT/NAME (see run-one.sh).
set -e
set -u

if [ $# -lt 4 ]; then
  echo "usage: $0 asan|memcheck|helgrind|drd|tsan FILTER LOGROOT TEST..." >&2
  exit 2
fi
mode=$1 filter=$2 logroot=$3
shift 3

san=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$san/../.." && pwd)
case $filter in /*|-) ;; *) filter=$PWD/$filter ;; esac
case $logroot in /*) ;; *) logroot=$PWD/$logroot ;; esac

export CE_SAN_MODE=$mode
export CACHEEXTENTS_FILTER=$filter
export PATH=$san/bin:$PATH
export CE_SAN_SUPP=$san
CE_SAN_REAL_NBDKIT=$(PATH=${PATH#"$san/bin:"} command -v nbdkit || true)
case $CE_SAN_REAL_NBDKIT:$mode in
  /*|*:tsan) ;;
  *) echo "$0: nbdkit not found" >&2; exit 2 ;;
esac
export CE_SAN_REAL_NBDKIT

case $mode in
  asan)
    # The runtimes first (ASan insists on being first in the initial
    # library list), then tests/sanitizers/asan-shim.c (see there).
    shim=$(dirname "$filter")/asan-shim.so
    CE_SAN_PRELOAD="$(${SAN_CC:-gcc} -print-file-name=libasan.so)"
    CE_SAN_PRELOAD+=" $(${SAN_CC:-gcc} -print-file-name=libubsan.so) $shim"
    for f in $CE_SAN_PRELOAD; do
      if [ ! -f "$f" ]; then
        echo "$0: $f not found" >&2
        exit 2
      fi
    done
    export CE_SAN_PRELOAD ;;
  memcheck)
    export CE_SAN_IDLE_WAIT=60
    export CE_SAN_VALGRIND_OPTS="--leak-check=full \
--errors-for-leak-kinds=definite --show-leak-kinds=definite \
--keep-debuginfo=yes --track-origins=yes --num-callers=30 \
--suppressions=$san/valgrind.supp" ;;
  tsan) ;;
  helgrind|drd)
    export CE_SAN_IDLE_WAIT=60
    export CE_SAN_VALGRIND_OPTS="--keep-debuginfo=yes --num-callers=30 \
--suppressions=$san/$mode.supp" ;;
  *)
    echo "$0: unknown mode '$mode'" >&2
    exit 2 ;;
esac
if [ "$mode" != asan ] && [ "$mode" != tsan ] &&
   ! command -v valgrind >/dev/null; then
  echo "$0: valgrind not found" >&2
  exit 2
fi

# tests/run-tests.sh runs each test by path and names it by its base
# name: give it one small script per test, named like the test, that
# runs it through run-one.sh.
rm -rf "$logroot"
mkdir -p "$logroot/wrappers"
wrapped=()
for t in "$@"; do
  case $t in /*) ;; *) t=$PWD/$t ;; esac
  w=$logroot/wrappers/$(basename "$t")
  printf '#!/bin/sh\nexec "%s" "%s" "%s"\n' "$san/run-one.sh" \
    "$logroot/$(basename "$t")" "$t" > "$w"
  chmod +x "$w"
  wrapped+=("$w")
done

cd "$top"
TEST_LOGDIR=${TEST_LOGDIR:-$logroot/test-logs} \
  tests/run-tests.sh "${wrapped[@]}"
