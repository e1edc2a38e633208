#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Run each test given on the command line, each under a time limit,
# and end with the summary line CI reads: 'N passed, N failed, N skipped'.
# A test passes with exit 0, is skipped with exit 77, fails otherwise.
# Environment:
#   TEST_TIMEOUT  seconds per test (default 300)
#   TEST_LOGDIR   where the logs go (default build/test-logs at the top
#                 of the source tree, wherever this is run from)
#   TEST_SUMMARY  a file to which 'LABEL: <summary line>' is appended
#   TEST_LABEL    that label (default: the nbdkit on PATH and its version)
set -u
limit=${TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0 failed=
top=$(cd "$(dirname "$0")/.." && pwd)
logdir=${TEST_LOGDIR:-$top/build/test-logs}
mkdir -p "$logdir"
for t in "$@"; do
  name=$(basename "$t")
  log="$logdir/$name.log"
  start=$(date +%s)
  timeout -k 10 "$limit" "$t" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  case $rc in
    0) pass=$((pass + 1)); echo "PASS: $name (${secs}s)" ;;
    77) skip=$((skip + 1)); echo "SKIP: $name ($(tail -n 1 "$log"))" ;;
    *) fail=$((fail + 1)); failed="$failed $name"
       echo "FAIL: $name (exit $rc, ${secs}s); last lines of $log:"
       tail -n 25 "$log" | sed 's/^/    /' ;;
  esac
done
summary="$pass passed, $fail failed, $skip skipped"
if [ -n "${TEST_SUMMARY:-}" ]; then
  label=${TEST_LABEL:-$(nbdkit --version 2>/dev/null || echo nbdkit)}
  echo "$label: $summary" >> "$TEST_SUMMARY"
fi
echo "$summary"
[ "$fail" -eq 0 ]
