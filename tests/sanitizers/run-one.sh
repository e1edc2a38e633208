#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# run-one.sh LOGDIR TEST: run one test with the sanitizer environment
# of run.sh (CE_SAN_MODE etc.), then fail if any report was written.
#
# The exit status of nbdkit's server does not reach the test: with
# --run, nbdkit forks, the server runs in the child and the parent's
# status is the command's.  A report made while the server shuts down
# (a leak, a use after free in .close or .unload) would go unseen.  So
# every sanitizer and valgrind report goes to a file in LOGDIR and any
# report there fails the test, whatever the test's own result.  Reports
# that name our code (the filter's .so or src/) are marked as ours.
# The one exception is a LeakSanitizer log holding nothing but leaks
# proven to be nbdkit's own (nbdkit-leaks.awk); valgrind's exceptions
# are its suppression files (MODE.supp).
set -u
logdir=$1 t=$2
rm -rf "$logdir"
mkdir -p "$logdir"
export CE_SAN_LOGDIR=$logdir

# Options common to ASan and UBSan (the sanitizer_common ones) and
# specific to each.  LeakSanitizer runs inside ASan at exit;
# fast_unwind_on_malloc=0 gives complete allocation stacks through
# nbdkit's code, which has no frame pointers (nbdkit-leaks.awk
# needs them).
common="log_path=$logdir/MARK:abort_on_error=1:halt_on_error=1:\
disable_coredump=1:print_suppressions=0"
export ASAN_OPTIONS="${common/MARK/asan}:detect_leaks=1:\
fast_unwind_on_malloc=0:detect_stack_use_after_return=1:\
strict_string_checks=1:exitcode=86"
export UBSAN_OPTIONS="${common/MARK/ubsan}:print_stacktrace=1:\
report_error_type=1"
# TSan goes on after a report, to show them all; any report fails.
export TSAN_OPTIONS="log_path=$logdir/tsan:halt_on_error=0:exitcode=66:\
second_deadlock_stack=1"

"$t"
rc=$?

# Reports: sanitizer logs are written only when there is something to
# say; a valgrind log always exists and says "ERROR SUMMARY: N errors".
# Our source files, to recognise our frames in any tool's format:
# "src/cache.c:123" (ASan, UBSan), "(cache.c:123)" (valgrind).
top=$(cd "$(dirname "$0")/../.." && pwd)
ours=$(cd "$top/src" && ls *.[ch] | sed 's/\./\\./' | paste -s -d '|')
ours_re="cacheextents|tsan-harness|(^|[ /(])src/($ours):|[(]($ours):[0-9]+[)]"

bad=0
for f in "$logdir"/*; do
  [ -f "$f" ] || continue
  case $(basename "$f") in
    valgrind.*)
      # A process that exec'd (the --run command) leaves a log without
      # a summary; only a non-zero summary is a report.
      if ! grep -q 'ERROR SUMMARY: [1-9]' "$f"; then
        continue
      fi ;;
    asan.*)
      if awk -v nbdkit="$CE_SAN_REAL_NBDKIT" \
           -f "$CE_SAN_SUPP/nbdkit-leaks.awk" "$f"; then
        echo "note: $f: a known leak of nbdkit, not ours" \
          "(see tests/sanitizers/nbdkit-leaks.awk)"
        continue
      fi ;;
    ubsan.*|tsan.*) ;;
    *) continue ;;
  esac
  bad=1
  if grep -q -E "$ours_re" "$f"; then
    echo "SANITIZER REPORT FROM OUR CODE: $f"
  else
    echo "SANITIZER REPORT (not naming our code; suppress it in" \
      "tests/sanitizers/ only with a proof): $f"
  fi
  sed 's/^/  | /' "$f"
done

echo "$CE_SAN_MODE: $(ls "$logdir" | grep -c '^nbdkit\.') nbdkit processes" \
  "started, $(ls "$logdir" | grep -c -v '^nbdkit\.') log files"

if [ "$bad" -ne 0 ]; then
  echo "FAIL: sanitizer reports (the test itself exited with $rc)"
  exit 1
fi
exit $rc
