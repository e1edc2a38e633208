#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The RPM (rpm/cacheextents.spec).  make rpm builds it from the make
# dist tarball with rpmbuild -bb --nodeps in a _topdir of its own,
# against nbdkit 1.38.5 (EL9's, built under build/ by
# scripts/build-nbdkit.sh), and the tree is left as it was.  The
# package requires exactly nbdkit-server = 1.38.5, and, since that
# nbdkit ships a cacheextents filter of its own (nbdkit-basic-filters),
# holds the filter in a directory of its own,
# %{_libdir}/nbdkit-cacheextents/, with the man page cacheextents(1),
# so that no file conflicts with nbdkit's; that filter loads into
# nbdkit 1.38.5 by its path.  If nbdkit 1.45.2 (no filter of that name)
# is built under build/ too, the package built against it holds the
# filter in nbdkit's filterdir %{_libdir}/nbdkit/filters, loaded by
# name, with the man page nbdkit-cacheextents-filter(1).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/packaging.sh"
requires make git tar gzip rpm rpmbuild rpm2archive pkg-config pod2man cc
requires_system_run
requires_git_checkout

pkg=nbdkit-cacheextents-filter
version=$(ce_version)
libdir=$(rpm --eval '%{_libdir}')
mandir=$(rpm --eval '%{_mandir}')
spec_version=$(sed -n 's/^Version: *//p' "$top/rpm/cacheextents.spec")
assert_eq "the spec's Version" "$version" "$spec_version"

# nbdkit 1.38.5: make check builds it before the tests (mk/packages.mk);
# run alone, the test builds it (about 4 minutes, once).
prefix=$top/build/nbdkit-1.38.5/prefix
if [ ! -x "$prefix/sbin/nbdkit" ]; then
  echo "building nbdkit 1.38.5 (scripts/build-nbdkit.sh, once)"
  timeout 600 "$top/scripts/build-nbdkit.sh" 1.38.5 >"$tmp/nbdkit-build.log" 2>&1 || {
    tail -n 5 "$tmp/nbdkit-build.log"
    echo "$0: test skipped: nbdkit 1.38.5 could not be built under build/"
    exit 77; }
fi

droppings=$(tree_droppings)

# build_rpm VERSION: make rpm against build/nbdkit-VERSION; sets rpm.
build_rpm ()
{
  local v=$1 p=$top/build/nbdkit-$1/prefix start
  start=$(date +%s)
  PKG_CONFIG_PATH=$p/lib/pkgconfig mk rpm RPM_DIR="$tmp/rpm-$v" \
    >"$tmp/rpm-$v.log" 2>&1 ||
    { tail -n 30 "$tmp/rpm-$v.log"; echo "FAIL: make rpm against nbdkit $v"; exit 1; }
  rpm=$(ls "$tmp/rpm-$v"/RPMS/*/"$pkg-$version"-*.rpm)
  echo "ok: make rpm against nbdkit $v wrote $(basename "$rpm")" \
       "in $(( $(date +%s) - start )) s"
  assert_eq "the RPM's version" "$version" "$(rpm -qp --qf '%{VERSION}' "$rpm")"
  rpm -qRp "$rpm" > "$tmp/requires"
  assert_eq "the nbdkit it requires" "nbdkit-server = $v" \
    "$(grep '^nbdkit' "$tmp/requires")"
  rpm -qlp "$rpm" > "$tmp/files"
  cat "$tmp/files"
  for f in "/usr/share/licenses/$pkg-$version/LICENSE" \
           "/usr/share/doc/$pkg-$version/README.md" \
           "/usr/share/doc/$pkg-$version/NEWS"; do
    grep -qxF "$f" "$tmp/files" || { echo "FAIL: $f not in the RPM"; exit 1; }
  done
  rm -rf "$tmp/x"; mkdir "$tmp/x"
  rpm2archive - < "$rpm" | tar -xzf - -C "$tmp/x"
}

# has FILE...: each is in the RPM; lacks PATTERN: nothing matches.
has ()
{
  local f
  for f in "$@"; do
    grep -qxE "$f" "$tmp/files" || { echo "FAIL: no $f in the RPM"; exit 1; }
    echo "ok: the RPM holds $f"
  done
}
lacks ()
{
  if grep -E "$1" "$tmp/files"; then echo "FAIL: the RPM holds $1"; exit 1; fi
  echo "ok: the RPM holds nothing in $1"
}

# loads VERSION SO: nbdkit VERSION loads SO, this filter at $version.
loads ()
{
  timeout 20 "$top/build/nbdkit-$1/prefix/sbin/nbdkit" --filter="$2" null \
    --help > "$tmp/help" 2>&1 || { cat "$tmp/help"; echo "FAIL: nbdkit $1 --filter=$2"; exit 1; }
  grep -q "^filter: cacheextents (cacheextents $version" "$tmp/help" ||
    { cat "$tmp/help"; echo "FAIL: not this filter at $version"; exit 1; }
  echo "ok: nbdkit $1 loads the RPM's filter by its path"
}

# nbdkit 1.38.5 has a filter of that name: the private directory.
[ -f "$prefix/lib/nbdkit/filters/$pkg.so" ] ||
  { echo "FAIL: nbdkit 1.38.5 should have a cacheextents filter"; exit 1; }
build_rpm 1.38.5
has "$libdir/nbdkit-cacheextents" "$libdir/nbdkit-cacheextents/$pkg.so" \
  "$mandir/man1/cacheextents\.1(\.gz)?"
lacks "^$libdir/nbdkit/|/$pkg\.1"
loads 1.38.5 "$tmp/x$libdir/nbdkit-cacheextents/$pkg.so"

# nbdkit 1.45.2, if built: by name.
if [ -x "$top/build/nbdkit-1.45.2/prefix/sbin/nbdkit" ]; then
  build_rpm 1.45.2
  has "$libdir/nbdkit/filters/$pkg.so" "$mandir/man1/$pkg\.1(\.gz)?"
  lacks "nbdkit-cacheextents/|/cacheextents\.1"
  loads 1.45.2 "$tmp/x$libdir/nbdkit/filters/$pkg.so"
else
  echo "note: nbdkit 1.45.2 not built under build/: the by-name layout not checked"
fi

if [ "$(tree_droppings)" != "$droppings" ]; then
  diff <(echo "$droppings") <(tree_droppings) || true
  echo "FAIL: make rpm left files in the tree or beside it"; exit 1
fi
echo "ok: make rpm left nothing in the tree or beside it"
