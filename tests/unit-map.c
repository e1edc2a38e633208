/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: unit test of the extent map (src/map.c), without nbdkit.
 *
 * Two reference models are kept next to the real map and compared
 * with it after every operation:
 *
 *   - a byte model: one type per byte of a 4096-byte universe (-1 for
 *     unknown), too simple to be wrong;
 *   - a run model: a sorted array of known runs with 64-bit ends, used
 *     for offsets near 0, near 2^63 and near UINT64_MAX, and for
 *     lengths that must be clamped at UINT64_MAX.
 *
 * Both models also give each run a "stamp", the time it was last used,
 * so that eviction can be checked: the extents evicted must be the
 * least recently used ones (pieces of one cut extent share a stamp and
 * may go in either order).  After an eviction the models forget what
 * the map dropped, so they stay exact.
 *
 * The comparison walks the map with map_foreach and checks the
 * invariants on the way: sorted, disjoint, non-empty, coalesced, no
 * wrap, and map_count / map_lru_bytes consistent.
 *
 * Usage: unit-map [SEED]     (default: a fixed list of seeds)
 * UNIT_MAP_OPS=N sets the random operations per seed and phase.
 */

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "map.h"

/* Fault injection: map.c calls this before every node allocation.
 * fault_countdown == k makes the (k+1)-th allocation from now fail;
 * -1 means never.
 */
static int fault_countdown = -1;

bool map_fault_alloc (void);

bool
map_fault_alloc (void)
{
  if (fault_countdown < 0)
    return false;
  return fault_countdown-- == 0;
}

/* splitmix64: a small PRNG whose seed is printed. */
static uint64_t rng_state;

static uint64_t
rnd (void)
{
  uint64_t z = (rng_state += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t
rnd_below (uint64_t n)
{
  return rnd () % n;
}

static uint64_t total_ops;

/*----------------------------------------------------------------------
 * Snapshots of the real map, with the invariant checks.
 */

#define MAX_RUNS 40000

struct snap {
  struct map_extent e[MAX_RUNS];
  size_t n;
};

static int
snap_fn (const struct map_extent *e, void *opaque)
{
  struct snap *s = opaque;

  assert (s->n < MAX_RUNS);
  assert (e->length > 0);
  assert (e->offset <= UINT64_MAX - e->length);
  if (s->n > 0) {
    const struct map_extent *p = &s->e[s->n - 1];
    uint64_t pend = p->offset + p->length;

    assert (pend <= e->offset);                         /* sorted, disjoint */
    assert (pend != e->offset || p->type != e->type);   /* coalesced */
  }
  s->e[s->n++] = *e;
  return 0;
}

static void
snapshot (struct map *map, struct snap *s)
{
  s->n = 0;
  assert (map_foreach (map, snap_fn, s) == 0);
  assert (s->n == map_count (map));
}

static int
stop_at_second (const struct map_extent *e, void *opaque)
{
  int *seen = opaque;

  (void) e;
  return ++*seen == 2 ? 42 : 0;
}

/*----------------------------------------------------------------------
 * The models.
 */

struct run {
  uint64_t start, end;
  uint32_t type;
  uint64_t stamp;
};

static uint64_t clock_now;      /* shared by all models: one LRU domain */

#define U 4096                  /* byte model universe */

struct tmap {
  struct map *map;
  bool bytes;                   /* which model */
  /* Byte model. */
  int type[U];                  /* -1 = unknown */
  uint64_t stamp[U];
  /* Run model: sorted, disjoint, coalesced known runs. */
  struct run *runs;
  size_t nruns;
};

static struct run tmp_runs[MAX_RUNS];

/* The model's knowledge as runs.  For the byte model every run must
 * carry one stamp (a check of the model itself).
 */
static size_t
model_runs (struct tmap *t, struct run *out)
{
  size_t n = 0, i;

  if (!t->bytes) {
    memcpy (out, t->runs, t->nruns * sizeof *out);
    return t->nruns;
  }
  for (i = 0; i < U; ) {
    size_t j = i + 1;

    if (t->type[i] < 0) {
      i++;
      continue;
    }
    while (j < U && t->type[j] == t->type[i]) {
      assert (t->stamp[j] == t->stamp[i]);
      j++;
    }
    out[n].start = i;
    out[n].end = j;
    out[n].type = t->type[i];
    out[n].stamp = t->stamp[i];
    n++;
    i = j;
  }
  return n;
}

/* Replace [start, end) in the run model by a run of 'type' (type < 0:
 * unknown).  Returns the index of the new run, or -1.
 */
static ssize_t
runs_paint (struct tmap *t, uint64_t start, uint64_t end, int type,
            uint64_t stamp)
{
  size_t n = 0, i;
  ssize_t at = -1;

  for (i = 0; i < t->nruns; i++) {
    struct run r = t->runs[i];

    if (r.end <= start || r.start >= end) {
      if (r.start >= end && at == -1 && type >= 0) {
        at = n;
        tmp_runs[n++] = (struct run) { start, end, type, stamp };
      }
      tmp_runs[n++] = r;
      continue;
    }
    if (r.start < start)
      tmp_runs[n++] = (struct run) { r.start, start, r.type, r.stamp };
    if (r.end > end) {
      if (at == -1 && type >= 0) {
        at = n;
        tmp_runs[n++] = (struct run) { start, end, type, stamp };
      }
      tmp_runs[n++] = (struct run) { end, r.end, r.type, r.stamp };
    }
  }
  if (at == -1 && type >= 0) {
    at = n;
    tmp_runs[n++] = (struct run) { start, end, type, stamp };
  }
  assert (n <= MAX_RUNS);
  memcpy (t->runs, tmp_runs, n * sizeof *tmp_runs);
  t->nruns = n;
  return at;
}

/* The run containing x, or NULL. */
static struct run *
runs_find (struct run *runs, size_t n, uint64_t x)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (runs[i].start <= x && x < runs[i].end)
      return &runs[i];
  return NULL;
}

static void
model_paint (struct tmap *t, uint64_t start, uint64_t end, int type)
{
  uint64_t i;

  if (!t->bytes) {
    runs_paint (t, start, end, type, 0);
    return;
  }
  assert (end <= U);
  for (i = start; i < end; i++)
    t->type[i] = type;
}

/* Restamp the whole run containing byte x (which is known). */
static void
model_touch (struct tmap *t, uint64_t x)
{
  uint64_t now = ++clock_now;

  if (!t->bytes) {
    struct run *r = runs_find (t->runs, t->nruns, x);

    assert (r);
    r->stamp = now;
  }
  else {
    uint64_t l = x, r = x + 1;

    while (l > 0 && t->type[l - 1] == t->type[x])
      l--;
    while (r < U && t->type[r] == t->type[x])
      r++;
    for (; l < r; l++)
      t->stamp[l] = now;
  }
}

static void
model_set (struct tmap *t, uint64_t start, uint64_t end, uint32_t type)
{
  if (!t->bytes) {
    ssize_t at = runs_paint (t, start, end, type, 0);
    size_t i = at;

    /* Coalesce with the neighbours. */
    if (i + 1 < t->nruns && t->runs[i + 1].start == end &&
        t->runs[i + 1].type == type) {
      t->runs[i].end = t->runs[i + 1].end;
      memmove (&t->runs[i + 1], &t->runs[i + 2],
               (t->nruns - i - 2) * sizeof *t->runs);
      t->nruns--;
    }
    if (i > 0 && t->runs[i - 1].end == start && t->runs[i - 1].type == type) {
      t->runs[i - 1].end = t->runs[i].end;
      memmove (&t->runs[i], &t->runs[i + 1],
               (t->nruns - i - 1) * sizeof *t->runs);
      t->nruns--;
    }
  }
  else
    model_paint (t, start, end, type);
  model_touch (t, start);
}

/* Forget every run overlapping [start, end) in full. */
static void
model_clear_overlapping (struct tmap *t, uint64_t start, uint64_t end)
{
  static struct run r[MAX_RUNS];
  size_t n, i;

  n = model_runs (t, r);
  for (i = 0; i < n; i++)
    if (r[i].start < end && r[i].end > start)
      model_paint (t, r[i].start, r[i].end, -1);
}

static uint64_t
model_next_gap (struct tmap *t, uint64_t offset, uint64_t limit)
{
  uint64_t pos = offset;

  if (offset >= limit)
    return limit;
  if (t->bytes) {
    while (pos < limit && pos < U && t->type[pos] >= 0)
      pos++;
    return pos < limit ? pos : limit;
  }
  for (size_t i = 0; i < t->nruns && pos < limit; i++) {
    if (t->runs[i].end <= pos)
      continue;
    if (t->runs[i].start > pos)
      break;
    pos = t->runs[i].end;
  }
  return pos < limit ? pos : limit;
}

/* How many nodes map_set / map_clear need (see map.c's design note):
 * the fault tests predict the outcome from it.
 */
static int
model_needs (struct tmap *t, uint64_t start, uint64_t end, bool set,
             uint32_t type)
{
  static struct run r[MAX_RUNS];
  size_t n = model_runs (t, r);
  struct run *s = runs_find (r, n, start);

  if (set && s && s->end >= end && s->type == type)
    return 0;
  if (s && s->start < start && s->end > end)
    return set ? 2 : 1;
  return set ? 1 : 0;
}

/*----------------------------------------------------------------------
 * Comparison.
 */

static struct snap snap_a, snap_b;
static struct run model_a[MAX_RUNS];

static void
check (struct tmap *t)
{
  size_t n, i;

  snapshot (t->map, &snap_a);
  n = model_runs (t, model_a);
  if (n != snap_a.n) {
    fprintf (stderr, "unit-map: model has %zu runs, map %zu extents\n",
             n, snap_a.n);
    abort ();
  }
  for (i = 0; i < n; i++) {
    if (snap_a.e[i].offset != model_a[i].start ||
        snap_a.e[i].length != model_a[i].end - model_a[i].start ||
        snap_a.e[i].type != model_a[i].type) {
      fprintf (stderr, "unit-map: run %zu differs: map [%" PRIu64 ", +%"
               PRIu64 ") type %" PRIu32 ", model [%" PRIu64 ", %" PRIu64
               ") type %" PRIu32 "\n", i, snap_a.e[i].offset,
               snap_a.e[i].length, snap_a.e[i].type, model_a[i].start,
               model_a[i].end, model_a[i].type);
      abort ();
    }
  }
}

static void
check_domain (struct map_lru *lru, struct tmap **ts, size_t nt)
{
  size_t total = 0, i;

  for (i = 0; i < nt; i++)
    total += map_count (ts[i]->map);
  assert (map_lru_bytes (lru) == total * map_extent_cost ());
}

/*----------------------------------------------------------------------
 * Operations: each runs on the map and on the model, then compares.
 */

static uint64_t
clamp_end (uint64_t offset, uint64_t length)
{
  return length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
}

static void
op_set (struct tmap *t, uint64_t offset, uint64_t length, uint32_t type)
{
  uint64_t end = clamp_end (offset, length);

  assert (map_set (t->map, offset, length, type) == 0);
  if (end > offset)
    model_set (t, offset, end, type);
  check (t);
  total_ops++;
}

/* map_set with the (countdown+1)-th allocation failing. */
static void
op_set_fault (struct tmap *t, uint64_t offset, uint64_t length,
              uint32_t type, int countdown)
{
  uint64_t end = clamp_end (offset, length);
  int needs = end > offset ? model_needs (t, offset, end, true, type) : 0;
  int r;

  fault_countdown = countdown;
  errno = 0;
  r = map_set (t->map, offset, length, type);
  fault_countdown = -1;
  if (needs > countdown) {
    assert (r == -1 && errno == ENOMEM);
    /* Unchanged, including the LRU order (stamps not touched). */
  }
  else {
    assert (r == 0);
    if (end > offset)
      model_set (t, offset, end, type);
  }
  check (t);
  total_ops++;
}

static void
op_clear (struct tmap *t, uint64_t offset, uint64_t length, bool fault)
{
  uint64_t end = clamp_end (offset, length);
  int needs = end > offset ? model_needs (t, offset, end, false, 0) : 0;
  int r;

  fault_countdown = fault ? 0 : -1;
  errno = 0;
  r = map_clear (t->map, offset, length);
  fault_countdown = -1;
  if (fault && needs) {
    /* The extent that would have been split is forgotten in full. */
    assert (r == -1 && errno == ENOMEM);
    model_clear_overlapping (t, offset, end);
  }
  else {
    assert (r == 0);
    if (end > offset)
      model_paint (t, offset, end, -1);
  }
  check (t);
  total_ops++;
}

static void
op_clear_overlapping (struct tmap *t, uint64_t offset, uint64_t length)
{
  uint64_t end = clamp_end (offset, length);

  map_clear_overlapping (t->map, offset, length);
  if (end > offset)
    model_clear_overlapping (t, offset, end);
  check (t);
  total_ops++;
}

static void
op_lookup (struct tmap *t, uint64_t x)
{
  struct map_extent e = { 1, 2, 3 };
  struct run *r;
  size_t n;
  bool found;

  n = model_runs (t, model_a);
  r = runs_find (model_a, n, x);
  found = map_lookup (t->map, x, &e);
  if (r == NULL) {
    assert (!found);
    assert (e.offset == 1 && e.length == 2 && e.type == 3);  /* untouched */
  }
  else {
    assert (found);
    assert (e.offset == r->start && e.length == r->end - r->start);
    assert (e.type == r->type);
    model_touch (t, x);
  }
  check (t);
  total_ops++;
}

static void
op_next_gap (struct tmap *t, uint64_t offset, uint64_t limit)
{
  uint64_t got = map_next_gap (t->map, offset, limit);
  uint64_t want = model_next_gap (t, offset, limit);

  if (got != want) {
    fprintf (stderr, "unit-map: next_gap (%" PRIu64 ", %" PRIu64 ") = %"
             PRIu64 ", model says %" PRIu64 "\n", offset, limit, got, want);
    abort ();
  }
  check (t);
  total_ops++;
}

/* Evict down to 'limit' bytes and check that exactly the least
 * recently used extents of the whole domain went.
 */
static void
op_evict (struct map_lru *lru, struct tmap **ts, size_t nt, size_t limit)
{
  static struct run before[4][MAX_RUNS];
  static bool kept[4][MAX_RUNS];
  size_t nbefore[4], total = 0, survivors = 0, removed = 0, evicted, i, j;
  uint64_t max_removed = 0, min_kept = UINT64_MAX;

  assert (nt <= 4);
  for (i = 0; i < nt; i++) {
    nbefore[i] = model_runs (ts[i], before[i]);
    total += nbefore[i];
    memset (kept[i], 0, nbefore[i] * sizeof (bool));
  }
  assert (map_lru_bytes (lru) == total * map_extent_cost ());

  evicted = map_lru_evict (lru, limit);
  assert (map_lru_bytes (lru) <= limit);

  for (i = 0; i < nt; i++) {
    size_t k = 0;

    /* What is left must be a subset of what was there, extent for
     * extent (eviction never cuts or merges).
     */
    snapshot (ts[i]->map, &snap_b);
    for (j = 0; j < snap_b.n; j++) {
      while (k < nbefore[i] && before[i][k].start < snap_b.e[j].offset)
        k++;
      assert (k < nbefore[i]);
      assert (before[i][k].start == snap_b.e[j].offset);
      assert (before[i][k].end - before[i][k].start == snap_b.e[j].length);
      assert (before[i][k].type == snap_b.e[j].type);
      kept[i][k] = true;
    }
    survivors += snap_b.n;
    for (k = 0; k < nbefore[i]; k++) {
      if (kept[i][k]) {
        if (before[i][k].stamp < min_kept)
          min_kept = before[i][k].stamp;
      }
      else {
        removed++;
        if (before[i][k].stamp > max_removed)
          max_removed = before[i][k].stamp;
        model_paint (ts[i], before[i][k].start, before[i][k].end, -1);
      }
    }
  }
  assert (removed == evicted);
  assert (survivors + removed == total);
  /* No more than needed... */
  assert (survivors == (total < limit / map_extent_cost () ?
                        total : limit / map_extent_cost ()));
  /* ...and the oldest ones. */
  if (removed > 0 && survivors > 0)
    assert (max_removed <= min_kept);

  for (i = 0; i < nt; i++)
    check (ts[i]);
  check_domain (lru, ts, nt);
  total_ops++;
}

/*----------------------------------------------------------------------
 * Random operations.
 */

static struct tmap *
tmap_new (struct map_lru *lru, bool bytes)
{
  struct tmap *t = calloc (1, sizeof *t);

  assert (t);
  t->map = map_new (lru);
  assert (t->map);
  t->bytes = bytes;
  for (size_t i = 0; i < U; i++)
    t->type[i] = -1;
  if (!bytes) {
    t->runs = malloc (MAX_RUNS * sizeof *t->runs);
    assert (t->runs);
  }
  return t;
}

static void
tmap_free (struct tmap *t)
{
  map_free (t->map);
  free (t->runs);
  free (t);
}

/* Region bases for the run model: near 0, 2^63 and UINT64_MAX. */
static const uint64_t bases[3] = {
  0,
  (UINT64_C (1) << 63) - U / 2,
  UINT64_MAX - (U - 1),
};

static uint32_t
rnd_type (void)
{
  /* Mostly two types, so that coalescing happens often. */
  return rnd_below (4) ? (uint32_t) rnd_below (2) : (uint32_t) rnd_below (4);
}

static uint64_t
rnd_offset (bool bytes)
{
  if (bytes)
    return rnd_below (U + 1);
  if (rnd_below (50) == 0)
    return rnd ();
  return bases[rnd_below (3)] + rnd_below (U);
}

static uint64_t
rnd_length (bool bytes, uint64_t offset)
{
  uint64_t len;

  switch (rnd_below (20)) {
  case 0 ... 8:  len = rnd_below (16); break;
  case 9 ... 14: len = rnd_below (300); break;
  case 15 ... 16: len = rnd_below (U); break;
  case 17:       len = rnd (); break;               /* often clamped */
  case 18:       len = UINT64_MAX - offset; break;  /* to the very end */
  default:
    /* Into another region. */
    len = bases[rnd_below (3)] + rnd_below (U);
    len = len > offset ? len - offset : rnd_below (8);
  }
  if (bytes && len > U - offset)
    len = U - offset;
  return len;
}

static void
random_phase (uint64_t seed, size_t nmaps, bool bytes, size_t nops)
{
  struct map_lru *lru = map_lru_new ();
  struct tmap *ts[4];
  size_t i, op;

  assert (lru && nmaps <= 4);
  rng_state = seed;
  for (i = 0; i < nmaps; i++)
    ts[i] = tmap_new (lru, bytes);

  for (op = 0; op < nops; op++) {
    struct tmap *t = ts[rnd_below (nmaps)];
    uint64_t off = rnd_offset (bytes);
    uint64_t len = rnd_length (bytes, off);
    unsigned k = rnd_below (100);

    if (k < 34)
      op_set (t, off, len, rnd_type ());
    else if (k < 44)
      op_clear (t, off, len, false);
    else if (k < 50)
      op_clear_overlapping (t, off, len);
    else if (k < 72)
      op_lookup (t, rnd_below (8) ? off : rnd ());
    else if (k < 88) {
      uint64_t limit = clamp_end (off, len);

      if (rnd_below (10) == 0)
        limit = rnd_below (2) ? rnd () : off - rnd_below (3);
      op_next_gap (t, off, limit);
    }
    else if (k < 92) {
      size_t count = map_lru_bytes (lru) / map_extent_cost ();
      size_t limit;

      switch (rnd_below (4)) {
      case 0:  limit = rnd_below (map_lru_bytes (lru) + 2); break;
      case 1:  limit = 0; break;
      default:
        limit = (count - rnd_below ((count < 8 ? count : 8) + 1)) *
          map_extent_cost ();
      }
      op_evict (lru, ts, nmaps, limit);
    }
    else if (k < 96)
      op_set_fault (t, off, len, rnd_type (), rnd_below (2));
    else
      op_clear (t, off, len, true);
    check_domain (lru, ts, nmaps);
  }

  for (i = 0; i < nmaps; i++)
    tmap_free (ts[i]);
  assert (map_lru_bytes (lru) == 0);
  map_lru_free (lru);
}

/*----------------------------------------------------------------------
 * Explicit cases.
 */

#define T63 (UINT64_C (1) << 63)

static void
expect (struct map *map, size_t n, const struct map_extent *want)
{
  size_t i;

  snapshot (map, &snap_a);
  for (i = 0; i < n && i < snap_a.n; i++)
    if (snap_a.e[i].offset != want[i].offset ||
        snap_a.e[i].length != want[i].length ||
        snap_a.e[i].type != want[i].type)
      break;
  if (i == n && n == snap_a.n)
    return;
  fprintf (stderr, "unit-map: unexpected map contents:\n");
  for (i = 0; i < snap_a.n; i++)
    fprintf (stderr, "  got  [%" PRIu64 ", +%" PRIu64 ") type %" PRIu32 "\n",
             snap_a.e[i].offset, snap_a.e[i].length, snap_a.e[i].type);
  for (i = 0; i < n; i++)
    fprintf (stderr, "  want [%" PRIu64 ", +%" PRIu64 ") type %" PRIu32 "\n",
             want[i].offset, want[i].length, want[i].type);
  abort ();
}

#define EXPECT(map, ...)                                                \
  do {                                                                  \
    const struct map_extent want_[] = { __VA_ARGS__ };                  \
    expect ((map), sizeof want_ / sizeof want_[0], want_);              \
  } while (0)
#define EXPECT_EMPTY(map) expect ((map), 0, NULL)

static bool
has (struct map *map, uint64_t x, uint64_t offset, uint64_t length,
     uint32_t type)
{
  struct map_extent e;

  return map_lookup (map, x, &e) &&
    e.offset == offset && e.length == length && e.type == type;
}

static void
test_zero_and_one_byte (struct map_lru *lru)
{
  struct map *m = map_new (lru);
  struct map_extent e = { 9, 9, 9 };

  /* length == 0 is a no-op everywhere. */
  assert (map_set (m, 10, 0, 1) == 0);
  EXPECT_EMPTY (m);
  assert (map_set (m, 0, 10, 1) == 0);
  assert (map_set (m, 5, 0, 2) == 0);
  assert (map_clear (m, 5, 0) == 0);
  map_clear_overlapping (m, 5, 0);
  EXPECT (m, { 0, 10, 1 });
  assert (map_next_gap (m, 5, 5) == 5);
  assert (map_next_gap (m, 7, 3) == 3);       /* empty range: the limit */
  assert (map_clear (m, 0, 10) == 0);
  EXPECT_EMPTY (m);

  /* One byte. */
  assert (map_set (m, 7, 1, 1) == 0);
  EXPECT (m, { 7, 1, 1 });
  assert (has (m, 7, 7, 1, 1));
  assert (!map_lookup (m, 6, &e) && !map_lookup (m, 8, &e));
  assert (e.offset == 9 && e.length == 9 && e.type == 9);
  assert (map_next_gap (m, 7, 8) == 8);
  assert (map_next_gap (m, 7, 100) == 8);
  assert (map_next_gap (m, 6, 8) == 6);
  assert (map_set (m, 8, 1, 2) == 0);         /* touching, other type */
  assert (map_set (m, 6, 1, 1) == 0);         /* touching, same type */
  EXPECT (m, { 6, 2, 1 }, { 8, 1, 2 });
  assert (map_clear (m, 7, 1) == 0);          /* one byte out of two */
  EXPECT (m, { 6, 1, 1 }, { 8, 1, 2 });
  map_clear_overlapping (m, 8, 1);
  EXPECT (m, { 6, 1, 1 });
  map_free (m);
}

static void
test_ends (struct map_lru *lru)
{
  struct map *m = map_new (lru);
  const uint64_t size = UINT64_C (1) << 20;
  struct map_extent e;

  /* A range ending at the export end. */
  assert (map_set (m, size - 100, 100, 2) == 0);
  assert (map_next_gap (m, size - 100, size) == size);
  assert (map_next_gap (m, size - 101, size) == size - 101);
  assert (has (m, size - 1, size - 100, 100, 2));
  assert (!map_lookup (m, size, &e));

  /* Around 2^63. */
  assert (map_set (m, T63 - 10, 20, 3) == 0);
  assert (has (m, T63, T63 - 10, 20, 3));
  assert (map_clear (m, T63, 1) == 0);
  EXPECT (m, { size - 100, 100, 2 }, { T63 - 10, 10, 3 }, { T63 + 1, 9, 3 });
  assert (map_next_gap (m, T63 - 10, UINT64_MAX) == T63);
  assert (map_next_gap (m, T63 + 1, T63 + 10) == T63 + 10);
  assert (map_set (m, T63, 1, 3) == 0);       /* fills the hole, merges */
  EXPECT (m, { size - 100, 100, 2 }, { T63 - 10, 20, 3 });

  /* Near UINT64_MAX: lengths are clamped, the last byte is never known. */
  assert (map_set (m, UINT64_MAX - 5, 100, 1) == 0);
  assert (has (m, UINT64_MAX - 1, UINT64_MAX - 5, 5, 1));
  assert (!map_lookup (m, UINT64_MAX, &e));
  assert (map_set (m, UINT64_MAX, 1, 0) == 0);
  assert (map_set (m, UINT64_MAX, UINT64_MAX, 0) == 0);
  assert (map_count (m) == 3);
  assert (map_next_gap (m, UINT64_MAX - 5, UINT64_MAX) == UINT64_MAX);
  assert (map_clear (m, UINT64_MAX - 3, UINT64_MAX) == 0);
  EXPECT (m, { size - 100, 100, 2 }, { T63 - 10, 20, 3 },
          { UINT64_MAX - 5, 2, 1 });

  /* The whole space. */
  assert (map_set (m, 0, UINT64_MAX, 0) == 0);
  EXPECT (m, { 0, UINT64_MAX, 0 });
  assert (map_next_gap (m, 0, UINT64_MAX) == UINT64_MAX);
  assert (has (m, T63, 0, UINT64_MAX, 0));
  assert (map_clear (m, 1, UINT64_MAX - 2) == 0);
  EXPECT (m, { 0, 1, 0 }, { UINT64_MAX - 1, 1, 0 });
  map_clear_overlapping (m, 0, UINT64_MAX);
  EXPECT_EMPTY (m);
  map_free (m);
}

static void
test_coalescing (struct map_lru *lru)
{
  struct map *m = map_new (lru);

  assert (map_set (m, 0, 10, 1) == 0);
  assert (map_set (m, 10, 10, 1) == 0);
  EXPECT (m, { 0, 20, 1 });
  assert (map_set (m, 20, 10, 2) == 0);       /* other type: no merge */
  EXPECT (m, { 0, 20, 1 }, { 20, 10, 2 });
  assert (map_set (m, 5, 10, 1) == 0);        /* inside, same type */
  EXPECT (m, { 0, 20, 1 }, { 20, 10, 2 });
  assert (map_set (m, 40, 10, 1) == 0);
  assert (map_set (m, 20, 20, 1) == 0);       /* bridges both sides */
  EXPECT (m, { 0, 50, 1 });
  assert (has (m, 25, 0, 50, 1));

  /* Another type in the middle splits; the same type again merges. */
  assert (map_set (m, 20, 10, 0) == 0);
  EXPECT (m, { 0, 20, 1 }, { 20, 10, 0 }, { 30, 20, 1 });
  assert (map_set (m, 20, 10, 1) == 0);
  EXPECT (m, { 0, 50, 1 });

  /* Overlapping sets replace what was there. */
  assert (map_set (m, 45, 10, 2) == 0);
  assert (map_set (m, 60, 10, 2) == 0);
  assert (map_set (m, 48, 15, 3) == 0);
  EXPECT (m, { 0, 45, 1 }, { 45, 3, 2 }, { 48, 15, 3 }, { 63, 7, 2 });
  assert (map_set (m, 40, 40, 2) == 0);
  EXPECT (m, { 0, 40, 1 }, { 40, 40, 2 });
  map_free (m);
}

static void
test_clear (struct map_lru *lru)
{
  struct map *m = map_new (lru);

  /* Invalidation in the middle leaves two pieces. */
  assert (map_set (m, 0, 100, 2) == 0);
  assert (map_clear (m, 40, 20) == 0);
  EXPECT (m, { 0, 40, 2 }, { 60, 40, 2 });
  assert (map_clear (m, 0, 10) == 0);
  EXPECT (m, { 10, 30, 2 }, { 60, 40, 2 });
  assert (map_clear (m, 35, 30) == 0);
  EXPECT (m, { 10, 25, 2 }, { 65, 35, 2 });
  assert (map_clear (m, 35, 30) == 0);        /* nothing there */
  assert (map_clear (m, 0, 1000) == 0);
  EXPECT_EMPTY (m);

  /* map_clear_overlapping removes whole extents. */
  assert (map_set (m, 0, 10, 1) == 0);
  assert (map_set (m, 10, 10, 2) == 0);
  assert (map_set (m, 30, 10, 1) == 0);
  assert (map_set (m, 50, 10, 2) == 0);
  map_clear_overlapping (m, 15, 20);
  EXPECT (m, { 0, 10, 1 }, { 50, 10, 2 });
  map_clear_overlapping (m, 60, 5);           /* touches only */
  map_clear_overlapping (m, 45, 5);
  map_clear_overlapping (m, 10, 40);
  EXPECT (m, { 0, 10, 1 }, { 50, 10, 2 });
  map_clear_overlapping (m, 9, 1);
  EXPECT (m, { 50, 10, 2 });
  map_clear_overlapping (m, 55, 1);
  EXPECT_EMPTY (m);
  map_free (m);
}

static void
test_lru (struct map_lru *lru)
{
  const size_t cost = map_extent_cost ();
  struct map *m = map_new (lru), *x, *y;
  int seen = 0;

  assert (map_lru_bytes (lru) == 0);
  assert (map_lru_evict (lru, 0) == 0);

  /* A looked-up extent survives eviction over untouched ones. */
  assert (map_set (m, 0, 10, 1) == 0);
  assert (map_set (m, 20, 10, 1) == 0);
  assert (map_set (m, 40, 10, 1) == 0);
  assert (map_set (m, 60, 10, 1) == 0);
  assert (map_lru_bytes (lru) == 4 * cost);
  assert (has (m, 5, 0, 10, 1));
  assert (map_lru_evict (lru, 3 * cost) == 1);
  EXPECT (m, { 0, 10, 1 }, { 40, 10, 1 }, { 60, 10, 1 });
  assert (map_lru_evict (lru, 3 * cost + cost - 1) == 0);
  assert (map_lru_evict (lru, 2 * cost + 1) == 1);   /* not a multiple */
  assert (map_lru_bytes (lru) <= 2 * cost + 1);
  EXPECT (m, { 0, 10, 1 }, { 60, 10, 1 });
  assert (map_foreach (m, stop_at_second, &seen) == 42 && seen == 2);

  /* map_next_gap does not touch: [60, 70) is still the oldest. */
  assert (map_next_gap (m, 60, 100) == 70);
  assert (map_lru_evict (lru, cost) == 1);
  EXPECT (m, { 0, 10, 1 });
  assert (map_lru_evict (lru, 0) == 1);
  EXPECT_EMPTY (m);

  /* The node made by coalescing is the most recently used. */
  assert (map_set (m, 0, 10, 1) == 0);        /* A */
  assert (map_set (m, 100, 10, 2) == 0);      /* B */
  assert (map_set (m, 200, 10, 1) == 0);      /* C */
  assert (map_set (m, 10, 10, 1) == 0);       /* A' = A + [10, 20) */
  assert (map_lru_evict (lru, 2 * cost) == 1);
  EXPECT (m, { 0, 20, 1 }, { 200, 10, 1 });
  assert (map_lru_evict (lru, cost) == 1);
  EXPECT (m, { 0, 20, 1 });

  /* Setting a range already known with its type refreshes it. */
  assert (map_set (m, 100, 10, 2) == 0);
  assert (map_set (m, 5, 5, 1) == 0);
  assert (map_lru_evict (lru, cost) == 1);
  EXPECT (m, { 0, 20, 1 });

  /* A split extent: both pieces keep its age, the right one goes
   * first (documented in map.c).
   */
  assert (map_set (m, 100, 100, 0) == 0);
  assert (map_set (m, 140, 20, 1) == 0);
  assert (has (m, 0, 0, 20, 1));
  EXPECT (m, { 0, 20, 1 }, { 100, 40, 0 }, { 140, 20, 1 }, { 160, 40, 0 });
  assert (map_lru_evict (lru, 3 * cost) == 1);
  EXPECT (m, { 0, 20, 1 }, { 100, 40, 0 }, { 140, 20, 1 });
  assert (map_lru_evict (lru, 2 * cost) == 1);
  EXPECT (m, { 0, 20, 1 }, { 140, 20, 1 });
  map_free (m);
  assert (map_lru_bytes (lru) == 0);

  /* Two maps in one domain evict across each other. */
  x = map_new (lru);
  y = map_new (lru);
  assert (map_set (x, 0, 10, 1) == 0);        /* X1 */
  assert (map_set (y, 0, 10, 1) == 0);        /* Y1 */
  assert (map_set (x, 20, 10, 1) == 0);       /* X2 */
  assert (map_set (y, 20, 10, 1) == 0);       /* Y2 */
  assert (map_lru_bytes (lru) == 4 * cost);
  assert (map_lru_evict (lru, 2 * cost) == 2);
  EXPECT (x, { 20, 10, 1 });
  EXPECT (y, { 20, 10, 1 });
  assert (has (x, 25, 20, 10, 1));
  assert (map_lru_evict (lru, cost) == 1);
  EXPECT (x, { 20, 10, 1 });
  EXPECT_EMPTY (y);
  assert (map_set (y, 0, 10, 1) == 0);
  map_free (x);                               /* with extents in it */
  assert (map_lru_bytes (lru) == cost);
  assert (map_lru_evict (lru, 0) == 1);
  EXPECT_EMPTY (y);
  map_free (y);
  assert (map_lru_bytes (lru) == 0);
}

static void
test_enomem (struct map_lru *lru)
{
  struct map *m = map_new (lru);

  assert (map_set (m, 0, 100, 0) == 0);

  /* map_set leaves the map unchanged. */
  fault_countdown = 0;
  errno = 0;
  assert (map_set (m, 200, 10, 1) == -1 && errno == ENOMEM);
  EXPECT (m, { 0, 100, 0 });
  fault_countdown = 1;                        /* needs 2: the 2nd fails */
  errno = 0;
  assert (map_set (m, 40, 10, 1) == -1 && errno == ENOMEM);
  EXPECT (m, { 0, 100, 0 });
  fault_countdown = 0;                        /* needs none */
  assert (map_set (m, 40, 10, 0) == 0);
  EXPECT (m, { 0, 100, 0 });
  fault_countdown = 1;                        /* needs 1 */
  assert (map_set (m, 90, 20, 1) == 0);
  fault_countdown = -1;
  EXPECT (m, { 0, 90, 0 }, { 90, 20, 1 });

  /* map_clear forgets the extent it could not split. */
  fault_countdown = 0;
  assert (map_clear (m, 0, 10) == 0);         /* an edge: no split */
  fault_countdown = 0;
  errno = 0;
  assert (map_clear (m, 40, 10) == -1 && errno == ENOMEM);
  fault_countdown = -1;
  EXPECT (m, { 90, 20, 1 });
  assert (map_lru_bytes (lru) == map_extent_cost ());
  map_free (m);
}

/* Many extents inserted in order: a treap that lost its balance would
 * make this quadratic (and overflow the stack in the recursive walks).
 */
static void
test_scale (struct map_lru *lru)
{
  const uint64_t n = 200000;
  struct map *m = map_new (lru);
  uint64_t i;

  for (i = 0; i < n; i++)
    assert (map_set (m, 16 * i, 8, i & 1) == 0);
  assert (map_count (m) == n);
  for (i = 0; i < n; i++)
    assert (has (m, 16 * i + 3, 16 * i, 8, i & 1));
  assert (map_next_gap (m, 0, 16 * n) == 8);
  for (i = n; i-- > 0; )
    assert (map_set (m, 16 * i + 8, 8, i & 1) == 0);
  assert (map_count (m) == n);                /* alternating types */
  assert (map_next_gap (m, 0, 16 * n) == 16 * n);
  assert (map_set (m, 8, 16 * n - 16, 0) == 0);
  EXPECT (m, { 0, 16 * n - 8, 0 }, { 16 * n - 8, 8, 1 });
  map_clear_overlapping (m, 0, 16 * n);
  for (i = n; i-- > 0; )
    assert (map_set (m, T63 + 16 * i, 8, 1) == 0);
  for (i = 0; i < n; i += 2)
    assert (map_clear (m, T63 + 16 * i + 2, 4) == 0);
  assert (map_count (m) == n + n / 2);
  assert (map_lru_evict (lru, 0) == n + n / 2);
  EXPECT_EMPTY (m);
  map_free (m);
}

/*----------------------------------------------------------------------
 * Main.
 */

static const uint64_t default_seeds[] = {
  1, 0x5eed, 20240229, UINT64_C (0xdeadbeefcafef00d),
};

int
main (int argc, char *argv[])
{
  struct map_lru *lru;
  const uint64_t *seeds = default_seeds;
  size_t nseeds = sizeof default_seeds / sizeof default_seeds[0];
  size_t nops = 40000, i;
  uint64_t one_seed;
  const char *env = getenv ("UNIT_MAP_OPS");
  char seed_list[256] = "";

  if (argc > 2) {
    fprintf (stderr, "usage: %s [SEED]\n", argv[0]);
    exit (EXIT_FAILURE);
  }
  if (argc == 2) {
    one_seed = strtoull (argv[1], NULL, 0);
    seeds = &one_seed;
    nseeds = 1;
  }
  if (env)
    nops = strtoull (env, NULL, 0);

  lru = map_lru_new ();
  assert (lru);
  test_zero_and_one_byte (lru);
  test_ends (lru);
  test_coalescing (lru);
  test_clear (lru);
  test_lru (lru);
  test_enomem (lru);
  test_scale (lru);
  map_lru_free (lru);
  printf ("unit-map: explicit cases ok\n");
  fflush (stdout);

  for (i = 0; i < nseeds; i++) {
    size_t len = strlen (seed_list);

    printf ("unit-map: seed %" PRIu64 " (0x%" PRIx64 ")\n",
            seeds[i], seeds[i]);
    fflush (stdout);
    snprintf (seed_list + len, sizeof seed_list - len, "%s%" PRIu64,
              i ? " " : "", seeds[i]);
    random_phase (seeds[i], 1, true, nops);     /* byte model */
    random_phase (seeds[i] + 1, 1, false, nops); /* 64-bit run model */
    random_phase (seeds[i] + 2, 2, true, nops);  /* two maps, one domain */
    random_phase (seeds[i] + 3, 3, false, nops / 2);
  }

  printf ("unit-map: %" PRIu64 " operations, seeds %s, ok\n",
          total_ops, seed_list);
  return 0;
}
