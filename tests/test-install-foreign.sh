#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# make install where a file of the filter's name belongs to a package
# (Debian's nbdkit 1.32.5 ships nbdkit-cacheextents-filter.so): it must
# change nothing, exit non-zero and say how to load the filter by path
# and how to opt in; with DIVERT=yes it diverts the package's files
# (dpkg-divert), and make uninstall restores them exactly.
#
# All of it happens in a DESTDIR laid out like Debian's nbdkit package,
# with a dpkg database of its own in DESTDIR/var/lib/dpkg; the
# machine's own files are checked to be untouched.
. "$(dirname "$0")/functions.sh"
requires make dpkg-query dpkg-divert pod2man

root=$tmp/root
fdir=/usr/lib/x86_64-linux-gnu/nbdkit/filters
mdir=/usr/share/man
so=$fdir/nbdkit-cacheextents-filter.so
man=$mdir/man1/nbdkit-cacheextents-filter.1.gz
vars=(DESTDIR="$root" prefix=/usr filterdir="$fdir" mandir="$mdir")

# The package's files and their record in the DESTDIR's dpkg database.
mkdir -p "$root$fdir" "$root$mdir/man1" "$root/var/lib/dpkg/info" \
  "$root/var/lib/dpkg/updates"
echo "nbdkit's own filter" > "$root$so"
echo "nbdkit's own man page" | gzip > "$root$man"
printf '%s\n' "Package: nbdkit" "Status: install ok installed" \
  "Version: 1.32.5-1" "Architecture: amd64" "Maintainer: none <none@none>" \
  "Description: fake" "" > "$root/var/lib/dpkg/status"
printf '%s\n' /usr "$fdir" "$so" "$man" > "$root/var/lib/dpkg/info/nbdkit.list"

# The machine's files of these names, which nothing here may change.
system_state ()
{
  local f
  for f in "$so" "$mdir/man1/nbdkit-cacheextents-filter.1"*; do
    [ -e "$f" ] && echo "$f $(sha256sum < "$f")"
  done
  dpkg-divert --list '*cacheextents*' 2>/dev/null
  true
}
system_before=$(system_state)

mk all >/dev/null
built=$tmp/build/nbdkit-cacheextents-filter.so

# Without the opt-in: refused, nothing changed, and the message says
# what to do.
before=$(tree_state "$root")
if mk install "${vars[@]}" > "$tmp/out" 2>&1; then
  cat "$tmp/out"
  echo "FAIL: make install replaced a package's file without DIVERT=yes"
  exit 1
fi
cat "$tmp/out"
assert_same_tree "refused make install" "$before" "$(tree_state "$root")"
for want in "belongs to the package nbdkit" "nothing was changed" \
            "--filter=$tmp/build/nbdkit-cacheextents-filter.so" \
            "make install DIVERT=yes"; do
  grep -qF -- "$want" "$tmp/out" || { echo "FAIL: message lacks: $want"; exit 1; }
  echo "ok: the message says: $want"
done

# With DIVERT=yes: the package's files are moved aside under dpkg's
# control and ours take the name.
mk install "${vars[@]}" DIVERT=yes
cmp "$built" "$root$so"
echo "ok: the filter is installed by name"
assert_eq "diverted filter" "nbdkit's own filter" "$(cat "$root$so.distrib")"
assert_eq "diverted man page" "nbdkit's own man page" \
  "$(gzip -dc "$root$mdir/man1/nbdkit-cacheextents-filter.distrib.1.gz")"
[ ! -e "$root$man" ]
[ -f "$root$mdir/man1/nbdkit-cacheextents-filter.1" ]
diversions=$(dpkg-divert --root "$root" --list)
echo "$diversions"
assert_eq "diversions by cacheextents" 2 \
  "$(grep -c 'by cacheextents$' <<<"$diversions")"
# dpkg now attributes the name to the diversion.
dpkg-query --admindir "$root/var/lib/dpkg" -S "$so" | grep -q '^diversion by cacheextents'

# Installing again over our own files needs no opt-in and diverts
# nothing more.
mk install "${vars[@]}" >/dev/null
assert_eq "diversions after a second install" 2 \
  "$(dpkg-divert --root "$root" --list | grep -c 'by cacheextents$')"

# Uninstall: the package's files are back, the diversions gone, and the
# tree is as it was (dpkg's own bookkeeping files aside).
mk uninstall "${vars[@]}"
assert_eq "diversions left" "" "$(dpkg-divert --root "$root" --list)"
rm -f "$root/var/lib/dpkg/diversions" "$root/var/lib/dpkg/diversions-old"
assert_same_tree "install DIVERT=yes then uninstall" "$before" \
  "$(tree_state "$root")"

assert_eq "the machine's own files" "$system_before" "$(system_state)"
