#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# One run of make check's suites, and their sum.
#
#   scripts/check-suite.sh SUMMARY LABEL COMMAND...
#       runs COMMAND with TEST_SUMMARY=SUMMARY and TEST_LABEL=LABEL, so
#       that tests/run-tests.sh appends 'LABEL: N passed, N failed,
#       N skipped' to SUMMARY; if COMMAND fails without that line (a
#       build failed, say), one failure is recorded for LABEL.
#   scripts/check-suite.sh SUMMARY --total
#       prints SUMMARY, then the sum of its lines as the last line
#       'N passed, N failed, N skipped'; fails if anything failed.
set -u
sum=$1
label=$2
shift 2

if [ "$label" = --total ]; then
  touch "$sum"
  cat "$sum"
  exec awk '{ p += $(NF - 5); f += $(NF - 3); s += $(NF - 1) }
            END { printf "%d passed, %d failed, %d skipped\n", p, f, s;
                  exit f > 0 }' "$sum"
fi

TEST_SUMMARY=$sum TEST_LABEL=$label "$@" && exit 0
if ! grep -qF -- "$label: " "$sum" 2>/dev/null; then
  echo "FAIL: $label: '$*' failed before its tests ran"
  echo "$label: 0 passed, 1 failed, 0 skipped" >> "$sum"
fi
exit 1
