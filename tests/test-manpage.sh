#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The man page: valid POD, nbdkit's section order, every parameter that
# --help lists has an item in PARAMETERS, SEE ALSO names the related
# nbdkit filters, and the examples give filter parameters after the
# plugin name (nbdkit reads the first bare word as the plugin).
. "$(dirname "$0")/functions.sh"
requires podchecker
pod=$top/src/nbdkit-cacheextents-filter.pod

podchecker "$pod" >"$tmp/podchecker" 2>&1 || {
  cat "$tmp/podchecker"; echo "FAIL: podchecker"; exit 1; }
if grep -q WARNING "$tmp/podchecker"; then
  cat "$tmp/podchecker"; echo "FAIL: podchecker warnings"; exit 1
fi
echo "ok: podchecker"

order="NAME SYNOPSIS DESCRIPTION PARAMETERS EXAMPLES DEBUG_FLAGS FILES
VERSION SEE_ALSO AUTHORS COPYRIGHT LICENSE"
got=$(sed -n 's/^=head1 //p' "$pod" | tr ' ' _ | tr '\n' ' ')
assert_eq "sections" "$(echo $order)" "$(echo $got)"
sed -n '/^=head1 DESCRIPTION/,/^=head1 PARAMETERS/p' "$pod" |
  grep -q '^=head2 Limitations' || {
  echo "FAIL: DESCRIPTION has no Limitations subsection"; exit 1; }
echo "ok: DESCRIPTION has a Limitations subsection"

failed=0
params=$(sed -n '/^=head1 PARAMETERS/,/^=head1 /p' "$pod")
for key in $(nbdkit --filter="$FILTER" null --help 2>&1 |
             sed -n 's/^\(cacheextents-[a-z-]*\)=.*/\1/p'); do
  if echo "$params" | grep -q "^=item B<$key="; then
    echo "ok: PARAMETERS documents $key"
  else
    echo "FAIL: PARAMETERS lacks $key"; failed=1
  fi
done

seealso=$(sed -n '/^=head1 SEE ALSO/,/^=head1 /p' "$pod")
for f in cache readahead scan retry log stats; do
  if echo "$seealso" | grep -q "L<nbdkit-$f-filter(1)>"; then
    echo "ok: SEE ALSO names nbdkit-$f-filter"
  else
    echo "FAIL: SEE ALSO lacks nbdkit-$f-filter(1)"; failed=1
  fi
done

# Figures of measurements belong in the README, not among parameters.
if echo "$params" | grep -qE '[0-9]\.[0-9]+ ?s\b'; then
  echo "FAIL: PARAMETERS holds timings:"
  echo "$params" | grep -E '[0-9]\.[0-9]+ ?s\b'; failed=1
fi

# In the verbatim examples, every nbdkit command names the plugin before
# any KEY=VALUE (nbdkit takes the first bare word for the plugin).
cat > "$tmp/order.py" <<'PY'
import re, shlex, sys
text = open(sys.argv[1]).read()
# Join the continuation lines of verbatim paragraphs.
text = re.sub(r"\\\n\s*", " ", text)
with_arg = {"-U", "-D", "-e", "-P", "-p", "-t", "-i", "-u", "-g",
            "--run", "--unix", "--debug", "--exportname"}
bad = 0
for line in text.splitlines():
    if not line.startswith(" nbdkit "):
        continue
    words = shlex.split(line.split("|")[0])[1:]
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in with_arg:
            skip = True
        elif w.startswith("-"):
            continue
        elif "=" in w:
            print("parameter %s before the plugin in: %s" % (w, line.strip()))
            bad = 1
            break
        else:
            break
sys.exit(bad)
PY
if "$PYTHON" "$tmp/order.py" "$pod"; then
  echo "ok: every example names the plugin before its parameters"
else
  echo "FAIL: an example gives a parameter before the plugin name"; failed=1
fi

exit $failed
