#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# make install and make uninstall.
#
#   scripts/install.sh install FILTER.so MANPAGE.1
#   scripts/install.sh uninstall
#
# Environment (the Makefile passes it): DESTDIR, filterdir, mandir,
# datadir, DIVERT (yes or no).
#
# install puts the filter into filterdir, where nbdkit finds it by name
# (--filter=cacheextents), and the man page into mandir/man1.  It never
# replaces a file it did not install itself: if one is there (nbdkit
# before 1.45.1 ships its own cacheextents filter), it stops and says
# what to do, unless DIVERT=yes, which moves that file aside with
#   dpkg-divert --package cacheextents --rename --divert PATH.distrib
# so that upgrades of its package go to the diverted name and removing
# the diversion puts it back.  With DESTDIR, DIVERT=yes works on the
# dpkg database of DESTDIR as a root (DESTDIR/var/lib/dpkg).
#
# Everything install does (directories created, files installed,
# diversions added) is recorded, in order, in the manifest
# $datadir/cacheextents/install-manifest; uninstall undoes exactly
# that, in reverse order, and removes the manifest.
set -e
set -u

mode=${1:-}
: "${DESTDIR=}" "${filterdir:?}" "${mandir:?}" "${datadir:?}"
DIVERT=${DIVERT:-no}
so_name=nbdkit-cacheextents-filter.so
man_name=nbdkit-cacheextents-filter.1
manifest=$datadir/cacheextents/install-manifest
me="make $mode"

die () { echo "$me: $*" >&2; exit 1; }

# dpkg's tools on DESTDIR as a root, or on this system.
dpkg_root=()
if [ -n "$DESTDIR" ]; then dpkg_root=(--root "$DESTDIR"); fi

# owner PATH: the package that owns PATH (a path without DESTDIR), if any.
owner ()
{
  local admin=()
  command -v dpkg-query >/dev/null 2>&1 || return 0
  if [ -n "$DESTDIR" ]; then
    [ -d "$DESTDIR/var/lib/dpkg" ] || return 0
    admin=(--admindir "$DESTDIR/var/lib/dpkg")
  fi
  dpkg-query "${admin[@]}" -S "$1" 2>/dev/null | grep -v '^diversion ' |
    sed -n 's/: .*//p' | head -n 1
}

# The manifest's lines: 'dir PATH', 'file PATH', 'divert PATH TO'.
entries=()
if [ -f "$DESTDIR$manifest" ]; then
  mapfile -t entries < "$DESTDIR$manifest"
fi
recorded () { printf '%s\n' "${entries[@]}" | grep -qxF -- "$1"; }
record () { recorded "$1" || entries+=("$1"); }
write_manifest () { printf '%s\n' "${entries[@]}" > "$DESTDIR$manifest"; }

# mkdirs DIR: create DIR and its missing parents, recording each one.
mkdirs ()
{
  local d=$1 missing=()
  while [ ! -d "$DESTDIR$d" ]; do
    missing=("$d" "${missing[@]}")
    d=$(dirname "$d")
  done
  for d in "${missing[@]}"; do
    mkdir -m 0755 "$DESTDIR$d"
    record "dir $d"
  done
}

# diverted_name PATH: where DIVERT=yes moves a foreign PATH.  A man page
# keeps its section suffix so that man still reads it as a page.
diverted_name ()
{
  case $1 in
    *.1) echo "${1%.1}.distrib.1" ;;
    *.1.gz) echo "${1%.1.gz}.distrib.1.gz" ;;
    *) echo "$1.distrib" ;;
  esac
}

do_install ()
{
  local filter=$1 manpage=$2 so=$filterdir/$so_name man=$mandir/man1/$man_name
  local p foreign=() pkg
  [ -f "$filter" ] && [ -f "$manpage" ] || die "build first: $filter $manpage"

  # Files of these names that this project did not install.  An
  # identical copy of ours counts as ours.
  for p in "$so" "$man" "$man.gz"; do
    [ -e "$DESTDIR$p" ] || [ -L "$DESTDIR$p" ] || continue
    recorded "file $p" && continue
    [ "$p" = "$so" ] && cmp -s "$filter" "$DESTDIR$p" && continue
    [ "$p" = "$man" ] && cmp -s "$manpage" "$DESTDIR$p" && continue
    foreign+=("$p")
  done

  if [ "${#foreign[@]}" -gt 0 ] && [ "$DIVERT" != yes ]; then
    {
      for p in "${foreign[@]}"; do
        pkg=$(owner "$p")
        echo "$me: $DESTDIR$p exists and was not installed by this project${pkg:+ (it belongs to the package $pkg)}."
      done
      cat <<EOF
$me: nothing was changed.  Either
  - load this filter by its path, without installing it:
      nbdkit --filter=$(cd "$(dirname "$filter")" && pwd)/$so_name PLUGIN ...
  - or install it in place of that file under dpkg's control; upgrades of
    the package then go to a .distrib name, and 'make uninstall' puts
    the original back:
      make install DIVERT=yes
EOF
    } >&2
    exit 1
  fi

  if [ "${#foreign[@]}" -gt 0 ]; then
    command -v dpkg-divert >/dev/null 2>&1 ||
      die "DIVERT=yes needs dpkg-divert, which is not installed"
    if [ -n "$DESTDIR" ] && [ ! -d "$DESTDIR/var/lib/dpkg" ]; then
      die "DIVERT=yes with DESTDIR needs a dpkg database in $DESTDIR/var/lib/dpkg"
    fi
  fi

  mkdirs "$(dirname "$manifest")"
  # Write what was done even if a later step fails, so that uninstall
  # can undo it.
  trap write_manifest EXIT

  for p in "${foreign[@]}"; do
    local to
    to=$(diverted_name "$p")
    dpkg-divert "${dpkg_root[@]}" --package cacheextents --rename \
      --divert "$to" --add "$p"
    record "divert $p $to"
  done

  mkdirs "$filterdir"
  mkdirs "$mandir/man1"
  install -m 0755 "$filter" "$DESTDIR$so"
  record "file $so"
  echo "installed $DESTDIR$so"
  install -m 0644 "$manpage" "$DESTDIR$man"
  record "file $man"
  echo "installed $DESTDIR$man"
  write_manifest
  trap - EXIT
  echo "recorded in $DESTDIR$manifest ('make uninstall' undoes it)"
}

do_uninstall ()
{
  local i e kind path to
  if [ ! -f "$DESTDIR$manifest" ]; then
    echo "$me: no $DESTDIR$manifest: nothing was installed there by" \
         "make install; nothing to do"
    return 0
  fi
  rm -f "$DESTDIR$manifest"
  for (( i = ${#entries[@]} - 1; i >= 0; i-- )); do
    e=${entries[i]}
    kind=${e%% *}
    path=${e#* }
    case $kind in
      file)
        rm -f "$DESTDIR$path"
        echo "removed $DESTDIR$path" ;;
      divert)
        to=${path#* }
        path=${path%% *}
        dpkg-divert "${dpkg_root[@]}" --package cacheextents --rename \
          --divert "$to" --remove "$path" ;;
      dir)
        if rmdir "$DESTDIR$path" 2>/dev/null; then
          echo "removed $DESTDIR$path/"
        else
          echo "kept $DESTDIR$path/ (not empty)"
        fi ;;
      '') ;;
      *) echo "$me: unknown manifest line: $e" >&2 ;;
    esac
  done
}

case $mode in
  install) do_install "${2:?filter}" "${3:?man page}" ;;
  uninstall) do_uninstall ;;
  *) die "usage: $0 install FILTER MANPAGE | uninstall" ;;
esac
