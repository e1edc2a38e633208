#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# make install then make uninstall leaves a DESTDIR exactly as it was:
# the filter and man page go to nbdkit's filterdir and mandir (moved
# along with prefix= when one is given), the directories install created
# are removed again, and the ones that were there before are kept.
. "$(dirname "$0")/functions.sh"
requires make pkg-config pod2man

dest=$tmp/dest
# Something that was there before and must stay.
mkdir -p "$dest/usr/share/man/man1" "$dest/opt/ce/share"
echo keep > "$dest/usr/share/man/man1/other.1"
before=$(tree_state "$dest")

mk all >/dev/null
built=$tmp/build/nbdkit-cacheextents-filter.so

# nbdkit's filterdir and mandir, as pkg-config reports them, and the
# same moved to the prefix /opt/ce.
fdir=$(pkg-config --variable=filterdir nbdkit)
opt_fdir=$(pkg-config --define-variable=prefix=/opt/ce --variable=filterdir nbdkit)
case $opt_fdir in /opt/ce/*) ;; *)
  echo "FAIL: filterdir does not follow the prefix: $opt_fdir"; exit 1 ;;
esac

# Nothing installed: uninstall changes nothing and succeeds.
mk uninstall DESTDIR="$dest"
assert_same_tree "uninstall of nothing" "$before" "$(tree_state "$dest")"

for args in "" "prefix=/opt/ce"; do
  if [ -z "$args" ]; then dir=$fdir; else dir=$opt_fdir; fi
  prefix=${args#prefix=}
  prefix=${prefix:-$(pkg-config --variable=prefix nbdkit)}
  # shellcheck disable=SC2086
  {
    mk install DESTDIR="$dest" $args
    cmp "$built" "$dest$dir/nbdkit-cacheextents-filter.so"
    echo "ok: installed into $dir"
    [ -f "$dest$prefix/share/man/man1/nbdkit-cacheextents-filter.1" ]
    echo "ok: man page in $prefix/share/man/man1"
    # A second install is no different from one.
    mk install DESTDIR="$dest" $args >/dev/null
    mk uninstall DESTDIR="$dest" $args
  }
  assert_same_tree "install ${args:-with the default prefix} then uninstall" \
    "$before" "$(tree_state "$dest")"
done
