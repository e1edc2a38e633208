#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Put the licence header at the top of every source file:
#
#   scripts/licence-headers.sh [--check] [DIR]
#
# The files: *.c *.h *.sh *.py *.gp *.pod under src/, tests/, fuzz/,
# bench/ and scripts/ of DIR (default: the top of this tree), those git
# tracks when DIR is a git checkout, else all found there.  A file that
# already has an SPDX-License-Identifier line in its first five lines is
# left alone, so the script can be run again at any time (after a merge,
# for new files).  A '#!' line stays first; the header goes after it.
#
# --check changes nothing: it lists the files without a header and
# exits 1 if there are any.
set -eu

spdx="SPDX-License-Identifier: BSD-3-Clause"
holder="Copyright the cacheextents authors."

check=false
if [ "${1-}" = --check ]; then check=true; shift; fi
dir=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$dir"

list_files ()
{
  local dirs="src tests fuzz bench scripts"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    git ls-files -- $dirs
  else
    # shellcheck disable=SC2086
    find $dirs -type f 2>/dev/null | sort
  fi | grep -E '\.(c|h|sh|py|gp|pod)$' || true
}

# The header lines for a file, in its comment syntax.
header ()
{
  case $1 in
    *.c|*.h) printf '/* %s\n * %s\n */\n' "$spdx" "$holder" ;;
    # POD ignores text before its first command paragraph; the blank
    # line ends this paragraph.
    *.pod) printf '=for comment %s\n%s\n\n' "$spdx" "$holder" ;;
    *) printf '# %s\n# %s\n' "$spdx" "$holder" ;;
  esac
}

missing=0
while IFS= read -r f; do
  [ -f "$f" ] || continue
  if head -n 5 "$f" | grep -q 'SPDX-License-Identifier:'; then
    continue
  fi
  missing=$((missing + 1))
  if $check; then
    echo "$f"
    continue
  fi
  tmp=$(mktemp "$f.XXXXXX")
  {
    if head -n 1 "$f" | grep -q '^#!'; then
      head -n 1 "$f"
      header "$f"
      tail -n +2 "$f"
    else
      header "$f"
      cat "$f"
    fi
  } > "$tmp"
  chmod --reference="$f" "$tmp"
  mv "$tmp" "$f"
  echo "licence-headers: $f"
done < <(list_files)

if $check && [ "$missing" -gt 0 ]; then
  echo "licence-headers: $missing file(s) without a licence header" >&2
  exit 1
fi
exit 0
