#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
"""A client that reads a disk the way KubeVirt CDI's VDDK importer does.

It asks block status with REQ_ONE (one extent per request) over windows
of 2 GiB, in order, and reads each data extent it finds before it goes
on to the next window.

  cdi-client.py [--window BYTES] [--read full|head|none] [--verify URI2]
                [--map-out FILE] [--truth FILE] [URI]

--read full reads every data extent whole, in pieces of at most 32 MiB
(as the importer does); head reads its first 4 KiB; none reads nothing.
--verify reads every piece again from URI2 (the same disk without a
cache, say) and fails at the first piece that differs.
--map-out writes the map seen, coalesced, as JSON [[offset, length,
flags], ...]; --truth compares it with such a file and fails if they
differ.  URI defaults to $uri if exported (nbdkit --run sets it but does
not export it: pass "$uri").  It prints one line:
  cdi-client: extents=N data=BYTES reads=N block_status=N
"""

import argparse
import json
import os
import sys

import nbd

HOLE = nbd.STATE_HOLE
ZERO = nbd.STATE_ZERO
PIECE = 32 << 20
HEAD = 4096


def main():
    p = argparse.ArgumentParser(description="a CDI-like NBD client")
    p.add_argument("--window", type=int, default=2 << 30)
    p.add_argument("--read", choices=("full", "head", "none"),
                   default="full")
    p.add_argument("--verify")
    p.add_argument("--map-out")
    p.add_argument("--truth")
    p.add_argument("uri", nargs="?", default=os.environ.get("uri"))
    a = p.parse_args()
    if not a.uri:
        sys.exit("cdi-client: no URI given and $uri is not set")

    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(a.uri)
    size = h.get_size()
    got = []            # (offset, length, flags), coalesced
    data = reads = calls = 0
    check = None
    if a.verify:
        check = nbd.NBD()
        check.connect_uri(a.verify)

    def one(ctx, offset, entries, err):
        # REQ_ONE: the first (length, flags) pair is the answer.
        if ctx == nbd.CONTEXT_BASE_ALLOCATION and entries:
            answer.append((entries[0], entries[1]))
        return 0

    for w in range(0, size, a.window):
        end = min(w + a.window, size)
        pos = w
        while pos < end:
            answer = []
            h.block_status(end - pos, pos, one, nbd.CMD_FLAG_REQ_ONE)
            calls += 1
            if not answer or answer[0][0] == 0:
                sys.exit("cdi-client: no extent at %d" % pos)
            length = min(answer[0][0], end - pos)
            flags = answer[0][1] & (HOLE | ZERO)
            if not flags & (HOLE | ZERO):
                n = {"full": length, "head": min(length, HEAD),
                     "none": 0}[a.read]
                for o in range(pos, pos + n, PIECE):
                    buf = h.pread(min(PIECE, pos + n - o), o)
                    reads += 1
                    if check and buf != check.pread(len(buf), o):
                        sys.exit("cdi-client: the %d bytes read at %d differ "
                                 "from %s" % (len(buf), o, a.verify))
                data += length
            if got and got[-1][2] == flags and sum(got[-1][:2]) == pos:
                got[-1] = (got[-1][0], got[-1][1] + length, flags)
            else:
                got.append((pos, length, flags))
            pos += length
    h.shutdown()
    if check:
        check.shutdown()

    if a.map_out:
        with open(a.map_out, "w") as f:
            json.dump(got, f)
    print("cdi-client: extents=%d data=%d reads=%d block_status=%d%s"
          % (len(got), data, reads, calls,
             " verified" if check else ""))
    if a.truth:
        with open(a.truth) as f:
            truth = [tuple(e) for e in json.load(f)]
        if got != truth:
            diff = next((i for i, (x, y) in enumerate(zip(got, truth))
                         if x != y), min(len(got), len(truth)))
            sys.exit("cdi-client: the map differs from %s at extent %d: "
                     "%s, expected %s" % (a.truth, diff,
                                          got[diff:diff + 1],
                                          truth[diff:diff + 1]))
        print("cdi-client: the map is exactly %s (%d extents)"
              % (a.truth, len(truth)))


main()
