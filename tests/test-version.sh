#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The release number of src/version.h is shown in --help (the filter's
# long name) and in the summary line logged at exit, and it is the
# version of the Debian package and the RPM.
. "$(dirname "$0")/functions.sh"
requires_nbdkit_plugin null

version=$(sed -n 's/^#define CACHEEXTENTS_VERSION "\(.*\)"$/\1/p' \
            "$top/src/version.h")
case $version in
  [0-9]*.[0-9]*.[0-9]*) echo "ok: src/version.h says $version" ;;
  *) echo "FAIL: no CACHEEXTENTS_VERSION x.y.z in src/version.h"; exit 1 ;;
esac

nbdkit --filter="$FILTER" null --help >"$tmp/help" 2>&1
line=$(grep '^filter: cacheextents ' "$tmp/help" || :)
case $line in
  *" $version"[,\ \)]*) echo "ok: --help: $line" ;;
  *) echo "FAIL: --help does not show $version:"; cat "$tmp/help"; exit 1 ;;
esac

timeout 30 nbdkit -U - -v --filter="$FILTER" null $CE_OPTS \
  --run true 2>"$tmp/stderr"
line=$(grep 'cacheextents: .*total' "$tmp/stderr" || :)
case $line in
  *"cacheextents: $version total"*) echo "ok: summary: $line" ;;
  *) echo "FAIL: the summary line at exit does not show $version:"
     grep cacheextents "$tmp/stderr" | tail -n 5; exit 1 ;;
esac

# The packages carry the same number.
assert_eq "debian/changelog's version" "$version" \
  "$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$top/debian/changelog")"
assert_eq "rpm/cacheextents.spec's Version" "$version" \
  "$(sed -n 's/^Version: *//p' "$top/rpm/cacheextents.spec")"
