#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Build a second nbdkit, from the source tarball kept beside this
# repository (../shared/nbdkit/nbdkit-VERSION.tar.gz), into build/, once.
#
# Usage: scripts/build-nbdkit.sh [VERSION]      (default 1.45.2)
#
#   build/nbdkit-VERSION/src       the unpacked, built source tree
#   build/nbdkit-VERSION/prefix    'make install' of it: sbin/nbdkit,
#                                  include/, lib/pkgconfig/nbdkit.pc,
#                                  lib/nbdkit/{plugins,filters}
#
# A finished build (prefix/sbin/nbdkit present and runnable) is reused.
# Missing Debian build dependencies are installed with apt-get.
# Environment:
#   NBDKIT_TARBALL   the tarball to use instead of the one found
#   NBDKIT_NEXT_DIR  where to build instead of build/nbdkit-VERSION
# Prints the prefix as its last line.
set -e
set -u

version=${1:-1.45.2}
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${NBDKIT_NEXT_DIR:-$top/build/nbdkit-$version}
prefix=$dir/prefix

# nbdkit installs the server into sbindir.
if [ -x "$prefix/sbin/nbdkit" ] &&
   "$prefix/sbin/nbdkit" --version 2>/dev/null | grep -q " $version\$"; then
  echo "build-nbdkit: nbdkit $version already built in $dir" >&2
  echo "$prefix"
  exit 0
fi

# The tarball: the repository is cloned with shared/ as its sibling.
# From a git worktree the sibling of the main checkout counts too.
find_tarball ()
{
  local d common
  for d in "$top/../shared/nbdkit" "$top/shared/nbdkit"; do
    [ -f "$d/nbdkit-$version.tar.gz" ] && { echo "$d/nbdkit-$version.tar.gz"; return; }
  done
  if common=$(git -C "$top" rev-parse --path-format=absolute \
                --git-common-dir 2>/dev/null); then
    d=$(dirname "$(dirname "$common")")/shared/nbdkit
    [ -f "$d/nbdkit-$version.tar.gz" ] && { echo "$d/nbdkit-$version.tar.gz"; return; }
  fi
  return 1
}
tarball=${NBDKIT_TARBALL:-$(find_tarball || true)}
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "build-nbdkit: nbdkit-$version.tar.gz not found in $top/../shared/nbdkit" \
       "(set NBDKIT_TARBALL)" >&2
  exit 1
fi

"$top/scripts/deps.sh" autoconf automake libtool libnbd-dev gcc make \
  pkg-config

echo "build-nbdkit: building nbdkit $version from $tarball in $dir" >&2
rm -rf "$dir"
mkdir -p "$dir/src"
tar -xzf "$tarball" -C "$dir/src" --strip-components=1
cd "$dir/src"
autoreconf -i >/dev/null 2>&1
# Only the server, the C plugins and filters the tests use; no language
# bindings, no manual pages.
./configure --prefix="$prefix" \
  --disable-perl --disable-python --disable-ocaml --disable-rust \
  --disable-golang --disable-lua --disable-tcl --disable-torrent \
  --without-manpages --without-bash-completions \
  --disable-libguestfs-tests >configure.out 2>&1 ||
  { tail -n 30 configure.out >&2; exit 1; }
make -j"$(nproc)" >make.out 2>&1 || { tail -n 40 make.out >&2; exit 1; }
make install >install.out 2>&1 || { tail -n 40 install.out >&2; exit 1; }
"$prefix/sbin/nbdkit" --version >&2
echo "$prefix"
