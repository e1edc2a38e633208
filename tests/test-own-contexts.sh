#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Prefetch's own backend contexts (nbdkit >= 1.43.9, where a context a
# filter opens itself knows its export name): `file dir=` with two
# files of different allocation, served read-only (so each export's
# connections share a map).  A client walks each export, and prefetch
# runs ahead of it through contexts of its own: the log filter
# below the cache shows extents calls on connections other than the
# clients', every map walked equals the plugin's own for that export,
# and a second walk makes no backend call.  On an older nbdkit
# the test is skipped (prefetch uses the client's context there, which
# the other prefetch tests cover).
. "$(dirname "$0")/functions.sh"
requires_python_nbd
requires_nbdkit_plugin file
requires_nbdkit_filter log
v=$(nbdkit --version | awk '{print $2}')
if ! printf '1.43.9\n%s\n' "$v" | sort -V -C; then
  echo "$0: test skipped: nbdkit $v has no contexts of a filter's own"
  exit 77
fi

mkdir "$tmp/dir"
truncate -s 512M "$tmp/dir/a" "$tmp/dir/b"
dd if=/dev/urandom of="$tmp/dir/a" bs=1M count=1 seek=100 conv=notrunc \
   status=none
dd if=/dev/urandom of="$tmp/dir/b" bs=1M count=2 seek=300 conv=notrunc \
   status=none

cat > "$tmp/t.py" <<'PY'
import os
from cetest import *

ref = {e: conn(export=e, sock=os.environ["refsock"]) for e in "ab"}
hs = {e: conn(export=e) for e in "ab"}
# Each client walks its export in small REQ_ONE steps, as qemu does:
# prefetch runs ahead of it on its own contexts.
for e in "ab":
    eq("export %s's map" % e, fmt(walk(ref[e])),
       fmt(walk(hs[e], req_one=True, step=4 << 20)))
log = backend_log()
clients = set(c for (c, o, n, one) in log[:2])
others = [x for x in log if x[0] not in clients]
print("%d backend calls, %d of them on contexts of prefetch's own"
      % (len(log), len(others)))
check(len(others) > 0, "prefetch calls on contexts of its own")
check(len(log) <= 2 * 16 + 4, "calls for both walks (%d <= 36)" % len(log))
# And once more: all known now.
for e in "ab":
    n, m = cost(walk, hs[e])
    eq("backend calls for export %s's second walk" % e, 0, n)
PY

rm -f "$tmp/ref.sock"
timeout 120 nbdkit -U "$tmp/ref.sock" file dir="$tmp/dir" --run "
  refsock=$tmp/ref.sock; export refsock
  nbdkit -U - -r --filter='$FILTER' --filter=log file dir='$tmp/dir' \
    logfile='$log' cacheextents-window=32M --run '$py $tmp/t.py'"

# A context prefetch opens must see the size the map was made for: an
# export that shrinks between the first connection's open and the
# opening of prefetch's contexts (here the eval plugin answers 1G to
# the first get_size and 16M after) must not be asked past its end
# (nbdkit asserted in backend_extents).
if nbdkit eval --version >/dev/null 2>&1; then
  echo "== an export that changes size under prefetch's contexts"
  cat > "$tmp/size.py" <<'PY'
from cetest import *
h = conn()
eq("flags at 0", HOLE | ZERO, flags_at(h, 0))
time.sleep(1)
eq("the server answers after prefetch ran", 1 << 30, h.get_size())
PY
  timeout 60 nbdkit -U - -r --filter="$FILTER" eval \
    get_size="n=\$(cat $tmp/n 2>/dev/null || echo 0); echo \$((n+1)) > $tmp/n
              [ \$n -eq 0 ] && echo 1G || echo 16M" \
    pread='dd if=/dev/zero count=$3 iflag=count_bytes status=none' \
    can_extents='exit 0' extents='echo $4 $3 hole,zero' \
    thread_model='echo parallel' cacheextents-window=1M \
    --run "$py $tmp/size.py"
fi

# A context a filter opens is a TLS one only when the server requires
# TLS: with --tls=on, a TLS client's map must not be filled through
# such a context.  The eval plugin says data to TLS connections and a
# hole to others ($4 of open is the TLS flag).
if nbdkit eval --version >/dev/null 2>&1 &&
   nbdkit --dump-config | grep -q '^tls=yes'; then
  echo "== TLS and plaintext clients of one export"
  printf 'alice:%s\n' \
    f6c9eb931b616731582c08865f83ddc5ab04037080f5316b089b139509517bc5 \
    > "$tmp/psk"
  cat > "$tmp/tls.py" <<'PY'
import os
from cetest import *
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_psk_file(os.environ["tmp"] + "/psk")
h.set_tls_username("alice")
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_unix(os.environ["unixsocket"])
for off in range(0, 16 << 20, 1 << 20):
    eq("TLS client's flags at %#x" % off, 0, flags_at(h, off))
    time.sleep(0.1)         # prefetch runs ahead meanwhile
h.shutdown()
PY
  timeout 60 nbdkit -U - -r --tls=on --tls-psk="$tmp/psk" --filter="$FILTER" \
    eval open='echo $4' get_size='echo 64M' \
    pread='dd if=/dev/zero count=$3 iflag=count_bytes status=none' \
    can_extents='exit 0' thread_model='echo parallel' \
    extents='if [ "$2" = true ]; then echo $4 $3 0; else echo $4 $3 3; fi' \
    cacheextents-window=1M --run "$py $tmp/tls.py"
fi
