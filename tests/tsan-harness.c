/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: a multi-threaded harness for ThreadSanitizer (and ASan).
 *
 * Design note
 * ===========
 *
 * ThreadSanitizer cannot be loaded into an uninstrumented nbdkit, so
 * this program links every file of src/ with small stand-ins for the
 * nbdkit functions the filter calls, and drives the filter through its
 * real callbacks (filter_init, .load, .config, .config_complete,
 * .get_ready, .open, .prepare, .extents, .pwrite, .trim, .zero,
 * .finalize, .close, .unload) from several threads at once, the way
 * nbdkit's parallel thread model does.  Threads at work:
 *
 *   - CLIENTS client threads.  Clients 0 and 1 share one connection
 *     for the whole run (nbdkit runs requests of one connection in
 *     parallel); the others have their own and now and then close it
 *     and open another, to the other export or with the other TLS
 *     state, so prefetch stops with its owner and restarts under
 *     another.  They ask block status (random ranges, aligned or not,
 *     REQ_ONE or not), write, trim and zero.
 *   - the prefetch workers the filter starts.
 *   - no backend thread: the fake backend runs on its callers' threads.
 *
 * The backend.  Each connection has its own struct nbdkit_next_ops
 * (the filter passes the pointer back as the first argument, which is
 * how we find the connection).  Behind it is the model of one of two
 * exports: the type (data, hole+zero, zero) of every UNIT-byte unit,
 * changed by writes a unit at a time, and the history of every unit's
 * types, stamped by a clock that ticks at each change (both under the
 * export's lock).  Its extents callback sleeps at random, answers from
 * the unit containing the offset or from the offset itself, stops
 * short, at the end of the range or beyond it, reads the model in one
 * go or a unit at a time (so an answer need not be a snapshot), and
 * fails now and then, sometimes after adding extents.  Its writes
 * sleep, fail now and then (before or after changing the model), and
 * change every unit a pwrite touches, and every unit a trim or zero
 * covers whole.
 *
 * The check.  A client reads the export's clock before and after each
 * block status call.  For every unit an answer covers, the type given
 * must be one that unit had at some moment between the two readings.
 * That is what the cache promises (see the design note in writes.c): no
 * answer from before a write that had returned when the request was
 * made.  The granularity is set to UNIT, the tightest the filter
 * allows for this backend.  The stand-ins also hold the filter to the
 * nbdkit_extents contract (a list that starts at its start, extents
 * added in order and contiguous) and count calls.  At the end, with
 * the clients stopped, a walk of each export through a new connection
 * must give exactly the model, and the filter's counters must match
 * ours: requests, hits + misses, and backend calls made for clients
 * plus for prefetch.
 *
 * Thread models.  The run is made twice, each in a child process of
 * its own (the filter decides its mode once, in .get_ready): under
 * parallel, as above, and under serialize_requests, where nbdkit runs
 * one request of a connection at a time: the clients sharing a
 * connection take turns, and the filter must keep to the same rule
 * below it.  There the stand-ins count the calls in flight on each
 * connection's next, and a second call beside one already there is a
 * failure; prefetch must go through the clients' own contexts one call
 * at a time, between the clients' calls.
 *
 * Run: tsan-harness [SEED [SECONDS]], by default $HARNESS_SEED (else
 * 1) and $HARNESS_SECONDS (else 10); the seed is printed.
 * HARNESS_MODEL=parallel or serialize_requests runs that model alone.
 * Exit 0 if every check passed; the sanitizer's own reports go to its
 * log and fail the run through tests/sanitizers/run-one.sh.
 */

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include <nbdkit-filter.h>

#define UNIT 4096               /* the backend's allocation unit */
#define NUNITS 2051             /* export size: NUNITS * UNIT */
#define CLIENTS 5
#define MAX_IO (256 * 1024)     /* largest write */

extern struct nbdkit_filter *filter_init (void);
extern int cacheextents_debug_cache;
extern int cacheextents_debug_prefetch;

static int verbose;
static unsigned long long seed;
static bool serialized;         /* thread model serialize_requests */
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

/* Set by any failed check; the run goes on and reports them all. */
static int failures;

#define FAIL(fmt, ...)                                                  \
  do {                                                                  \
    pthread_mutex_lock (&print_lock);                                   \
    fprintf (stderr, "tsan-harness: FAIL (seed %llu): " fmt "\n",       \
             seed, ##__VA_ARGS__);                                      \
    pthread_mutex_unlock (&print_lock);                                 \
    __atomic_store_n (&failures, 1, __ATOMIC_RELAXED);                  \
  } while (0)

/* Counters of the stand-ins, compared with the filter's at the end. */
static uint64_t backend_extents_calls;
static uint64_t backend_flushes;
static uint64_t client_requests;
static uint64_t client_errors;
static uint64_t nbdkit_errors;
static uint64_t misuse;

static void
bump (uint64_t *c)
{
  __atomic_fetch_add (c, 1, __ATOMIC_RELAXED);
}

/* xorshift64*: one generator per thread. */
static uint64_t
rnd (uint64_t *s)
{
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C (2685821657736338717);
}

static uint64_t
rnd_below (uint64_t *s, uint64_t n)
{
  return n ? rnd (s) % n : 0;
}

static void
maybe_sleep (uint64_t *s, unsigned percent, unsigned max_us)
{
  if (rnd_below (s, 100) < percent)
    usleep (1 + rnd_below (s, max_us));
  else if (rnd_below (s, 4) == 0)
    sched_yield ();
}

/* Stand-ins for the nbdkit API. */

void
nbdkit_debug (const char *fmt, ...)
{
  char buf[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  if (verbose) {
    pthread_mutex_lock (&print_lock);
    fprintf (stderr, "debug: %s\n", buf);
    pthread_mutex_unlock (&print_lock);
  }
}

void
nbdkit_error (const char *fmt, ...)
{
  char buf[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  bump (&nbdkit_errors);
  if (verbose) {
    pthread_mutex_lock (&print_lock);
    fprintf (stderr, "error: %s\n", buf);
    pthread_mutex_unlock (&print_lock);
  }
}

int64_t
nbdkit_parse_size (const char *str)
{
  static const char suffixes[] = "KMGTPE";
  unsigned long long v;
  const char *p;
  char *end;

  errno = 0;
  v = strtoull (str, &end, 10);
  if (errno || end == str || str[0] == '-') {
    nbdkit_error ("could not parse size string (%s)", str);
    return -1;
  }
  if (*end) {
    p = strchr (suffixes, *end);
    if (p == NULL || end[1]) {
      nbdkit_error ("could not parse size string (%s)", str);
      return -1;
    }
    v <<= 10 * (p - suffixes + 1);
  }
  return v;
}

char *
nbdkit_absolute_path (const char *path)
{
  char cwd[4096], *r;

  if (path[0] == '/')
    return strdup (path);
  if (getcwd (cwd, sizeof cwd) == NULL ||
      asprintf (&r, "%s/%s", cwd, path) == -1)
    return NULL;
  return r;
}

int
nbdkit_parse_bool (const char *str)
{
  if (!strcmp (str, "1") || !strcmp (str, "true") || !strcmp (str, "on") ||
      !strcmp (str, "yes"))
    return 1;
  if (!strcmp (str, "0") || !strcmp (str, "false") || !strcmp (str, "off") ||
      !strcmp (str, "no"))
    return 0;
  nbdkit_error ("could not decipher boolean (%s)", str);
  return -1;
}

int
nbdkit_parse_unsigned (const char *what, const char *str, unsigned *r)
{
  unsigned long v;
  char *end;

  errno = 0;
  v = strtoul (str, &end, 10);
  if (errno || end == str || *end || str[0] == '-' || v > UINT32_MAX) {
    nbdkit_error ("%s: could not parse number: %s", what, str);
    return -1;
  }
  *r = v;
  return 0;
}

/* An extents list as nbdkit keeps it: extents of [start, end) only,
 * clipped to it, coalesced, and refusing a first extent that does not
 * reach start or one that does not continue the previous.
 */
struct nbdkit_extents {
  uint64_t start, end;
  uint64_t next;                /* where the next extent must begin */
  struct nbdkit_extent *v;
  size_t len, cap;
};

struct nbdkit_extents *
nbdkit_extents_new (uint64_t start, uint64_t end)
{
  struct nbdkit_extents *x;

  if (start > INT64_MAX || end > INT64_MAX || start >= end) {
    FAIL ("nbdkit_extents_new (%" PRIu64 ", %" PRIu64 "): bad range",
          start, end);
    bump (&misuse);
    errno = ERANGE;
    return NULL;
  }
  x = calloc (1, sizeof *x);
  if (x == NULL)
    return NULL;
  x->start = x->next = start;
  x->end = end;
  return x;
}

void
nbdkit_extents_free (struct nbdkit_extents *x)
{
  if (x) {
    free (x->v);
    free (x);
  }
}

size_t
nbdkit_extents_count (const struct nbdkit_extents *x)
{
  return x->len;
}

struct nbdkit_extent
nbdkit_get_extent (const struct nbdkit_extents *x, size_t i)
{
  assert (i < x->len);
  return x->v[i];
}

int
nbdkit_add_extent (struct nbdkit_extents *x,
                   uint64_t offset, uint64_t length, uint32_t type)
{
  uint64_t end;

  if (length == 0)
    return 0;
  if (offset > UINT64_MAX - length || type > 3) {
    FAIL ("nbdkit_add_extent (%" PRIu64 ", %" PRIu64 ", %" PRIu32 "): "
          "bad extent", offset, length, type);
    bump (&misuse);
    errno = EINVAL;
    return -1;
  }
  end = offset + length;
  if (offset >= x->end || end <= x->start)
    return 0;                   /* outside the range: ignored */
  /* nbdkit refuses these with ERANGE; neither the filter nor our
   * backend should ever make them, so they also fail the run.
   */
  if (x->len == 0 && offset > x->start) {
    FAIL ("nbdkit_add_extent: first extent %" PRIu64 " > start %" PRIu64,
          offset, x->start);
    bump (&misuse);
    errno = ERANGE;
    return -1;
  }
  if (x->len > 0 && offset != x->next) {
    FAIL ("nbdkit_add_extent: extent at %" PRIu64 " does not continue "
          "the list at %" PRIu64, offset, x->next);
    bump (&misuse);
    errno = ERANGE;
    return -1;
  }
  if (x->len == 0)
    offset = x->start;
  if (end > x->end)
    end = x->end;
  x->next = end;
  if (x->len > 0 && x->v[x->len - 1].type == type) {
    x->v[x->len - 1].length += end - offset;
    return 0;
  }
  if (x->len == x->cap) {
    size_t ncap = x->cap ? x->cap * 2 : 16;
    struct nbdkit_extent *nv = realloc (x->v, ncap * sizeof *nv);

    if (nv == NULL)
      return -1;
    x->v = nv;
    x->cap = ncap;
  }
  x->v[x->len++] = (struct nbdkit_extent) {
    .offset = offset, .length = end - offset, .type = type
  };
  return 0;
}

/* The model of an export. */

struct change {
  uint64_t tick;                /* the clock when the unit took 'type' */
  uint8_t type;
};

struct unit {
  uint8_t type;                 /* now */
  struct change *hist;          /* in tick order; hist[0].tick == 0 */
  size_t len, cap;
};

struct export {
  const char *name;
  int multi_conn;
  /* Protects everything below. */
  pthread_mutex_t lock;
  uint64_t clock;               /* ticks at every change of a unit */
  struct unit units[NUNITS];
};

static struct export exports[2] = {
  { .name = "shared", .multi_conn = 1,
    .lock = PTHREAD_MUTEX_INITIALIZER },
  { .name = "private", .multi_conn = 0,
    .lock = PTHREAD_MUTEX_INITIALIZER },
};

#define SIZE ((uint64_t) NUNITS * UNIT)
#define DATA 0
#define HOLE (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO)
#define ZERO NBDKIT_EXTENT_ZERO

static void
unit_push (struct unit *u, uint64_t tick, uint8_t type)
{
  if (u->len == u->cap) {
    u->cap = u->cap ? u->cap * 2 : 4;
    u->hist = realloc (u->hist, u->cap * sizeof *u->hist);
    assert (u->hist);
  }
  u->hist[u->len++] = (struct change) { .tick = tick, .type = type };
  u->type = type;
}

static void
export_init (struct export *x, uint64_t *r)
{
  static const uint8_t types[] = { DATA, HOLE, HOLE, ZERO };
  size_t i = 0, run;
  uint8_t t;

  while (i < NUNITS) {
    t = types[rnd_below (r, 4)];
    run = 1 + rnd_below (r, rnd_below (r, 4) ? 8 : 200);
    for (; run > 0 && i < NUNITS; --run, ++i)
      unit_push (&x->units[i], 0, t);
  }
}

static void
export_free (struct export *x)
{
  size_t i;

  for (i = 0; i < NUNITS; ++i)
    free (x->units[i].hist);
}

/* Did unit i have 'type' at some moment of [t0, t1]?  Lock held. */
static bool
had_type_locked (const struct export *x, size_t i, uint32_t type,
                 uint64_t t0, uint64_t t1)
{
  const struct unit *u = &x->units[i];
  size_t lo = 0, hi = u->len;

  /* The last change at or before t0 (hist[0].tick == 0 <= t0). */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;

    if (u->hist[mid].tick <= t0)
      lo = mid;
    else
      hi = mid;
  }
  for (; lo < u->len && u->hist[lo].tick <= t1; ++lo)
    if (u->hist[lo].type == type)
      return true;
  return false;
}

static uint64_t
export_clock (struct export *x)
{
  uint64_t t;

  pthread_mutex_lock (&x->lock);
  t = x->clock;
  pthread_mutex_unlock (&x->lock);
  return t;
}

/* Offsets where recent answers began and ended, often inside a unit.
 * Writes aimed just outside them (the rest of the unit) and queries
 * aimed at them test that a write forgets cached extents that share
 * a unit with it without overlapping it (rule W in writes.c).
 */
#define EDGES 64
static uint64_t edges[EDGES];
static unsigned edge_next;

static void
edge_push (uint64_t offset)
{
  unsigned i = __atomic_fetch_add (&edge_next, 1, __ATOMIC_RELAXED);

  __atomic_store_n (&edges[i % EDGES], offset, __ATOMIC_RELAXED);
}

static uint64_t
edge_pick (uint64_t *r)
{
  return __atomic_load_n (&edges[rnd_below (r, EDGES)], __ATOMIC_RELAXED);
}

/* A connection: the fake next (first, so that the filter's pointer is
 * the connection's) and the filter's handle.
 */
struct conn {
  struct nbdkit_next_ops next;
  struct export *x;
  void *handle;
  uint64_t r;                   /* the backend's generator for this conn */
  pthread_mutex_t r_lock;       /* the backend runs on several threads */
  pthread_mutex_t req_lock;     /* serialized: one client request at a time */
  unsigned in_call;             /* calls in flight on next */
};

static struct conn *
conn_of (nbdkit_next *next)
{
  return (struct conn *) next;
}

static uint64_t
conn_rnd (struct conn *c, uint64_t n)
{
  uint64_t v;

  pthread_mutex_lock (&c->r_lock);
  v = rnd_below (&c->r, n);
  pthread_mutex_unlock (&c->r_lock);
  return v;
}

/* call_enter and call_leave bracket every call of the fake next that
 * a request makes.  Under serialize_requests a second call beside one
 * already in flight breaks the contract the filter must keep below it.
 */
static void
call_enter (struct conn *c, const char *what)
{
  if (__atomic_fetch_add (&c->in_call, 1, __ATOMIC_SEQ_CST) != 0 &&
      serialized) {
    FAIL ("%s on a connection that has a call in flight "
          "(serialize_requests)", what);
    bump (&misuse);
  }
}

static void
call_leave (struct conn *c)
{
  __atomic_fetch_sub (&c->in_call, 1, __ATOMIC_SEQ_CST);
}

static int64_t
be_get_size (nbdkit_next *next)
{
  return SIZE;
}

static int
be_can_multi_conn (nbdkit_next *next)
{
  return conn_of (next)->x->multi_conn;
}

static int
be_can_write (nbdkit_next *next)
{
  return 1;
}

/* What the filter asks once per gated context (ask_context_once). */
static int
be_can_yes (nbdkit_next *next)
{
  return 1;
}

static int
be_is_rotational (nbdkit_next *next)
{
  return 0;
}

static int
be_block_size (nbdkit_next *next, uint32_t *minimum, uint32_t *preferred,
               uint32_t *maximum)
{
  *minimum = 1;
  *preferred = 4096;
  *maximum = 0xffffffff;
  return 0;
}

static int
be_flush (nbdkit_next *next, uint32_t flags, int *err)
{
  call_enter (conn_of (next), "flush");
  bump (&backend_flushes);
  call_leave (conn_of (next));
  return 0;
}

static int be_extents_in (nbdkit_next *next, uint32_t count,
                          uint64_t offset, uint32_t flags,
                          struct nbdkit_extents *extents, int *err);

static int
be_extents (nbdkit_next *next, uint32_t count, uint64_t offset,
            uint32_t flags, struct nbdkit_extents *extents, int *err)
{
  int ret;

  call_enter (conn_of (next), "extents");
  ret = be_extents_in (next, count, offset, flags, extents, err);
  call_leave (conn_of (next));
  return ret;
}

static int
be_extents_in (nbdkit_next *next, uint32_t count, uint64_t offset,
               uint32_t flags, struct nbdkit_extents *extents, int *err)
{
  struct conn *c = conn_of (next);
  struct export *x = c->x;
  uint64_t r = conn_rnd (c, UINT64_MAX) | 1;
  uint64_t pos, stop, max_extents;
  bool snapshot = rnd_below (&r, 2);
  size_t i, added = 0;
  int fail_after = -1;

  bump (&backend_extents_calls);
  if (count == 0 || offset >= SIZE || count > SIZE - offset) {
    FAIL ("backend extents: bad range offset=%" PRIu64 " count=%" PRIu32,
          offset, count);
    bump (&misuse);
  }
  maybe_sleep (&r, 30, 300);
  if (rnd_below (&r, 50) == 0) {
    fail_after = rnd_below (&r, 3);       /* fail after adding 0-2 */
    if (fail_after == 0) {
      nbdkit_error ("backend: injected extents error");
      *err = EIO;
      return -1;
    }
  }

  /* From the unit containing offset, or from offset itself. */
  pos = rnd_below (&r, 2) ? offset / UNIT * UNIT : offset;
  /* Up to the end of the range, the end of the export, or short. */
  switch (rnd_below (&r, 3)) {
  case 0: stop = offset + count; break;
  case 1: stop = SIZE; break;
  default: stop = offset + 1 + rnd_below (&r, count); break;
  }
  max_extents = rnd_below (&r, 4) ? UINT64_MAX : 1 + rnd_below (&r, 4);

  if (snapshot)
    pthread_mutex_lock (&x->lock);
  while (pos < stop && added < max_extents) {
    uint64_t start = pos;
    uint8_t type;

    if (!snapshot)
      pthread_mutex_lock (&x->lock);
    i = pos / UNIT;
    type = x->units[i].type;
    pos = (i + 1) * UNIT;
    if (!snapshot) {
      pthread_mutex_unlock (&x->lock);
      maybe_sleep (&r, 2, 50);
    }
    else {
      /* Whole run of this type while we hold the lock. */
      while (pos < stop && x->units[pos / UNIT].type == type &&
             rnd_below (&r, 16))
        pos += UNIT;
    }
    if (nbdkit_add_extent (extents, start, pos - start, type) == -1) {
      if (snapshot)
        pthread_mutex_unlock (&x->lock);
      *err = errno;
      FAIL ("backend extents: nbdkit_add_extent refused (%" PRIu64
            ", %" PRIu64 ")", start, pos - start);
      return -1;
    }
    added++;
    if (fail_after > 0 && added >= (size_t) fail_after)
      break;
  }
  if (snapshot)
    pthread_mutex_unlock (&x->lock);
  if (fail_after > 0) {
    nbdkit_error ("backend: injected extents error after %zu extents", added);
    *err = EIO;
    return -1;
  }
  maybe_sleep (&r, 10, 200);
  return 0;
}

enum write_kind { PWRITE, TRIM, ZERO_OP };

/* Change the model as a write of [offset, offset+count) would. */
static void
apply_write (struct export *x, enum write_kind k, uint32_t count,
             uint64_t offset, uint32_t flags)
{
  uint64_t first, last, i;
  uint8_t type;

  if (k == PWRITE) {
    first = offset / UNIT;                      /* every unit touched */
    last = (offset + count + UNIT - 1) / UNIT;
    type = DATA;
  }
  else {
    first = (offset + UNIT - 1) / UNIT;         /* units covered whole */
    last = (offset + count) / UNIT;
    type = k == TRIM || (flags & NBDKIT_FLAG_MAY_TRIM) ? HOLE : ZERO;
  }
  pthread_mutex_lock (&x->lock);
  for (i = first; i < last; ++i)
    if (x->units[i].type != type)
      unit_push (&x->units[i], ++x->clock, type);
  pthread_mutex_unlock (&x->lock);
}

static int
be_write_in (struct conn *c, enum write_kind k, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  uint64_t r = conn_rnd (c, UINT64_MAX) | 1;
  unsigned fail = rnd_below (&r, 40);

  if (count == 0 || offset >= SIZE || count > SIZE - offset) {
    FAIL ("backend write: bad range offset=%" PRIu64 " count=%" PRIu32,
          offset, count);
    bump (&misuse);
  }
  maybe_sleep (&r, 30, 300);
  if (fail == 0) {
    nbdkit_error ("backend: injected write error");
    *err = EIO;
    return -1;
  }
  apply_write (c->x, k, count, offset, flags);
  maybe_sleep (&r, 30, 300);
  if (fail == 1) {              /* failed, but the data changed anyway */
    nbdkit_error ("backend: injected write error after the change");
    *err = EIO;
    return -1;
  }
  return 0;
}

static int
be_write (nbdkit_next *next, enum write_kind k, uint32_t count,
          uint64_t offset, uint32_t flags, int *err)
{
  struct conn *c = conn_of (next);
  int ret;

  call_enter (c, "write");
  ret = be_write_in (c, k, count, offset, flags, err);
  call_leave (c);
  return ret;
}

static int
be_pwrite (nbdkit_next *next, const void *buf, uint32_t count,
           uint64_t offset, uint32_t flags, int *err)
{
  return be_write (next, PWRITE, count, offset, flags, err);
}

static int
be_trim (nbdkit_next *next, uint32_t count, uint64_t offset,
         uint32_t flags, int *err)
{
  return be_write (next, TRIM, count, offset, flags, err);
}

static int
be_zero (nbdkit_next *next, uint32_t count, uint64_t offset,
         uint32_t flags, int *err)
{
  return be_write (next, ZERO_OP, count, offset, flags, err);
}

/* Connections through the filter. */

static struct nbdkit_filter *f;
static const char dummy_context;

static int
next_open (nbdkit_context *context, int readonly, const char *exportname)
{
  assert (context == (nbdkit_context *) &dummy_context);
  return 0;
}

static struct conn *
conn_open (struct export *x, int is_tls, uint64_t r)
{
  struct conn *c = calloc (1, sizeof *c);

  assert (c);
  c->next.get_size = be_get_size;
  c->next.can_multi_conn = be_can_multi_conn;
  c->next.can_write = be_can_write;
  c->next.can_flush = c->next.can_trim = c->next.can_zero = be_can_yes;
  c->next.can_fast_zero = c->next.can_fua = be_can_yes;
  c->next.can_extents = c->next.can_cache = be_can_yes;
  c->next.is_rotational = be_is_rotational;
  c->next.block_size = be_block_size;
  c->next.flush = be_flush;
  c->next.extents = be_extents;
  c->next.pwrite = be_pwrite;
  c->next.trim = be_trim;
  c->next.zero = be_zero;
  c->x = x;
  c->r = r | 1;
  pthread_mutex_init (&c->r_lock, NULL);
  pthread_mutex_init (&c->req_lock, NULL);
  c->handle = f->open (next_open, (nbdkit_context *) &dummy_context,
                       0, x->name, is_tls);
  if (c->handle == NULL) {
    FAIL (".open failed");
    exit (EXIT_FAILURE);
  }
  if (f->prepare && f->prepare (&c->next, c->handle, 0) == -1) {
    FAIL (".prepare failed");
    exit (EXIT_FAILURE);
  }
  return c;
}

static void
conn_close (struct conn *c)
{
  if (f->finalize && f->finalize (&c->next, c->handle) == -1)
    FAIL (".finalize failed");
  f->close (c->handle);
  pthread_mutex_destroy (&c->r_lock);
  pthread_mutex_destroy (&c->req_lock);
  /* Poison the fake next: a prefetch worker that outlived .finalize
   * would now call through NULL (and ASan sees the freed memory).
   */
  memset (&c->next, 0, sizeof c->next);
  free (c);
}

/* One block status request, checked against the model.  Returns the
 * end of the answer, or 0 if the request failed.
 */
static uint64_t
request (struct conn *c, int id, uint64_t op,
         uint64_t offset, uint64_t count, uint32_t flags)
{
  struct export *x = c->x;
  struct nbdkit_extents *ext;
  struct nbdkit_extent last;
  uint64_t t0, t1;
  size_t i, n;
  int err = 0, ret;

  ext = nbdkit_extents_new (offset, SIZE);     /* as the server does */
  assert (ext);
  bump (&client_requests);
  t0 = export_clock (x);
  ret = f->extents (&c->next, c->handle, count, offset, flags, ext, &err);
  t1 = export_clock (x);

  if (ret == -1) {
    bump (&client_errors);
    if (err == 0)
      FAIL ("client %d op %" PRIu64 ": .extents failed without an errno",
            id, op);
    nbdkit_extents_free (ext);
    return 0;
  }
  n = nbdkit_extents_count (ext);
  if (n == 0 || nbdkit_get_extent (ext, 0).offset != offset) {
    FAIL ("client %d op %" PRIu64 ": no extent at offset %" PRIu64,
          id, op, offset);
    nbdkit_extents_free (ext);
    return 0;
  }
  last = nbdkit_get_extent (ext, n - 1);
  edge_push (offset);
  edge_push (last.offset + last.length);
  pthread_mutex_lock (&x->lock);
  for (i = 0; i < n; ++i) {
    struct nbdkit_extent e = nbdkit_get_extent (ext, i);
    uint64_t u, u_end = (e.offset + e.length + UNIT - 1) / UNIT;

    for (u = e.offset / UNIT; u < u_end; ++u) {
      if (had_type_locked (x, u, e.type, t0, t1))
        continue;
      FAIL ("client %d op %" PRIu64 ": export %s, block status offset=%"
            PRIu64 " count=%" PRIu64 "%s: extent %zu [%" PRIu64 ", +%"
            PRIu64 ") type %" PRIu32 ", but unit %" PRIu64 " (byte %"
            PRIu64 ") was type %u (last change at tick %" PRIu64
            ") all through ticks %" PRIu64 "..%" PRIu64,
            id, op, x->name, offset, count,
            flags ? " REQ_ONE" : "", i, e.offset, e.length, e.type,
            u, u * UNIT, x->units[u].type,
            x->units[u].hist[x->units[u].len - 1].tick, t0, t1);
      i = n;
      break;
    }
  }
  pthread_mutex_unlock (&x->lock);
  nbdkit_extents_free (ext);
  return last.offset + last.length;
}

/* A random block status request. */
static void
client_extents (struct conn *c, uint64_t *r, int id, uint64_t op)
{
  uint64_t offset, count;

  offset = rnd_below (r, SIZE);
  if (rnd_below (r, 3) == 0)
    offset = edge_pick (r) % SIZE;
  else if (rnd_below (r, 2))
    offset = offset / UNIT * UNIT;
  switch (rnd_below (r, 3)) {
  case 0: count = 1 + rnd_below (r, 4096); break;
  case 1: count = 1 + rnd_below (r, 1024 * 1024); break;
  default: count = SIZE; break;
  }
  if (count > SIZE - offset)
    count = SIZE - offset;
  request (c, id, op, offset, count,
           rnd_below (r, 3) == 0 ? NBDKIT_FLAG_REQ_ONE : 0);
}

/* With nothing else running, walk the whole export through a new
 * connection: the answers must be exactly the model now.
 */
static void
final_walk (struct export *x, uint64_t r)
{
  struct conn *c = conn_open (x, 0, r);
  uint64_t pos = 0, end, op = 0;
  unsigned failed = 0;

  while (pos < SIZE && failed < 100) {
    end = request (c, -1, op++, pos, SIZE - pos, 0);
    if (end == 0)
      failed++;                 /* an injected backend error: again */
    else
      pos = end;
  }
  if (pos < SIZE)
    FAIL ("the final walk of export %s did not finish", x->name);
  conn_close (c);
}

static void
client_write (struct conn *c, uint64_t *r)
{
  static const char zeroes[MAX_IO];
  uint64_t offset = rnd_below (r, SIZE);
  uint32_t count = 1 + rnd_below (r, rnd_below (r, 4) ? UNIT * 2 : MAX_IO);
  uint32_t flags = 0;
  int err = 0, ret;

  uint64_t e;

  if (rnd_below (r, 3) == 0 && (e = edge_pick (r) % SIZE) % UNIT) {
    /* The rest of the unit before or after an edge. */
    if (rnd_below (r, 2)) {
      offset = e / UNIT * UNIT;
      count = e - offset;
    }
    else {
      offset = e;
      count = UNIT - e % UNIT;
    }
  }
  else if (rnd_below (r, 2))
    offset = offset / UNIT * UNIT;
  if (count > SIZE - offset)
    count = SIZE - offset;
  switch (rnd_below (r, 5)) {
  case 0: case 1:
    /* Now and then with FUA, which brackets the write as a flush. */
    if (rnd_below (r, 4) == 0)
      flags |= NBDKIT_FLAG_FUA;
    ret = f->pwrite (&c->next, c->handle, zeroes, count, offset, flags,
                     &err);
    break;
  case 4:
    /* The model shows writes at once, so a flush changes nothing it
     * can see; it exercises rule F's bookkeeping beside the rest.
     */
    ret = f->flush (&c->next, c->handle, 0, &err);
    break;
  case 2:
    ret = f->trim (&c->next, c->handle, count, offset, 0, &err);
    break;
  default:
    if (rnd_below (r, 2))
      flags |= NBDKIT_FLAG_MAY_TRIM;
    ret = f->zero (&c->next, c->handle, count, offset, flags, &err);
    break;
  }
  if (ret == -1 && err == 0)
    FAIL ("a write failed without an errno");
}

/* Clients 0 and 1 share this connection. */
static struct conn *shared_conn;
static struct timespec deadline;

static bool
time_left (void)
{
  struct timespec now;

  clock_gettime (CLOCK_MONOTONIC, &now);
  return now.tv_sec < deadline.tv_sec ||
    (now.tv_sec == deadline.tv_sec && now.tv_nsec < deadline.tv_nsec);
}

static void *
client_thread (void *arg)
{
  int id = (int) (intptr_t) arg;
  uint64_t r = seed * 1000003 + id * 7919 + 1;
  struct conn *c;
  uint64_t op;

  if (id < 2)
    c = shared_conn;
  else
    c = conn_open (&exports[id % 2], 0, rnd (&r));

  for (op = 0; time_left (); ++op) {
    unsigned what = rnd_below (&r, 100);

    if (serialized)
      pthread_mutex_lock (&c->req_lock);
    if (what < 65)
      client_extents (c, &r, id, op);
    else if (what < 97)
      client_write (c, &r);
    if (serialized)
      pthread_mutex_unlock (&c->req_lock);
    if (what >= 97 && id >= 2) {
      /* Reconnect: another export, or the other TLS state. */
      conn_close (c);
      c = conn_open (&exports[rnd_below (&r, 2)], rnd_below (&r, 2), rnd (&r));
    }
  }
  if (id >= 2)
    conn_close (c);
  if (verbose)
    fprintf (stderr, "client %d: %" PRIu64 " operations\n", id, op);
  return NULL;
}

static int
next_config (nbdkit_backend *b, const char *key, const char *value)
{
  FAIL ("the filter passed on an unknown key %s=%s", key, value);
  return -1;
}

static int
next_config_complete (nbdkit_backend *b)
{
  return 0;
}

static void
config (const char *key, const char *value)
{
  if (f->config (next_config, NULL, key, value) == -1) {
    FAIL ("%s=%s refused", key, value);
    exit (EXIT_FAILURE);
  }
}

static uint64_t
stat_value (const char *line, const char *key)
{
  const char *p = strstr (line, key);

  if (p == NULL || p[strlen (key)] != '=') {
    FAIL ("the stats line has no %s: %s", key, line);
    return 0;
  }
  return strtoull (p + strlen (key) + 1, NULL, 10);
}

static int
run_model (int argc, char *argv[], const char *model)
{
  static const char *const windows[] = { "4K", "64K", "256K", "4M" };
  static const char *const max_sizes[] = { "4K", "16K", "1M" };
  static const char *const scopes[] = { "auto", "export", "connection" };
  pthread_t threads[CLIENTS];
  char statsfile[] = "/tmp/tsan-harness-stats.XXXXXX";
  char line[1024] = "";
  const char *env_seed = getenv ("HARNESS_SEED");
  const char *env_seconds = getenv ("HARNESS_SECONDS");
  const char *window, *max_size, *scope, *workers;
  unsigned seconds;
  uint64_t r;
  FILE *fp;
  int fd, i;

  verbose = getenv ("HARNESS_VERBOSE") != NULL;
  serialized = strcmp (model, "serialize_requests") == 0;
  if (!serialized && strcmp (model, "parallel") != 0) {
    fprintf (stderr, "tsan-harness: HARNESS_MODEL=%s: not parallel or "
             "serialize_requests\n", model);
    return 2;
  }
  seed = strtoull (argc > 1 ? argv[1] : env_seed ? env_seed : "1", NULL, 0);
  seconds = atoi (argc > 2 ? argv[2] : env_seconds ? env_seconds : "10");
  r = seed * 2 + 1;

  f = filter_init ();
  assert (f && f->open && f->close && f->extents && f->pwrite &&
          f->trim && f->zero && f->flush && f->config);
  if (f->load)
    f->load ();

  fd = mkstemp (statsfile);
  assert (fd >= 0);
  close (fd);
  window = windows[rnd_below (&r, 4)];
  max_size = max_sizes[rnd_below (&r, 3)];
  scope = scopes[rnd_below (&r, 3)];
  workers = "3";
  config ("cacheextents-window", window);
  config ("cacheextents-max-size", max_size);
  config ("cacheextents-scope", scope);
  config ("cacheextents-granularity", "4K");    /* = UNIT */
  config ("cacheextents-prefetch", "true");
  config ("cacheextents-prefetch-threads", workers);
  config ("cacheextents-statsfile", statsfile);
  if (f->config_complete &&
      f->config_complete (next_config_complete, NULL) == -1) {
    FAIL (".config_complete failed");
    exit (EXIT_FAILURE);
  }
  if (f->thread_model &&
      f->thread_model () != NBDKIT_THREAD_MODEL_PARALLEL)
    printf ("tsan-harness: note: the filter asks for thread model %d\n",
            f->thread_model ());
  if (f->get_ready &&
      f->get_ready (serialized ? NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS
                               : NBDKIT_THREAD_MODEL_PARALLEL) == -1) {
    FAIL (".get_ready failed");
    exit (EXIT_FAILURE);
  }
  cacheextents_debug_cache = 1;         /* run the debug paths too */
  cacheextents_debug_prefetch = 1;

  export_init (&exports[0], &r);
  export_init (&exports[1], &r);
  printf ("tsan-harness: %s, seed %llu, %u seconds, %d clients, window %s, "
          "max-size %s, scope %s, %s prefetch workers\n",
          model, seed, seconds, CLIENTS, window, max_size, scope, workers);
  fflush (stdout);

  clock_gettime (CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += seconds;
  shared_conn = conn_open (&exports[0], 0, rnd (&r));
  for (i = 0; i < CLIENTS; ++i)
    if (pthread_create (&threads[i], NULL, client_thread,
                        (void *) (intptr_t) i) != 0) {
      perror ("pthread_create");
      exit (EXIT_FAILURE);
    }
  for (i = 0; i < CLIENTS; ++i)
    pthread_join (threads[i], NULL);
  conn_close (shared_conn);
  final_walk (&exports[0], rnd (&r));
  final_walk (&exports[1], rnd (&r));

  if (f->unload)
    f->unload ();

  /* The filter's counters against ours. */
  fp = fopen (statsfile, "r");
  if (fp == NULL || fgets (line, sizeof line, fp) == NULL)
    FAIL ("no stats line in %s", statsfile);
  if (fp)
    fclose (fp);
  unlink (statsfile);
  printf ("tsan-harness: %" PRIu64 " block status requests (%" PRIu64
          " failed), %" PRIu64 " backend extents calls, %" PRIu64
          " flushes, %" PRIu64 " nbdkit_error calls\n%s",
          client_requests, client_errors, backend_extents_calls,
          backend_flushes, nbdkit_errors, line);
  if (stat_value (line, "requests") != client_requests)
    FAIL ("requests: the filter counted %" PRIu64 ", the clients made %"
          PRIu64, stat_value (line, "requests"), client_requests);
  if (stat_value (line, "hits") + stat_value (line, "misses") !=
      client_requests)
    FAIL ("hits + misses != requests");
  if (stat_value (line, "backend-calls") +
      stat_value (line, "prefetch-calls") != backend_extents_calls)
    FAIL ("backend-calls + prefetch-calls != %" PRIu64
          " calls the backend saw", backend_extents_calls);
  if (misuse)
    FAIL ("%" PRIu64 " misuses of the nbdkit API", misuse);

  export_free (&exports[0]);
  export_free (&exports[1]);
  if (failures) {
    printf ("tsan-harness: FAILED (seed %llu)\n", seed);
    return EXIT_FAILURE;
  }
  printf ("tsan-harness: ok (seed %llu)\n", seed);
  return EXIT_SUCCESS;
}

int
main (int argc, char *argv[])
{
  static const char *const models[] = { "parallel", "serialize_requests" };
  const char *model = getenv ("HARNESS_MODEL");
  int i, status, rc = EXIT_SUCCESS;
  pid_t pid;

  if (model)
    return run_model (argc, argv, model);
  for (i = 0; i < 2; ++i) {
    fflush (stdout);
    pid = fork ();
    if (pid == -1) {
      perror ("fork");
      return EXIT_FAILURE;
    }
    if (pid == 0)
      exit (run_model (argc, argv, models[i]));
    if (waitpid (pid, &status, 0) == -1 || !WIFEXITED (status) ||
        WEXITSTATUS (status) != 0) {
      printf ("tsan-harness: the %s run failed\n", models[i]);
      rc = EXIT_FAILURE;
    }
  }
  return rc;
}
