# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Shared helpers for the shell tests.  Source it from a test:
#
#   . "$(dirname "$0")/functions.sh"
#
# It sets:
#   top      the top of the source tree
#   FILTER   the filter under test: $CACHEEXTENTS_FILTER if set (a path,
#            or a bare name such as "cacheextents" for the one installed
#            with nbdkit), else $top/build/nbdkit-cacheextents-filter.so.
#            By name, "cacheextents" is nbdkit's own filter before 1.45.1
#            and none or this one (make install) after:
#            cacheextents_by_name tells which.
#   PYTHON   a python3 that has the libnbd 'nbd' module
#   tmp      a fresh temporary directory, removed when the test exits
#   log      $tmp/log, the default logfile for the log filter
#   CE_OPTS  parameters every test passes to the filter (see below)
#   py       the prefix for running a python test script from --run:
#              nbdkit ... --run "$py $tmp/t.py"
#            The script can 'from cetest import *' (written to $tmp).
#
# Counting backend calls: put '--filter=log logfile=$log' AFTER the
# filter under test on the command line, so that it sits below it and
# sees only what the cache passes down.  The log filter writes a line
# as each call starts, so counts can be taken step by step from inside
# one --run.

set -e
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILTER=${CACHEEXTENTS_FILTER:-$top/build/nbdkit-cacheextents-filter.so}
PYTHON=${PYTHON:-/usr/bin/python3}
export top FILTER PYTHON

# requires CMD...: skip the test (exit 77) unless every CMD is found.
requires ()
{
  local c
  for c in "$@"; do
    if ! command -v "$c" >/dev/null 2>&1; then
      echo "$0: test skipped: '$c' not found"
      exit 77
    fi
  done
}

# requires_python_nbd: skip unless $PYTHON can import the nbd module.
requires_python_nbd ()
{
  requires "$PYTHON"
  if ! "$PYTHON" -c 'import nbd' >/dev/null 2>&1; then
    echo "$0: test skipped: $PYTHON lacks the libnbd 'nbd' module"
    exit 77
  fi
}

# requires_nbdkit_plugin NAME / requires_nbdkit_filter NAME: skip
# unless nbdkit has them.
requires_nbdkit_plugin ()
{
  if ! nbdkit "$1" --version >/dev/null 2>&1; then
    echo "$0: test skipped: nbdkit plugin '$1' not available"
    exit 77
  fi
}

requires_nbdkit_filter ()
{
  if ! nbdkit --filter="$1" null --version >/dev/null 2>&1; then
    echo "$0: test skipped: nbdkit filter '$1' not available"
    exit 77
  fi
}

requires nbdkit timeout

# The filter must exist (make builds it before the tests run).
case $FILTER in
  */*)
    if [ ! -f "$FILTER" ]; then
      echo "$0: test skipped: filter not built: $FILTER"
      exit 77
    fi ;;
  *) requires_nbdkit_filter "$FILTER" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cacheextents-test.XXXXXX")
servers=()
cleanup ()
{
  local rc=$? pid
  for pid in "${servers[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  [ "${#servers[@]}" -eq 0 ] || wait 2>/dev/null || true
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log=$tmp/log
export tmp log

# Background prefetch would make backend call counts depend on timing.
# Our filter accepts cacheextents-prefetch=false; a filter that does not
# know the key (nbdkit's bundled filter, or ours before prefetch exists)
# refuses it, and then there is nothing to turn off.
CE_OPTS=
if timeout 20 nbdkit -U - --filter="$FILTER" null \
     cacheextents-prefetch=false --run true >/dev/null 2>&1; then
  CE_OPTS=cacheextents-prefetch=false
fi
export CE_OPTS

# Whether the filter under test understands a parameter KEY (as listed
# by --help).
filter_has_param ()
{
  nbdkit --filter="$FILTER" null --help 2>/dev/null | grep -q -- "^$1="
}

# stats_value KEY FILE: N of each 'KEY=N' in the summary line(s) that
# cacheextents-statsfile=FILE wrote ('... hits=10 misses=2 ...').
stats_value ()
{
  sed -n "s/.* $1=\([0-9]*\).*/\1/p" "$2"
}

# backend_calls [LOGFILE]: extents calls the log filter has seen so
# far.  Call lines look like 'connection=1 Extents id=2 offset=...'
# and their returns like '...Extents id=2 ... return=0'.
backend_calls ()
{
  grep -c ' Extents id=' "${1:-$log}" || true
}

# start_server NAME ARGS...: 'nbdkit --foreground --exit-with-parent
# --pidfile $tmp/NAME.pid ARGS...' in the background, its stderr
# appended to $tmp/NAME.err; returns once the pidfile is written (nbdkit
# is then serving), at most 30 s.  nbdkit leaves its -U socket behind
# when it exits, so a socket of that name is removed first.  The test's
# exit kills what is left.
start_server ()
{
  local name=$1 i pid prev=
  shift
  for i in "$@"; do
    [ "$prev" = -U ] && rm -f "$i"
    prev=$i
  done
  rm -f "$tmp/$name.pid"
  nbdkit --foreground --exit-with-parent --pidfile "$tmp/$name.pid" "$@" \
    2>>"$tmp/$name.err" &
  pid=$!
  servers+=("$pid")
  eval "pid_$name=$pid"
  for ((i = 0; i < 300; i++)); do
    [ -s "$tmp/$name.pid" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "FAIL: nbdkit $name exited as it started:"
      cat "$tmp/$name.err"
      exit 1
    fi
    sleep 0.1
  done
  echo "FAIL: nbdkit $name did not start in 30 s"
  exit 1
}

# stop_server NAME: SIGTERM to the server start_server started, and
# wait for it (at most 30 s, then SIGKILL); fails unless it exits 0.
# Under a sanitizer or valgrind (tests/sanitizers/run.sh) it first
# waits, up to CE_SAN_IDLE_WAIT seconds (default 10), until the server
# is down to its main thread, as the --run wrapper there does: a client
# that has just hung up may still be closing, and nbdkit skips the
# .close of every layer once told to quit, so each layer's handle
# would be reported as leaked (CI, test-cdi.sh under ASan: the nbd
# plugin's handle, allocated beneath our .open).
stop_server ()
{
  local pid rc=0 i
  eval "pid=\$pid_$1"
  if [ -n "${CE_SAN_MODE:-}" ]; then
    for ((i = 0; i < ${CE_SAN_IDLE_WAIT:-10} * 20; i++)); do
      [ "$(ls "/proc/$pid/task" 2>/dev/null | wc -l)" -gt 1 ] || break
      sleep 0.05
    done
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "FAIL: nbdkit $1 exited with status $rc; its stderr:"
    tail -n 30 "$tmp/$1.err"
    exit 1
  fi
  echo "ok: nbdkit $1 exited cleanly"
}

# kill_server NAME: SIGKILL to the server start_server started, and
# wait for it, whatever its status: a server that dies, as a crashed or
# power-cut back end would, with its connections and calls mid-way.
kill_server ()
{
  local pid
  eval "pid=\$pid_$1"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# overlaps [LOGFILE]: calls that started on a context while another
# call of that context was in flight, as the log filter saw them (one
# "connection" of the log filter per context).
overlaps ()
{
  awk '
    / connection=[0-9]+ / && match($0, / id=[0-9]+/) {
      match($0, /connection=[0-9]+/)
      c = substr($0, RSTART + 11, RLENGTH - 11)
      if ($0 ~ / \.\.\.[A-Z][a-z]+ id=/) { busy[c]--; next }
      if ($0 ~ / (Read|Write|Extents|Trim|Zero|Flush|Cache) id=/) {
        if (busy[c] > 0) n++
        busy[c]++
      }
    }
    END { print n + 0 }' "${1:-$log}"
}

# contexts [LOGFILE]: how many contexts the log filter saw opened.
contexts ()
{
  grep -c ' connection=[0-9]* Connect ' "${1:-$log}" || true
}

# assert_eq WHAT EXPECTED ACTUAL
assert_eq ()
{
  if [ "$2" != "$3" ]; then
    echo "FAIL: $1: expected '$2', got '$3'"
    exit 1
  fi
  echo "ok: $1 = $3"
}

# The shell prefix for --run that runs a python script with the
# connection details exported (nbdkit only sets them as shell variables).
py='export uri unixsocket exportname; exec "$PYTHON"'
export PYTHONPATH=$tmp${PYTHONPATH:+:$PYTHONPATH}

# A small python module for exact block status checks.
cat > "$tmp/cetest.py" <<'EOF'
"""Helpers for the cacheextents tests (generated by functions.sh)."""
import os
import re
import sys
import time
import nbd

SOCK = os.environ.get("unixsocket")
LOG = os.environ.get("log")
HOLE = nbd.STATE_HOLE
ZERO = nbd.STATE_ZERO


def conn(export="", sock=None):
    """A handle connected to the server, with base:allocation."""
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.set_export_name(export)
    h.connect_unix(sock or SOCK)
    if not h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION):
        fail("server does not offer base:allocation")
    return h


def bs(h, offset, count, req_one=False):
    """One block status request: [(offset, length, flags), ...]."""
    out = []

    def cb(ctx, off, entries, err):
        if ctx == nbd.CONTEXT_BASE_ALLOCATION:
            o = off
            for i in range(0, len(entries), 2):
                out.append((o, entries[i], entries[i + 1]))
                o += entries[i]
        return 0

    h.block_status(count, offset, cb,
                   nbd.CMD_FLAG_REQ_ONE if req_one else 0)
    if not out or out[0][0] != offset:
        fail("block status at %#x returned %r" % (offset, out))
    return out


def flags_at(h, offset, count=512):
    """The flags of the extent starting at offset."""
    return bs(h, offset, count, req_one=True)[0][2]


def walk(h, offset=0, end=None, req_one=False, step=None):
    """The map of [offset, end), by as many requests as needed,
    coalesced and clipped to the range: [(offset, length, flags)]."""
    if end is None:
        end = h.get_size()
    out = []
    while offset < end:
        count = min(end - offset, step or 0xffffffff & ~511)
        got = bs(h, offset, count, req_one)
        for (o, l, f) in got:
            if o >= end:
                break
            l = min(l, end - o)
            if out and out[-1][2] == f and out[-1][0] + out[-1][1] == o:
                out[-1] = (out[-1][0], out[-1][1] + l, f)
            else:
                out.append((o, l, f))
        offset = got[-1][0] + got[-1][1]
    return out


CALL_RE = re.compile(r"connection=(\d+) Extents id=\d+ offset=(0x[0-9a-f]+) "
                     r"count=(0x[0-9a-f]+) req_one=(\d)")


def backend_log(logfile=None):
    """Backend extents calls so far: [(connection, offset, count, req_one)]."""
    out = []
    with open(logfile or LOG) as f:
        for line in f:
            m = CALL_RE.search(line)
            if m:
                out.append((int(m.group(1)), int(m.group(2), 16),
                            int(m.group(3), 16), int(m.group(4))))
    return out


def calls(logfile=None):
    """Number of backend extents calls so far."""
    return len(backend_log(logfile))


def fail(msg):
    print("FAIL: " + msg, flush=True)
    if LOG and os.path.exists(LOG):
        print("last lines of the log filter's log:")
        with open(LOG) as f:
            for line in f.readlines()[-20:]:
                print("    " + line.rstrip())
    sys.stdout.flush()
    os._exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg, flush=True)


def eq(what, expected, actual):
    if expected != actual:
        fail("%s: expected %r, got %r" % (what, expected, actual))
    print("ok: %s = %r" % (what, actual), flush=True)


def cost(fn, *args, **kw):
    """Run fn and return (backend calls it caused, its result)."""
    before = calls()
    r = fn(*args, **kw)
    return calls() - before, r


def fmt(extents):
    return " ".join("%#x+%#x:%d" % e for e in extents)
EOF

# nbdkit_at_least VERSION: the nbdkit on PATH is VERSION or later.
nbdkit_at_least ()
{
  local have
  have=$(nbdkit --version | awk '{ print $2 }')
  [ "$(printf '%s\n%s\n' "$1" "$have" | sort -V | head -n 1)" = "$1" ]
}

# What --filter=cacheextents loads by name in the nbdkit on PATH:
# 'ours' (it lists cacheextents-window=), 'nbdkit' (nbdkit's bundled
# filter, before 1.45.1) or 'none'.
cacheextents_by_name ()
{
  local help
  if ! help=$(timeout 20 nbdkit --filter=cacheextents null --help 2>/dev/null); then
    echo none
  elif grep -q '^cacheextents-window=' <<<"$help"; then
    echo ours
  else
    echo nbdkit
  fi
}

# mk ARGS...: make at the top of the tree with the build in $tmp/build,
# not build/, and without the MAKEFLAGS of a make that runs the tests.
mk ()
{
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
    timeout 300 make -C "$top" --no-print-directory BUILD="$tmp/build" "$@"
}

# tree_state DIR: every path below DIR, its type, and a checksum of
# each file's content, sorted: two states compare equal if nothing was
# added, removed or changed.
tree_state ()
{
  (cd "$1" && find . -mindepth 1 -printf '%y %p\n' | LC_ALL=C sort |
     while read -r type path; do
       if [ "$type" = f ]; then
         echo "$type $path $(sha256sum < "$path" | cut -c1-16)"
       else
         echo "$type $path"
       fi
     done)
}

# assert_same_tree WHAT BEFORE AFTER: two tree_state outputs are equal.
assert_same_tree ()
{
  if [ "$2" != "$3" ]; then
    echo "FAIL: $1: the tree changed:"
    diff -u <(echo "$2") <(echo "$3") || true
    exit 1
  fi
  echo "ok: $1: the tree is as it was"
}
