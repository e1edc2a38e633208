#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Licence: LICENSE holds the BSD 3-Clause terms; every source file
# (*.c *.h *.sh *.py *.gp *.pod under src, tests, fuzz, bench, scripts)
# carries the SPDX header; scripts/licence-headers.sh puts it after a
# '#!' line, in each file's comment syntax, and a second run changes
# nothing; debian/copyright gives the same terms.
. "$(dirname "$0")/functions.sh"
script=$top/scripts/licence-headers.sh

if [ ! -f "$top/LICENSE" ]; then echo "FAIL: no LICENSE file"; exit 1; fi
for s in 'BSD 3-Clause' 'Copyright the cacheextents authors' \
         'Redistributions of source code must retain' \
         'Neither the name of the copyright holder' \
         'THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS'; do
  grep -q -F "$s" "$top/LICENSE" || {
    echo "FAIL: LICENSE lacks '$s'"; exit 1; }
done
echo "ok: LICENSE holds the BSD 3-Clause terms"

# The Debian package's machine-readable copyright file gives the same
# terms: its stand-alone License paragraph is LICENSE's text from
# "Redistribution" on, each line indented by one space, blank lines as
# " .".
copyright=$top/debian/copyright
grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' \
  "$copyright" || { echo "FAIL: debian/copyright is not DEP-5"; exit 1; }
awk '/^License: BSD-3-Clause$/ { n++; next } n == 2 && /^ / { print }' \
  "$copyright" | sed -e 's/^ //' -e 's/^\.$//' > "$tmp/deb-licence"
sed -n '/^Redistribution and use/,$p' "$top/LICENSE" > "$tmp/licence"
if ! diff -u "$tmp/licence" "$tmp/deb-licence"; then
  echo "FAIL: debian/copyright's BSD-3-Clause text differs from LICENSE"; exit 1
fi
echo "ok: debian/copyright gives LICENSE's terms"

if [ ! -x "$script" ]; then echo "FAIL: no $script"; exit 1; fi

# Every source file of this tree has the header.
if ! "$script" --check "$top" >"$tmp/missing" 2>&1; then
  echo "FAIL: files without a licence header:"; cat "$tmp/missing"; exit 1
fi
echo "ok: every source file has a licence header"

# The script on a small tree of each kind of file.
mkdir -p "$tmp/t/src" "$tmp/t/tests" "$tmp/t/bench"
printf '/* a */\nint x;\n' > "$tmp/t/src/a.c"
printf '#!/usr/bin/env bash\n# b\necho b\n' > "$tmp/t/tests/b.sh"
printf '# sourced\nc=1\n' > "$tmp/t/tests/c.sh"
printf '#!/usr/bin/python3\nprint(1)\n' > "$tmp/t/tests/d.py"
printf '# plot\nset term png\n' > "$tmp/t/bench/e.gp"
printf '=head1 NAME\n\nf - g\n\n=cut\n' > "$tmp/t/src/f.pod"
printf 'no header wanted\n' > "$tmp/t/src/notes.txt"
chmod +x "$tmp/t/tests/b.sh"
(cd "$tmp/t" && GIT_DIR=/nonexistent "$script" "$tmp/t") >/dev/null
cp -r "$tmp/t" "$tmp/once"
(cd "$tmp/t" && GIT_DIR=/nonexistent "$script" "$tmp/t") >"$tmp/again"
if [ -s "$tmp/again" ] || ! diff -r "$tmp/once" "$tmp/t"; then
  echo "FAIL: a second run changed files:"; cat "$tmp/again"; exit 1
fi
echo "ok: a second run changes nothing"
for f in tests/b.sh tests/d.py; do
  case $(head -n 1 "$tmp/t/$f") in
    '#!'*) ;;
    *) echo "FAIL: $f: the #! line is no longer first"; exit 1 ;;
  esac
  sed -n 2p "$tmp/t/$f" | grep -q '^# SPDX-License-Identifier: BSD-3-Clause$' ||
    { echo "FAIL: $f: no header after the #! line"; head -n 3 "$tmp/t/$f"; exit 1; }
done
[ -x "$tmp/t/tests/b.sh" ] || { echo "FAIL: b.sh lost its mode"; exit 1; }
echo "ok: #! lines stay first, modes are kept"
head -n 1 "$tmp/t/src/a.c" | grep -q '^/\* SPDX-License-Identifier: BSD-3-Clause$' ||
  { echo "FAIL: a.c header"; head -n 3 "$tmp/t/src/a.c"; exit 1; }
head -n 1 "$tmp/t/tests/c.sh" | grep -q '^# SPDX' ||
  { echo "FAIL: c.sh header"; exit 1; }
head -n 1 "$tmp/t/bench/e.gp" | grep -q '^# SPDX' ||
  { echo "FAIL: e.gp header"; exit 1; }
if head -n 1 "$tmp/t/src/notes.txt" | grep -q SPDX; then
  echo "FAIL: a .txt file got a header"; exit 1
fi
if command -v podchecker >/dev/null; then
  podchecker "$tmp/t/src/f.pod" >/dev/null 2>&1 ||
    { echo "FAIL: the header breaks POD"; exit 1; }
fi
grep -q 'Copyright the cacheextents authors' "$tmp/t/src/f.pod" ||
  { echo "FAIL: f.pod header"; exit 1; }
echo "ok: each kind of file gets the header in its own syntax"
