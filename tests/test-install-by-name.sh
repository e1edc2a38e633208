#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# With an nbdkit that has no cacheextents filter of its own (1.45.1 and
# later), make install builds against that nbdkit (PKG_CONFIG_PATH) and
# puts the filter where it loads by name.  A CDI-style copy,
#   nbdkit -r --filter=cacheextents PLUGIN ... --run 'qemu-img convert ...'
# then goes through this filter (it takes cacheextents-window=, and the
# log filter below it sees fewer calls than without it) and copies the
# disk exactly.  make uninstall frees the name and leaves nbdkit's prefix
# as it was.
#
# With an nbdkit that has a cacheextents filter of its own (1.38.5 and
# 1.44.1 built under build/), the README's way is make install
# DIVERT=yes: the bundled filter is moved aside with dpkg-divert, the
# name loads this filter, and make uninstall puts the bundled one back
# byte for byte and leaves no diversion.
#
# It installs into the prefix of the nbdkit on PATH, so it runs only
# when that is an nbdkit built under build/ by scripts/build-nbdkit.sh
# (make check-nbdkit-VERSION puts it first on PATH), never a system one.
. "$(dirname "$0")/functions.sh"
requires make pkg-config pod2man qemu-img cmp
requires_nbdkit_plugin sparse-random
requires_nbdkit_filter log

config=$(nbdkit --dump-config)
version=$(sed -n 's/^version=//p' <<<"$config")
fdir=$(sed -n 's/^filterdir=//p' <<<"$config")
libdir=$(sed -n 's/^libdir=//p' <<<"$config")
case $fdir in
  "$top"/build/*) ;;
  *) echo "$0: test skipped: the nbdkit on PATH ($version) was not built" \
          "under $top/build (see make check-nbdkit-VERSION)"
     exit 77 ;;
esac
divert=
case $(cacheextents_by_name) in
  nbdkit)
    requires dpkg-divert
    divert=DIVERT=yes
    echo "nbdkit $version has its own cacheextents filter: install with $divert" ;;
  ours)
    echo "FAIL: a cacheextents filter is already installed in $fdir" \
         "(left by an interrupted run? PKG_CONFIG_PATH=$libdir/pkgconfig make uninstall)"
    exit 1 ;;
esac
export PKG_CONFIG_PATH=$libdir/pkgconfig
assert_eq "pkg-config's nbdkit" "$version" "$(pkg-config --modversion nbdkit)"
prefix=$(pkg-config --variable=prefix nbdkit)
before=$(tree_state "$prefix")

installed=
uninstall_on_exit ()
{
  local rc=$?
  [ -z "$installed" ] || mk uninstall >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit $rc
}
trap uninstall_on_exit EXIT

installed=yes
mk install $divert
assert_eq "what --filter=cacheextents loads" ours "$(cacheextents_by_name)"
[ -f "$prefix/share/man/man1/nbdkit-cacheextents-filter.1" ]
echo "ok: man page in $prefix/share/man/man1"

disk=(sparse-random size=256M seed=7 percent=10 runlength=1048576)
copy='qemu-img convert -f raw -O raw "$uri" "$out"'
out=$tmp/plain.img timeout 120 nbdkit -r -U - --filter=log "${disk[@]}" \
  logfile="$tmp/plain.log" --run "$copy"
out=$tmp/cached.img timeout 120 nbdkit -r -U - --filter=cacheextents \
  --filter=log "${disk[@]}" cacheextents-window=64M logfile="$log" \
  --run "$copy"
cmp "$tmp/plain.img" "$tmp/cached.img"
echo "ok: the copy through --filter=cacheextents is exact"
plain=$(backend_calls "$tmp/plain.log")
cached=$(backend_calls)
echo "backend extents calls: $plain without the filter, $cached with it"
if [ "$cached" -ge "$plain" ]; then
  echo "FAIL: the filter loaded by name did not cache"
  exit 1
fi

mk uninstall
installed=
assert_eq "what --filter=cacheextents loads after uninstall" \
  "$([ -n "$divert" ] && echo nbdkit || echo none)" "$(cacheextents_by_name)"
if dpkg-divert --list 2>/dev/null | grep -F "$fdir/"; then
  echo "FAIL: a diversion in $fdir is left"; exit 1
fi
assert_same_tree "nbdkit's prefix after install and uninstall" "$before" \
  "$(tree_state "$prefix")"
