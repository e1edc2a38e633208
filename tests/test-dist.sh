#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# make dist: the tarball is named after src/version.h, holds every file
# git tracks under cacheextents-VERSION/, and unpacks and builds on its
# own, without git: the filter, the man page and the map's unit test
# build, the unit test passes and a few integration tests pass with
# the unpacked tree's own filter.  (The whole of make check is not run
# here: it takes minutes and installs packages.)
. "$(dirname "$0")/functions.sh"
requires make git tar gzip cc

if ! git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "$0: test skipped: not a git checkout (make dist needs one)"
  exit 77
fi

version=$(sed -n 's/^#define CACHEEXTENTS_VERSION "\(.*\)"$/\1/p' \
            "$top/src/version.h")
name=cacheextents-$version

make -C "$top" --no-print-directory dist DISTDIR="$tmp" BUILD="$tmp/build" \
  >"$tmp/dist.log" 2>&1 || { cat "$tmp/dist.log"; exit 1; }
tarball=$tmp/$name.tar.gz
if [ ! -f "$tarball" ]; then
  echo "FAIL: make dist did not write $name.tar.gz:"; ls "$tmp"; exit 1
fi
echo "ok: make dist wrote $name.tar.gz ($(wc -c < "$tarball") bytes)"

# Every tracked file (that exists) is in it, under $name/, and nothing
# else is.
tar -tzf "$tarball" | sort > "$tmp/listed"
(cd "$top" && git ls-files | while read -r f; do
   [ ! -e "$f" ] || echo "$name/$f"; done) | sort > "$tmp/tracked"
if ! cmp -s "$tmp/listed" "$tmp/tracked"; then
  echo "FAIL: the tarball's files differ from git's list:"
  diff "$tmp/tracked" "$tmp/listed" | head -n 20
  exit 1
fi
echo "ok: the tarball holds the $(wc -l < "$tmp/listed") tracked files"

# Unpack away from the repository, so that nothing can reach git.
mkdir "$tmp/unpack"
tar -xzf "$tarball" -C "$tmp/unpack"
src=$tmp/unpack/$name
for f in Makefile README.md NEWS src/version.h src/nbdkit-cacheextents-filter.pod \
         debian/control debian/rules rpm/cacheextents.spec \
         tests/run-tests.sh; do
  if [ ! -f "$src/$f" ]; then echo "FAIL: $f missing from the tarball"; exit 1; fi
done
if [ -e "$src/.git" ]; then echo "FAIL: .git in the tarball"; exit 1; fi

export GIT_DIR=/nonexistent GIT_CEILING_DIRECTORIES=$tmp/unpack
make -C "$src" --no-print-directory all build/unit-map >"$tmp/build.log" 2>&1 || {
  tail -n 20 "$tmp/build.log"; echo "FAIL: the unpacked tarball does not build"
  exit 1; }
echo "ok: the unpacked tarball builds"
for f in build/nbdkit-cacheextents-filter.so build/nbdkit-cacheextents-filter.1; do
  [ -s "$src/$f" ] || { echo "FAIL: $f not built"; exit 1; }
done
"$src/build/unit-map" | tail -n 1
echo "ok: the unit test passes in the unpacked tree"

# A quick subset of the integration tests, each against the unpacked
# tree's own filter.
(cd "$src" && env -u CACHEEXTENTS_FILTER TEST_LOGDIR="$tmp/logs" \
   tests/run-tests.sh tests/test-version.sh tests/test-params.sh \
   tests/test-seed-map.sh) || { echo "FAIL: tests in the unpacked tree"; exit 1; }
