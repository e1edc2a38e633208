# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# shellcheck shell=bash
# Shared by the package tests (test-deb.sh, test-rpm.sh); source it
# after functions.sh.
#
# They build packages and, for the Debian one, install it into the
# system: that is done once per make check, in the plain run on the
# system's nbdkit.  requires_system_run skips the test (exit 77) under
# the sanitizer runner (CE_SAN_MODE; it does not run the filter's code
# anyway) and in the runs on other nbdkits (make check-nbdkit-VERSION
# puts one built under build/ first on PATH; its version is then not
# the nbdkit package's either), or where pkg-config finds another nbdkit
# than the one on PATH.

requires_system_run ()
{
  local path fdir d have deb pc
  if [ -n "${CE_SAN_MODE:-}" ]; then
    echo "$0: test skipped: not under the $CE_SAN_MODE runner" \
         "(it builds packages, it runs none of the filter's code)"
    exit 77
  fi
  path=$(command -v nbdkit)
  have=$(nbdkit --version | awk '{ print $2 }')
  # An nbdkit built under build/ (build/nbdkit-VERSION may be a link).
  fdir=$(readlink -f "$(nbdkit --dump-config | sed -n 's/^filterdir=//p')")
  for d in "$top"/build/nbdkit-*/; do
    d=$(readlink -f "$d")
    case $fdir in
      "$d"/*)
        echo "$0: test skipped: the nbdkit on PATH ($path, $have) is one" \
             "built under build/: a run on another nbdkit (this test runs" \
             "in the one on the system's)"
        exit 77 ;;
    esac
  done
  deb=$(dpkg-query -W -f='${Version}' nbdkit 2>/dev/null |
          sed -e 's/^[0-9]*://' -e 's/-[^-]*$//' || :)
  if [ -n "$deb" ] && [ "$deb" != "$have" ]; then
    echo "$0: test skipped: the nbdkit on PATH ($path) is $have, the" \
         "nbdkit package's is $deb: a run on another nbdkit"
    exit 77
  fi
  pc=$(pkg-config --modversion nbdkit 2>/dev/null || echo none)
  if [ "$pc" != "$have" ]; then
    echo "$0: test skipped: pkg-config finds nbdkit $pc" \
         "(PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-}), the one on PATH is $have"
    exit 77
  fi
}

# The release number of src/version.h.
ce_version ()
{
  sed -n 's/^#define CACHEEXTENTS_VERSION "\(.*\)"$/\1/p' "$top/src/version.h"
}

# requires_git_checkout: make deb and make rpm take the make dist
# tarball, which needs git.
requires_git_checkout ()
{
  if ! git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "$0: test skipped: not a git checkout (make dist needs one)"
    exit 77
  fi
}

# tree_droppings: what git sees as untracked or ignored in the source
# tree's packaging directories, and package files beside the tree
# (where dpkg-buildpackage writes), so that a test can show a package
# build left nothing behind.
tree_droppings ()
{
  git -C "$top" status --porcelain --ignored -- debian rpm
  ls -d "$top"/../*.deb "$top"/../*.changes "$top"/../*.buildinfo \
    "$top"/../*.rpm 2>/dev/null || true
}
