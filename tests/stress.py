#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
"""Differential stress test for the cacheextents filter.

Two servers serve the same disk:

  BACK   the truth (nbdkit memory or file plugin), on --back SOCKET;
  FRONT  nbdkit with the filter under test over the nbd plugin
         connected to BACK (usually with the delay filter between the
         two), on --front SOCKET (default: $unixsocket from --run).

Several threads, each with its own connection to FRONT (and one to
BACK for checking), issue random pwrite, trim, zero (with NO_HOLE and
FAST_ZERO), pread and block status (with and without REQ_ONE)
requests, often in a shared hot region, next to recent requests, or
over a range some write has in flight.  "Unit probes" ask block status
from inside an allocation unit, write elsewhere in that unit and ask
again; connections are now and then closed and reopened (which stops
and restarts prefetch workers).  The oracle:

  A block status answer of FRONT about a range that no write
  overlapped while the request was in flight (from just before it was
  sent until its reply) must equal BACK's answer for that range,
  obtained by a direct connection while writes to the range are held
  off.  Ranges are compared byte by byte after clipping both answers
  to the range FRONT described, so differently cut extents are equal
  if they say the same thing about every byte.

"Overlapped" is judged on whole allocation units (--gran, the page
size of the backend: 32K for the memory plugin, 4K for a file on
tmpfs): a one-byte write changes the allocation of the whole unit
around it, so a block status request anywhere in that unit races
with it.

The comparison per byte range, F = FRONT's flags, B = BACK's:

  - the HOLE bit must be equal (allocation is a property of the unit
    and does not depend on where a query starts);
  - with --backend=file the flags must be equal (the file plugin
    reports holes as HOLE|ZERO and everything else as 0);
  - with --backend=memory the ZERO bit of allocated pages is computed
    by the plugin from the bytes of the queried part of each page, so
    it depends on where the query started.  There F may lack ZERO
    where B has it only if the page holds a non-zero byte somewhere
    (so that some query could have answered "data"); and F may have
    ZERO where B lacks it only if the bytes read as zero;
  - any range FRONT calls ZERO must read as zeroes from BACK.

A pread of FRONT that no write overlapped must equal BACK's bytes.

With --flush, flushes and FUA writes join the mix.  They are meant for
a BACK with a write-back layer (nbdkit's cache filter, cache=writeback)
whose block status shows a write only once it is flushed: a flush or a
FUA write then counts as a write over the whole disk while in flight,
and once it has returned FRONT must agree with BACK again.  Reads of
such a BACK show unflushed data that its block status does not, so
there only the HOLE bits are compared (a copy tool skips what is
called a hole).

In --faults mode, FRONT has the error filter below the cache: every
request may fail, but only with EIO, and successful answers are
checked as above.  At the end (after the shell test has switched the
errors off by removing the error file given with --inject-file) a
final pass checks the whole disk.

The seed is printed; a run is reproducible per thread in the requests
it makes (not in their interleaving).  Exits 1 with a message on the
first divergence, 0 otherwise, after printing a summary line.
"""

import argparse
import collections
import os
import random
import sys
import threading
import time

import nbd

HOLE = nbd.STATE_HOLE
ZERO = nbd.STATE_ZERO
MAX_READ = 32 << 20             # per pread from BACK
ZERO_CHECK_MAX = 8 << 20        # bytes of a zero claim read per check


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--front", default=os.environ.get("unixsocket"),
                   help="FRONT's unix socket (default $unixsocket)")
    p.add_argument("--back", required=True, help="BACK's unix socket")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ops", type=int, default=10000,
                   help="operations in total, all threads")
    p.add_argument("--time-limit", type=float, default=0,
                   help="stop after this many seconds (0: no limit)")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--backend", choices=("memory", "file"), required=True)
    p.add_argument("--gran", type=int, default=None,
                   help="allocation unit of BACK (default 32K memory, "
                   "4K file)")
    p.add_argument("--prefetch", default="?",
                   help="only printed: whether FRONT prefetches")
    p.add_argument("--no-hole-zero", type=int, default=1,
                   help="issue zero requests with NO_HOLE (default 1)")
    p.add_argument("--faults", action="store_true",
                   help="FRONT injects EIO: expect and count errors")
    p.add_argument("--fault-errno", action="append", default=[],
                   metavar="KIND=ERRNO",
                   help="with --faults: the errno expected for a kind of "
                   "request (pwrite, trim, zero, pread, block-status); "
                   "default EIO")
    p.add_argument("--inject-file",
                   help="with --faults: the error filter's error-file; "
                   "removed before the final full check")
    p.add_argument("--align-bs", action="store_true",
                   help="ask block status only at offsets and counts "
                   "that are multiples of --gran (to look past a bug "
                   "with unaligned requests)")
    p.add_argument("--final-check", type=int, default=1,
                   help="walk the whole disk at the end (default 1)")
    p.add_argument("--flush", action="store_true",
                   help="also flush and write with FUA (each counts as a "
                   "write of the whole disk)")
    p.add_argument("--label", default="", help="printed with the summary")
    a = p.parse_args()
    if a.front is None:
        p.error("--front not given and $unixsocket not set")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    a.fault_errno = dict(x.split("=", 1) for x in a.fault_errno)
    if a.gran is None:
        a.gran = 32768 if a.backend == "memory" else 4096
    return a


ARGS = parse_args()
G = ARGS.gran


def down(x):
    return x // G * G


def up(x):
    return (x + G - 1) // G * G


def connect(sock):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_unix(sock)
    if not h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION):
        raise RuntimeError("%s does not offer base:allocation" % sock)
    return h


def block_status(h, count, offset, flags=0):
    """One request: [(offset, length, flags), ...] as sent."""
    out = []

    def cb(ctx, off, entries, err):
        if ctx == nbd.CONTEXT_BASE_ALLOCATION:
            for i in range(0, len(entries), 2):
                out.append((off, entries[i], entries[i + 1]))
                off += entries[i]
        return 0

    h.block_status(count, offset, cb, flags)
    return out


def clip(extents, lo, hi):
    """Clip to [lo, hi) and merge neighbours with equal flags."""
    out = []
    for (o, n, f) in extents:
        a, b = max(o, lo), min(o + n, hi)
        if a >= b:
            continue
        if out and out[-1][2] == f and out[-1][0] + out[-1][1] == a:
            out[-1] = (out[-1][0], b - out[-1][0], f)
        else:
            out.append((a, b - a, f))
    return out


def back_map(hb, lo, hi):
    """BACK's answer for [lo, hi), by as many requests as it takes."""
    out = []
    pos = lo
    while pos < hi:
        got = block_status(hb, min(hi - pos, 1 << 30), pos)
        if not got or got[0][0] != pos:
            raise RuntimeError("BACK answered %r at %d" % (got[:3], pos))
        out.extend(got)
        pos = got[-1][0] + got[-1][1]
    return clip(out, lo, hi)


def pairs(fa, ba):
    """Walk two clipped lists over the same range: (a, b, F, B)."""
    i = j = 0
    pos = fa[0][0]
    while i < len(fa) and j < len(ba):
        fo, fn, ff = fa[i]
        bo, bn, bf = ba[j]
        end = min(fo + fn, bo + bn)
        yield pos, end, ff, bf
        pos = end
        if fo + fn == end:
            i += 1
        if bo + bn == end:
            j += 1


def fmt(extents, limit=12):
    s = " ".join("%#x+%#x:%d" % e for e in extents[:limit])
    if len(extents) > limit:
        s += " ...(%d more)" % (len(extents) - limit)
    return s


class Divergence(Exception):
    pass


class Ledger:
    """Which ranges have a write in flight, and which are being checked.

    Writes are recorded by allocation unit.  A write waits while a
    range it overlaps is being checked against BACK; a check starts
    only if no write overlapped the request since it was sent.
    """

    def __init__(self):
        self.cond = threading.Condition()
        self.seq = 0                    # write starts so far
        self.log = collections.deque()  # (seq, lo, hi) of write starts
        self.active = {}                # write id -> (lo, hi)
        self.checking = []              # ranges held by checkers
        self.open = collections.Counter()   # seq of requests in flight
        self.next_id = 0

    def write_begin(self, lo, hi):
        lo, hi = down(lo), up(hi)
        with self.cond:
            while any(a < hi and lo < b for (a, b) in self.checking):
                self.cond.wait()
            self.seq += 1
            self.next_id += 1
            self.log.append((self.seq, lo, hi))
            self.active[self.next_id] = (lo, hi)
            return self.next_id

    def write_end(self, wid):
        with self.cond:
            del self.active[wid]

    def active_ranges(self):
        with self.cond:
            return list(self.active.values())

    def begin(self, lo, hi):
        """Before sending a request about [lo, hi): a token."""
        lo, hi = down(lo), up(hi)
        with self.cond:
            dirty = any(a < hi and lo < b for (a, b) in self.active.values())
            self.open[self.seq] += 1
            return (self.seq, dirty)

    def end(self, token, lo, hi, hold):
        """After the reply.  Was [lo, hi) free of writes all along?
        If so and 'hold', hold writes to it off until release()."""
        seq0, dirty = token
        lo, hi = down(lo), up(hi)
        with self.cond:
            self.open[seq0] -= 1
            if self.open[seq0] == 0:
                del self.open[seq0]
            if not dirty:
                for (s, a, b) in reversed(self.log):
                    if s <= seq0:
                        break
                    if a < hi and lo < b:
                        dirty = True
                        break
            if not dirty:
                dirty = any(a < hi and lo < b
                            for (a, b) in self.active.values())
            oldest = min(self.open) if self.open else self.seq
            while self.log and self.log[0][0] <= oldest:
                self.log.popleft()
            if dirty:
                return False
            if hold:
                self.checking.append((lo, hi))
            return True

    def release(self, lo, hi):
        lo, hi = down(lo), up(hi)
        with self.cond:
            self.checking.remove((lo, hi))
            self.cond.notify_all()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()

    def add(self, k, n=1):
        with self.lock:
            self.c[k] += n


LEDGER = Ledger()
STATS = Stats()
HISTORY = collections.deque(maxlen=400)     # recent requests, for reports
STOP = threading.Event()
FAILED = []
OPS_LOCK = threading.Lock()
OPS_ISSUED = [0]
T0 = time.time()


def note(*what):
    HISTORY.append(("%.6f" % (time.time() - T0),) + what)


def history_near(lo, hi):
    lo, hi = down(lo), up(hi)
    out = []
    for h in list(HISTORY):
        # entries: (time, thread, kind, offset, count, ...)
        if len(h) >= 5 and isinstance(h[3], int) and \
           h[3] < hi and lo < h[3] + max(h[4], 1):
            out.append(h)
    return out[-30:]


def is_zero(buf):
    return buf.count(0) == len(buf)


def read_back(hb, lo, hi):
    parts = []
    pos = lo
    while pos < hi:
        n = min(hi - pos, MAX_READ)
        parts.append(hb.pread(n, pos))
        pos += n
    return b"".join(parts)


def check_zero_claim(hb, rng, a, b, what):
    """FRONT said [a, b) is zero: BACK must read zeroes there."""
    if b - a > ZERO_CHECK_MAX:
        a = a + rng.randrange((b - a - ZERO_CHECK_MAX) // 512 + 1) * 512
        b = a + ZERO_CHECK_MAX
    buf = read_back(hb, a, b)
    if not is_zero(buf):
        i = next(k for k in range(len(buf)) if buf[k])
        raise Divergence("%s: FRONT says ZERO for [%#x, %#x) but BACK "
                         "reads byte %#x = %#x" % (what, a, b, a + i, buf[i]))


def compare(hb, rng, front, lo, hi, what):
    """Compare FRONT's clipped answer over [lo, hi) with BACK."""
    back = back_map(hb, lo, hi)
    fa = clip(front, lo, hi)
    if not back or back[0][0] != lo or \
       back[-1][0] + back[-1][1] != hi:
        raise RuntimeError("BACK's map of [%#x, %#x) is incomplete: %s"
                           % (lo, hi, fmt(back)))
    page_has_data = {}
    for (a, b, ff, bf) in pairs(fa, back):
        bad = None
        if (ff & HOLE) != (bf & HOLE):
            bad = "HOLE bit differs"
        elif ARGS.flush:
            pass
        elif ARGS.backend == "file" and ff != bf:
            bad = "flags differ"
        elif not (ff & ZERO) and (bf & ZERO):
            # memory: allowed only if each page has a non-zero byte.
            for p in range(down(a), up(b), G):
                if p not in page_has_data:
                    page_has_data[p] = not is_zero(hb.pread(G, p))
                if not page_has_data[p]:
                    bad = ("FRONT says data (no ZERO) but the page at %#x "
                           "is all zero" % p)
                    break
        if bad is None and (ff & ZERO) and not ARGS.flush:
            check_zero_claim(hb, rng, a, b, what)
        if bad:
            raise Divergence(
                "%s: at [%#x, %#x) FRONT flags=%d BACK flags=%d: %s\n"
                "  FRONT: %s\n  BACK:  %s" % (what, a, b, ff, bf, bad,
                                              fmt(fa, 40), fmt(back, 40)))


class Worker(threading.Thread):
    def __init__(self, tid, size):
        super().__init__(name="w%d" % tid, daemon=True)
        self.tid = tid
        self.size = size
        self.rng = random.Random(ARGS.seed * 1000003 + tid)
        self.hf = connect(ARGS.front)
        self.hb = connect(ARGS.back)
        self.fast_zero = self.hf.can_fast_zero()
        self.hot = 0

    # Random ranges: small and large, aligned and not, often in a hot
    # region that all threads share so that they collide.
    def offset(self):
        r = self.rng
        k = r.random()
        if k < 0.25 and RECENT:
            # Next to a recent request, often in the same allocation
            # unit but not overlapping it: the unit changes as a whole.
            off = r.choice(RECENT) + r.randrange(-G, G)
            off = max(0, min(off, self.size - 1))
        elif k < 0.6:
            base = HOT[0]
            off = base + r.randrange(HOT_LEN)
        else:
            off = r.randrange(self.size)
        k = r.random()
        if k < 0.3:
            off = down(off)
        elif k < 0.5:
            off &= ~511
        return min(off, self.size - 1)

    def remember(self, off, n):
        RECENT.append(off)
        RECENT.append(off + n)

    def length(self, off, big=False):
        r = self.rng
        k = r.random()
        if big and k < 0.15:
            n = self.size - off                 # to the end
        elif big and k < 0.3:
            n = r.randrange(1, 4 << 20)
        elif k < 0.4:
            n = r.randrange(1, 4097)
        elif k < 0.7:
            n = G * r.randrange(1, 5)
        else:
            n = r.randrange(1, 256 << 10)
        if r.random() < 0.3:
            n = max(512, n & ~511)
        return max(1, min(n, self.size - off))

    def next_op(self):
        with OPS_LOCK:
            if OPS_ISSUED[0] >= ARGS.ops or STOP.is_set():
                return None
            OPS_ISSUED[0] += 1
            n = OPS_ISSUED[0]
        if ARGS.time_limit and time.time() - T0 > ARGS.time_limit:
            STOP.set()
            return None
        if n % 5000 == 0:
            HOT[0] = self.rng.randrange(0, max(1, self.size - HOT_LEN))
            HOT[0] = down(HOT[0])
        return n

    def run(self):
        try:
            while not STOP.is_set():
                n = self.next_op()
                if n is None:
                    break
                k = self.rng.random()
                if k < 0.16:
                    self.do_pwrite()
                elif k < 0.22:
                    self.do_trim()
                elif k < 0.30:
                    self.do_zero()
                elif k < 0.38:
                    self.do_pread()
                elif k < 0.43:
                    self.do_unit_probe(n)
                elif k < 0.435:
                    self.do_reconnect()
                elif ARGS.flush and k < 0.465:
                    self.do_flush()
                else:
                    self.do_block_status(n)
        except Divergence as e:
            self.report(str(e))
        except Exception as e:
            import traceback
            traceback.print_exc()
            self.report("unexpected %s: %s" % (type(e).__name__, e))

    def report(self, msg):
        if FAILED:
            return
        FAILED.append(msg)
        STOP.set()
        print("DIVERGENCE (seed=%d, thread %d, %s): %s"
              % (ARGS.seed, self.tid, ARGS.label, msg), flush=True)

    # Writes.
    def failed(self, what, e, off, n):
        """A request failed: legal only in --faults mode with EIO."""
        if ARGS.faults and e.errno == ARGS.fault_errno.get(what, "EIO"):
            STATS.add("errors-" + what)
            return
        raise Divergence("%s at %#x+%#x failed: %s (errno %s)"
                         % (what, off, n, e.string, e.errno))

    def write(self, kind, off, n, fn, flags=0, whole=False):
        self.remember(off, n)
        if whole:
            wid = LEDGER.write_begin(0, self.size)
        else:
            wid = LEDGER.write_begin(off, off + n)
        note(self.tid, kind, off, n, flags, "start")
        try:
            fn()
            note(self.tid, kind, off, n, flags, "done")
            STATS.add(kind)
        except nbd.Error as e:
            note(self.tid, kind, off, n, flags, "error " + str(e.errno))
            if kind == "zero" and (flags & nbd.CMD_FLAG_FAST_ZERO) and \
               e.errno in ("ENOTSUP", "EOPNOTSUPP"):
                STATS.add("zero-fast-enotsup")
            else:
                self.failed(kind, e, off, n)
        finally:
            LEDGER.write_end(wid)

    def do_pwrite(self):
        off = self.offset()
        n = self.length(off)
        if self.rng.random() < 0.1:
            buf = bytes(n)
        else:
            buf = os.urandom(n)
        if ARGS.flush and self.rng.random() < 0.1:
            fua = nbd.CMD_FLAG_FUA
            self.write("pwrite-fua", off, n,
                       lambda: self.hf.pwrite(buf, off, fua), fua, True)
            return
        self.write("pwrite", off, n, lambda: self.hf.pwrite(buf, off))

    def do_flush(self):
        self.write("flush", 0, self.size, lambda: self.hf.flush(), 0, True)

    def do_trim(self):
        off = self.offset()
        n = self.length(off)
        self.write("trim", off, n, lambda: self.hf.trim(n, off))

    def do_zero(self):
        off = self.offset()
        n = self.length(off)
        flags = 0
        if ARGS.no_hole_zero and self.rng.random() < 0.4:
            flags |= nbd.CMD_FLAG_NO_HOLE
        if self.fast_zero and self.rng.random() < 0.3:
            flags |= nbd.CMD_FLAG_FAST_ZERO
        self.write("zero", off, n, lambda: self.hf.zero(n, off, flags),
                   flags)

    # Reads.
    def do_pread(self):
        off = self.offset()
        n = self.length(off)
        tok = LEDGER.begin(off, off + n)
        try:
            buf = self.hf.pread(n, off)
        except nbd.Error as e:
            LEDGER.end(tok, off, off + n, False)
            self.failed("pread", e, off, n)
            return
        if not LEDGER.end(tok, off, off + n, True):
            STATS.add("pread-unchecked")
            return
        try:
            want = self.hb.pread(n, off)
        finally:
            LEDGER.release(off, off + n)
        if buf != want:
            i = next(k for k in range(n) if buf[k] != want[k])
            raise Divergence("pread [%#x, +%#x): FRONT byte %#x = %#x, "
                             "BACK %#x" % (off, n, off + i, buf[i], want[i]))
        STATS.add("pread-checked")

    # Block status.
    def do_block_status(self, n):
        r = self.rng
        active = LEDGER.active_ranges()
        if active and r.random() < 0.25:
            # Ask about a range some write has in flight.
            a, b = r.choice(active)
            off = min(a + r.randrange(b - a), self.size - 1)
            count = max(1, min(r.randrange(1, 2 * (b - a) + 1),
                               self.size - off))
            STATS.add("bs-targeted")
        else:
            off = self.offset()
            count = self.length(off, big=True)
        if ARGS.align_bs:
            off = down(off)
            count = min(up(count), self.size - off)
        flags = nbd.CMD_FLAG_REQ_ONE if r.random() < 0.3 else 0
        self.block_status_checked(off, count, flags, "bs #%d" % n)

    def do_reconnect(self):
        """Close this connection and open a new one: prefetch workers
        owned by it stop, and the next request restarts them."""
        note(self.tid, "reconnect", -1, 0)
        self.hf.shutdown()
        self.hf = connect(ARGS.front)
        STATS.add("reconnects")

    def do_unit_probe(self, n):
        """Block status from inside an allocation unit, a small write
        elsewhere in the same unit that does not overlap what was asked,
        and block status again: the write changes the whole unit."""
        r = self.rng
        unit = down(r.randrange(self.size))
        if unit + G > self.size:
            return
        x = unit + r.randrange(1, G)
        count = r.randrange(1, unit + G - x + 1)
        flags = nbd.CMD_FLAG_REQ_ONE if r.random() < 0.5 else 0
        self.block_status_checked(x, count, flags, "probe #%d (before)" % n)
        if r.random() < 0.5:
            woff = unit + r.randrange(x - unit)
            wlen = r.randrange(1, x - woff + 1)
        elif x + count < unit + G:
            woff = r.randrange(x + count, unit + G)
            wlen = r.randrange(1, unit + G - woff + 1)
        else:
            return
        k = r.random()
        if k < 0.6:
            buf = os.urandom(wlen)
            self.write("pwrite", woff, wlen, lambda: self.hf.pwrite(buf, woff))
        elif k < 0.8:
            self.write("trim", woff, wlen, lambda: self.hf.trim(wlen, woff))
        else:
            self.write("zero", woff, wlen, lambda: self.hf.zero(wlen, woff))
        self.block_status_checked(x, count, flags, "probe #%d (after)" % n)

    def block_status_checked(self, off, count, flags, what, must=False):
        self.remember(off, count)
        tok = LEDGER.begin(off, off + count)
        note(self.tid, "bs", off, count, flags, "start")
        try:
            got = block_status(self.hf, count, off, flags)
        except nbd.Error as e:
            LEDGER.end(tok, off, off + count, False)
            note(self.tid, "bs", off, count, flags, "error " + str(e.errno))
            self.failed("block-status", e, off, count)
            return None
        note(self.tid, "bs", off, count, flags, "reply " + fmt(got, 4))
        what = "%s: block status offset=%#x count=%#x%s" % (
            what, off, count, " REQ_ONE" if flags else "")
        # Shape: starts at the offset, contiguous, no empty extents.
        if not got or got[0][0] != off:
            raise Divergence("%s: answer does not start at the offset: %s"
                             % (what, fmt(got)))
        for (o, l, f) in got:
            if l <= 0:
                raise Divergence("%s: empty extent: %s" % (what, fmt(got)))
        if (flags & nbd.CMD_FLAG_REQ_ONE) and len(got) != 1:
            raise Divergence("%s: REQ_ONE answered with %d extents: %s"
                             % (what, len(got), fmt(got)))
        end = min(off + count, got[-1][0] + got[-1][1], self.size)
        if not LEDGER.end(tok, off, end, True):
            STATS.add("bs-unchecked")
            if must:
                raise RuntimeError("%s: a write overlapped a quiet check"
                                   % what)
            return got
        try:
            compare(self.hb, self.rng, got, off, end, what)
        except Divergence as e:
            hist = history_near(off, end)
            msg = str(e) + "\n  recent requests near this range " \
                "(time, thread, kind, offset, count, flags, event):\n" + \
                "\n".join("    " + repr(h) for h in hist)
            raise Divergence(msg)
        finally:
            LEDGER.release(off, end)
        STATS.add("bs-checked")
        STATS.add("bs-bytes-checked", end - off)
        return got


HOT = [0]
HOT_LEN = 1 << 20
RECENT = collections.deque(maxlen=64)   # edges of recent requests


def final_check(size):
    """No writes any more: walk the whole disk in random pieces and
    compare every answer, then once more in one sweep."""
    w = Worker(ARGS.threads + 1, size)
    pos = 0
    r = random.Random(ARGS.seed)
    while pos < size:
        count = min(size - pos, r.choice((G, 65536, 1 << 20, 16 << 20)))
        flags = nbd.CMD_FLAG_REQ_ONE if r.random() < 0.3 else 0
        got = w.block_status_checked(pos, count, flags, "final walk",
                                     must=True)
        pos = min(pos + count, got[-1][0] + got[-1][1])
    for i in range(200):
        off = r.randrange(size)
        count = r.randrange(1, size - off + 1)
        if ARGS.align_bs:
            off = down(off)
            count = min(up(count), size - off)
        w.block_status_checked(off, count, 0, "final random", must=True)


def main():
    print("stress: seed=%d ops=%d threads=%d backend=%s gran=%d "
          "prefetch=%s faults=%s %s"
          % (ARGS.seed, ARGS.ops, ARGS.threads, ARGS.backend, G,
             ARGS.prefetch, ARGS.faults, ARGS.label), flush=True)
    probe = connect(ARGS.front)
    size = probe.get_size()
    back = connect(ARGS.back)
    if back.get_size() != size:
        print("FAIL: FRONT size %d != BACK size %d" % (size, back.get_size()))
        sys.exit(1)
    workers = [Worker(i, size) for i in range(ARGS.threads)]
    for w in workers:
        w.start()
    for w in workers:
        while w.is_alive():
            w.join(1)
    if not FAILED and ARGS.faults and ARGS.inject_file:
        try:
            os.unlink(ARGS.inject_file)
        except FileNotFoundError:
            pass
        ARGS.faults = False             # from now on nothing may fail
        print("stress: errors switched off", flush=True)
    if not FAILED and ARGS.final_check:
        try:
            final_check(size)
            STATS.add("final-walks")
        except Divergence as e:
            FAILED.append(str(e))
            print("DIVERGENCE (seed=%d, final check, %s): %s"
                  % (ARGS.seed, ARGS.label, e), flush=True)
        except nbd.Error as e:
            FAILED.append(str(e))
            print("FAIL (seed=%d, final check, %s): %s"
                  % (ARGS.seed, ARGS.label, e), flush=True)
    secs = time.time() - T0
    c = STATS.c
    ops = OPS_ISSUED[0]
    print("stress: %s seed=%d ops=%d in %.1fs (%.0f ops/s) "
          "bs-checked=%d bs-unchecked=%d bs-targeted=%d "
          "pread-checked=%d pwrite=%d trim=%d zero=%d "
          "zero-fast-enotsup=%d reconnects=%d errors=%d"
          % (ARGS.label, ARGS.seed, ops, secs, ops / max(secs, 1e-9),
             c["bs-checked"], c["bs-unchecked"], c["bs-targeted"],
             c["pread-checked"], c["pwrite"], c["trim"], c["zero"],
             c["zero-fast-enotsup"], c["reconnects"],
             sum(v for k, v in c.items() if k.startswith("errors-"))),
          flush=True)
    if ARGS.faults or any(k.startswith("errors-") for k in c):
        print("stress: errors by kind: %s" % " ".join(
            "%s=%d" % (k[7:], v) for k, v in sorted(c.items())
            if k.startswith("errors-")), flush=True)
    if FAILED:
        sys.stdout.flush()
        os._exit(1)
    if ops == 0 or c["bs-checked"] == 0:
        print("FAIL: nothing was checked")
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
