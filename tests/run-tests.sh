#!/usr/bin/env bash
# Run each test given on the command line, each under a time limit,
# and end with the summary line CI reads: 'N passed, N failed, N skipped'.
# A test passes with exit 0, is skipped with exit 77, fails otherwise.
set -u
limit=${TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0 failed=
logdir=${TEST_LOGDIR:-build/test-logs}
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
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
