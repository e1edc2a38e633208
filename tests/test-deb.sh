#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The Debian package.  make deb builds nbdkit-cacheextents-filter from
# the make dist tarball (outside the tree: the tree and its parent are
# left as they were), lintian finds no error or warning that is not
# overridden, and the package depends on exactly the installed nbdkit
# version.  Installed (apt-get), --filter=cacheextents loads this filter
# and its man page is the one man finds; where the nbdkit package ships
# a filter and man page of that name (1.32 to 1.44) both are diverted
# to *.distrib names.  apt-get remove, and apt-get purge, give nbdkit's
# files back byte for byte and leave no diversion.
#
# It installs into the system (as root), so it runs only on the
# system's nbdkit (see tests/packaging.sh).  Whatever happens, the exit
# purges the package and puts nbdkit's files and the diversions back
# as they were; it fails if it cannot.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/packaging.sh"
requires make git tar dpkg-buildpackage dh dpkg-deb dpkg-divert dpkg-query \
  dpkg apt-get pkg-config pod2man md5sum zcat
requires_system_run
requires_git_checkout
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: test skipped: installs a package, needs root"; exit 77
fi

pkg=nbdkit-cacheextents-filter
version=$(ce_version)
nbdkit_deb=$(dpkg-query -W -f='${Version}' nbdkit 2>/dev/null || :)
if [ -z "$nbdkit_deb" ]; then
  echo "$0: test skipped: the nbdkit package is not installed"; exit 77
fi

# dpkg's record of the package: empty when dpkg does not know it.
pkg_status ()
{
  dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | tr -d ' ' || :
}
if [ -n "$(pkg_status)" ] && [ "$(pkg_status)" != un ]; then
  echo "$0: test skipped: $pkg is installed ($(pkg_status)); the test" \
       "would remove it"
  exit 77
fi
if dpkg-divert --list '*nbdkit-cacheextents-filter*' | grep -q .; then
  dpkg-divert --list '*nbdkit-cacheextents-filter*'
  echo "$0: test skipped: diversions of the filter's names exist (make" \
       "install DIVERT=yes? make uninstall removes them)"
  exit 77
fi

fdir=$(pkg-config --variable=filterdir nbdkit)
so=$fdir/$pkg.so
so_distrib=$so.distrib
man=/usr/share/man/man1/$pkg.1.gz
man_distrib=/usr/share/man/man1/$pkg.distrib.1.gz
paths=("$so" "$so_distrib" "$man" "$man_distrib")

# The state the test must leave: nbdkit's files (checksum or absent),
# the diversions of these names, dpkg's record of the package.
sys_state ()
{
  local p
  for p in "${paths[@]}"; do
    if [ -e "$p" ]; then echo "$p $(md5sum < "$p")"; else echo "$p absent"; fi
  done
  dpkg-divert --list '*nbdkit-cacheextents-filter*' | sort
  echo "dpkg: $(pkg_status)"
}
before=$(sys_state)
echo "$before"

# Copies of nbdkit's files, to put back should the package's scripts
# fail to.
mkdir "$tmp/orig"
for p in "$so" "$man"; do
  [ -e "$p" ] && cp -p "$p" "$tmp/orig/"
done

export DEBIAN_FRONTEND=noninteractive
apt_get ()
{
  timeout 180 apt-get -q -y -o DPkg::Lock::Timeout=60 "$@" \
    </dev/null >>"$tmp/apt.log" 2>&1 ||
    { tail -n 30 "$tmp/apt.log"; echo "FAIL: apt-get $*"; return 1; }
  echo "ok: apt-get $*"
}

restore ()
{
  local rc=$? p to
  trap - EXIT
  if [ -n "$(pkg_status)" ] && [ "$(pkg_status)" != un ]; then
    if ! timeout 120 dpkg --purge "$pkg" >>"$tmp/apt.log" 2>&1; then
      # Its postrm failed: purge without it, then mend by hand below.
      echo "restore: dpkg --purge $pkg failed; purging without its postrm"
      printf '#!/bin/sh\nexit 0\n' > "/var/lib/dpkg/info/$pkg.postrm"
      timeout 120 dpkg --purge "$pkg" >>"$tmp/apt.log" 2>&1 || true
    fi
  fi
  dpkg-divert --list '*nbdkit-cacheextents-filter*' |
    sed -n "s/^diversion of \(.*\) to \(.*\) by $pkg\$/\1 \2/p" |
    while read -r p to; do
      echo "restore: removing a diversion left behind: $p"
      dpkg-divert --package "$pkg" --rename --divert "$to" --remove "$p" || true
    done
  for p in "$so" "$man"; do
    if [ -e "$tmp/orig/$(basename "$p")" ] &&
       ! cmp -s "$tmp/orig/$(basename "$p")" "$p"; then
      echo "restore: putting nbdkit's $p back"
      cp -p "$tmp/orig/$(basename "$p")" "$p"
      rm -f "$p.distrib" "${p%.1.gz}.distrib.1.gz"
    fi
  done
  if [ "$(sys_state)" != "$before" ]; then
    echo "FAIL: the system is not as it was:"
    diff <(echo "$before") <(sys_state) || true
    rc=1
  fi
  rm -rf "$tmp"
  exit $rc
}
trap restore EXIT

# Build, outside the tree.
droppings=$(tree_droppings)
start=$(date +%s)
mk deb DEB_DIR="$tmp/deb" >"$tmp/build.log" 2>&1 ||
  { tail -n 30 "$tmp/build.log"; echo "FAIL: make deb"; exit 1; }
deb=$tmp/deb/${pkg}_${version}_$(dpkg --print-architecture).deb
[ -f "$deb" ] || { ls "$tmp/deb"; echo "FAIL: make deb wrote no $deb"; exit 1; }
echo "ok: make deb wrote $(basename "$deb") in $(( $(date +%s) - start )) s"
if [ "$(tree_droppings)" != "$droppings" ]; then
  diff <(echo "$droppings") <(tree_droppings) || true
  echo "FAIL: make deb left files in the tree or beside it"; exit 1
fi
echo "ok: make deb left nothing in the tree or beside it"

assert_eq "the package's version" "$version" "$(dpkg-deb -f "$deb" Version)"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
assert_eq "the nbdkit it depends on" "nbdkit (= $nbdkit_deb)" \
  "$(tr ',' '\n' <<<"$depends" | sed 's/^ *//' | grep '^nbdkit\b')"
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's,^\.,,' > "$tmp/contents"
for f in "$so" "$man" /usr/share/doc/$pkg/copyright \
         /usr/share/doc/$pkg/README.md.gz /usr/share/doc/$pkg/NEWS.gz; do
  grep -qxF "$f" "$tmp/contents" || { echo "FAIL: $f not in the package"; exit 1; }
done
echo "ok: the package holds the filter, its man page, copyright, README, NEWS"

if command -v lintian >/dev/null; then
  if timeout 120 lintian --fail-on error,warning "$tmp"/deb/*.changes \
       >"$tmp/lintian" 2>&1; then
    cat "$tmp/lintian"
    echo "ok: lintian: no error or warning"
  else
    cat "$tmp/lintian"; echo "FAIL: lintian"; exit 1
  fi
else
  echo "note: lintian not installed, not run"
fi

# Whether the nbdkit package ships files of these names.
if dpkg-query -L nbdkit | grep -qxF "$so"; then
  bundled=yes
  echo "nbdkit $nbdkit_deb ships $so and its man page: both must be diverted"
else
  bundled=no
  echo "nbdkit $nbdkit_deb has no filter of that name: nothing to divert"
fi
so_sum=$(md5sum < "$so" 2>/dev/null || :)
man_sum=$(md5sum < "$man" 2>/dev/null || :)

# Installed: the name and the man page are this filter's.
check_installed ()
{
  assert_eq "what --filter=cacheextents loads" ours "$(cacheextents_by_name)"
  timeout 20 nbdkit --filter=cacheextents null --help > "$tmp/help" 2>&1
  grep -q "^filter: cacheextents (cacheextents $version" "$tmp/help" ||
    { cat "$tmp/help"; echo "FAIL: --help does not show $version"; exit 1; }
  grep -q '^cacheextents-statsfile=' "$tmp/help" ||
    { echo "FAIL: --help lacks cacheextents-statsfile="; exit 1; }
  echo "ok: nbdkit --filter=cacheextents null --help is this filter's, $version"
  if command -v man >/dev/null; then
    assert_eq "the man page man finds" "$man" "$(man -w "$pkg")"
  fi
  zcat "$man" | grep -q 'cacheextents-statsfile' ||
    { echo "FAIL: $man is not this filter's page"; exit 1; }
  echo "ok: $man is this filter's page"
  timeout 60 dpkg --verify "$pkg" ||
    { echo "FAIL: dpkg --verify $pkg"; exit 1; }
  dpkg-divert --list '*nbdkit-cacheextents-filter*' | sort > "$tmp/diversions"
  cat "$tmp/diversions"
  if [ "$bundled" = yes ]; then
    for d in "$so to $so_distrib" "$man to $man_distrib"; do
      grep -qxF "diversion of $d by $pkg" "$tmp/diversions" ||
        { echo "FAIL: no diversion of $d by $pkg"; exit 1; }
    done
    assert_eq "diversions" 2 "$(wc -l < "$tmp/diversions")"
    assert_eq "nbdkit's filter, diverted" "$so_sum" "$(md5sum < "$so_distrib")"
    assert_eq "nbdkit's man page, diverted" "$man_sum" \
      "$(md5sum < "$man_distrib")"
  else
    assert_eq "diversions" 0 "$(wc -l < "$tmp/diversions")"
  fi
}

# Gone: nbdkit's files are back (or the name is free) and no diversion.
check_gone ()
{
  local what=$1
  assert_eq "diversions after $what" "" \
    "$(dpkg-divert --list '*nbdkit-cacheextents-filter*')"
  if [ "$bundled" = yes ]; then
    assert_eq "what --filter=cacheextents loads after $what" nbdkit \
      "$(cacheextents_by_name)"
    assert_eq "nbdkit's filter after $what" "$so_sum" "$(md5sum < "$so")"
    assert_eq "nbdkit's man page after $what" "$man_sum" "$(md5sum < "$man")"
  else
    assert_eq "what --filter=cacheextents loads after $what" none \
      "$(cacheextents_by_name)"
  fi
  for p in "$so_distrib" "$man_distrib"; do
    [ ! -e "$p" ] || { echo "FAIL: $p is left after $what"; exit 1; }
  done
  echo "ok: no *.distrib file is left after $what"
}

apt_get install --no-install-recommends "$deb"
check_installed
# Installing again runs the preinst's upgrade path over its own
# diversions.
apt_get install --reinstall --no-install-recommends "$deb"
check_installed
apt_get remove "$pkg"
check_gone "apt-get remove"

apt_get install --no-install-recommends "$deb"
check_installed
apt_get purge "$pkg"
check_gone "apt-get purge"
assert_eq "dpkg's record of $pkg after purge" "" "$(pkg_status | grep -v '^un$' || :)"
if [ "$(sys_state)" != "$before" ]; then
  diff <(echo "$before") <(sys_state) || true
  echo "FAIL: the system after purge is not as it was"; exit 1
fi
echo "ok: the system after purge is as it was"
