/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: libFuzzer target for the extent map (src/map.c).
 *
 * The input is decoded into a sequence of map operations on two maps
 * sharing one LRU domain.  Next to each map runs a byte model: one
 * type per byte (-1 for unknown) over a small universe of U bytes, and
 * per byte the time its run was last used.  After every operation the
 * map is walked with map_foreach, its invariants are checked (sorted,
 * disjoint, non-empty, coalesced, no wrap) and it must equal the
 * model's runs exactly; any difference aborts.
 *
 * The first input byte places the universe at offset 0, just below
 * 2^63 or at the very top of the 64-bit space.  At the top, lengths
 * may run past UINT64_MAX: the map clamps them, and the model knows
 * that the last byte (UINT64_MAX itself) can never be known.
 *
 * Input layout, repeated until the input ends:
 *   op      1 byte: bits 0-2 operation, bit 3 map, bits 4-7 argument
 *   offset  2 bytes, little endian, taken modulo U + 1
 *   length  2 bytes: bit 15 set -> small (bits 0-5), else modulo U + 1;
 *           in the top universe bit 14 set -> huge (UINT64_MAX - bits 0-7)
 *
 * map.c asks map_fault_alloc before each allocation; the strong
 * definition here fails allocations on request, to drive the ENOMEM
 * paths, whose outcome the model predicts.
 */

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

#define U 256
#define NMAPS 2
#define MAX_OPS 4096

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf (stderr, "fuzz-map: %s:%d: divergence: %s\n",             \
               __FILE__, __LINE__, #cond);                              \
      abort ();                                                         \
    }                                                                   \
  } while (0)

static int fault_countdown = -1;

bool map_fault_alloc (void);

bool
map_fault_alloc (void)
{
  if (fault_countdown < 0)
    return false;
  return fault_countdown-- == 0;
}

struct model {
  struct map *map;
  int8_t type[U];               /* -1 = unknown */
  uint64_t stamp[U];            /* last use of the run holding the byte */
};

struct run {
  uint32_t start, end;          /* byte indexes in the universe */
  uint32_t type;
  uint64_t stamp;
};

static uint64_t base;           /* offset of universe byte 0 */
static uint64_t clock_now;
static struct run runs[NMAPS][U];
static size_t nruns[NMAPS];
static struct map_extent ext[U + 1];
static size_t next;

/* The model's runs of known bytes. */
static size_t
model_runs (const struct model *m, struct run *out)
{
  size_t n = 0, i = 0;

  while (i < U) {
    size_t j = i + 1;

    if (m->type[i] < 0) {
      i++;
      continue;
    }
    while (j < U && m->type[j] == m->type[i]) {
      CHECK (m->stamp[j] == m->stamp[i]);     /* the model itself */
      j++;
    }
    out[n++] = (struct run) { i, j, m->type[i], m->stamp[i] };
    i = j;
  }
  return n;
}

static void
paint (struct model *m, uint32_t l, uint32_t r, int type)
{
  for (; l < r; l++)
    m->type[l] = type;
}

/* Restamp the run holding known byte x. */
static void
touch (struct model *m, uint32_t x)
{
  uint32_t l = x, r = x + 1;

  clock_now++;
  while (l > 0 && m->type[l - 1] == m->type[x])
    l--;
  while (r < U && m->type[r] == m->type[x])
    r++;
  for (; l < r; l++)
    m->stamp[l] = clock_now;
}

static void
model_clear_overlapping (struct model *m, uint32_t l, uint32_t r)
{
  uint32_t a = l, b = r;

  if (l >= r)
    return;
  if (m->type[l] >= 0)
    while (a > 0 && m->type[a - 1] == m->type[l])
      a--;
  if (m->type[r - 1] >= 0)
    while (b < U && m->type[b] == m->type[r - 1])
      b++;
  paint (m, a, b, -1);
}

/* Nodes map_set (set) or map_clear (!set) must allocate; see map.c. */
static int
needs (const struct model *m, uint32_t l, uint32_t r, bool set, int type)
{
  uint32_t a = l, b = l;

  if (m->type[l] < 0)
    return set ? 1 : 0;
  while (a > 0 && m->type[a - 1] == m->type[l])
    a--;
  while (b < U && m->type[b] == m->type[l])
    b++;
  if (set && b >= r && m->type[l] == type)
    return 0;
  if (a < l && b > r)
    return set ? 2 : 1;
  return set ? 1 : 0;
}

static int
collect (const struct map_extent *e, void *opaque)
{
  (void) opaque;
  CHECK (next < U);
  ext[next++] = *e;
  return 0;
}

/* Compare one map with its model, checking invariants on the way. */
static void
compare (struct model *m, int i)
{
  size_t k;

  next = 0;
  CHECK (map_foreach (m->map, collect, NULL) == 0);
  CHECK (next == map_count (m->map));
  for (k = 0; k < next; k++) {
    CHECK (ext[k].length > 0);
    CHECK (ext[k].offset <= UINT64_MAX - ext[k].length);
    if (k > 0) {
      uint64_t pend = ext[k - 1].offset + ext[k - 1].length;

      CHECK (pend <= ext[k].offset);
      CHECK (pend != ext[k].offset || ext[k - 1].type != ext[k].type);
    }
  }
  nruns[i] = model_runs (m, runs[i]);
  CHECK (nruns[i] == next);
  for (k = 0; k < next; k++) {
    CHECK (ext[k].offset == base + runs[i][k].start);
    CHECK (ext[k].length == runs[i][k].end - runs[i][k].start);
    CHECK (ext[k].type == runs[i][k].type);
  }
}

/* Eviction: the survivors are a subset of the extents before, and the
 * evicted ones are the oldest.  The models then forget them.
 */
static void
evict (struct map_lru *lru, struct model *ms, size_t limit)
{
  static struct run before[NMAPS][U];
  static bool kept[NMAPS][U];
  size_t nb[NMAPS], total = 0, survivors = 0, removed = 0, n, i, j, k;
  uint64_t max_removed = 0, min_kept = UINT64_MAX;

  for (i = 0; i < NMAPS; i++) {
    nb[i] = model_runs (&ms[i], before[i]);
    total += nb[i];
    memset (kept[i], 0, sizeof kept[i]);
  }
  n = map_lru_evict (lru, limit);
  CHECK (map_lru_bytes (lru) <= limit);
  for (i = 0; i < NMAPS; i++) {
    next = 0;
    CHECK (map_foreach (ms[i].map, collect, NULL) == 0);
    for (j = 0, k = 0; j < next; j++) {
      while (k < nb[i] && base + before[i][k].start < ext[j].offset)
        k++;
      CHECK (k < nb[i]);
      CHECK (base + before[i][k].start == ext[j].offset);
      CHECK (before[i][k].end - before[i][k].start == ext[j].length);
      kept[i][k] = true;
    }
    survivors += next;
    for (k = 0; k < nb[i]; k++) {
      if (kept[i][k])
        min_kept = before[i][k].stamp < min_kept ?
          before[i][k].stamp : min_kept;
      else {
        removed++;
        max_removed = before[i][k].stamp > max_removed ?
          before[i][k].stamp : max_removed;
        paint (&ms[i], before[i][k].start, before[i][k].end, -1);
      }
    }
  }
  CHECK (n == removed);
  CHECK (survivors + removed == total);
  k = limit / map_extent_cost ();
  CHECK (survivors == (total < k ? total : k));
  CHECK (removed == 0 || survivors == 0 || max_removed <= min_kept);
}

/* Input cursor: reads past the end give zeroes. */
struct cursor {
  const uint8_t *p;
  size_t n;
};

static unsigned
get8 (struct cursor *c)
{
  if (c->n == 0)
    return 0;
  c->n--;
  return *c->p++;
}

static unsigned
get16 (struct cursor *c)
{
  unsigned lo = get8 (c);

  return lo | get8 (c) << 8;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct cursor c = { data, size };
  struct map_lru *lru;
  static struct model ms[NMAPS];
  const bool top = size > 0 && data[0] % 3 == 2;
  /* The map can know bytes [0, known_end) of the universe. */
  const uint32_t known_end = top ? U - 1 : U;
  size_t i, ops = 0;

  switch (get8 (&c) % 3) {
  case 0: base = 0; break;
  case 1: base = (UINT64_C (1) << 63) - U / 2; break;
  default: base = UINT64_MAX - (U - 1);
  }
  clock_now = 0;
  lru = map_lru_new ();
  CHECK (lru);
  for (i = 0; i < NMAPS; i++) {
    ms[i].map = map_new (lru);
    CHECK (ms[i].map);
    memset (ms[i].type, -1, sizeof ms[i].type);
    memset (ms[i].stamp, 0, sizeof ms[i].stamp);
  }

  while (c.n > 0 && ops++ < MAX_OPS) {
    unsigned op = get8 (&c);
    struct model *m = &ms[(op >> 3) & 1];
    unsigned arg = op >> 4;
    /* At the top, universe index U would be offset 2^64. */
    uint32_t l = get16 (&c) % (top ? U : U + 1);
    unsigned rawlen = get16 (&c);
    uint64_t len, end;
    uint32_t r;
    int type = arg & 3, ret;

    if (rawlen & 0x8000)
      len = rawlen & 0x3f;
    else if (top && (rawlen & 0x4000))
      len = UINT64_MAX - (rawlen & 0xff);
    else
      len = rawlen % (U + 1);
    if (!top && len > U - l)
      len = U - l;
    /* Where the map will clamp the end, in universe indexes. */
    end = len > UINT64_MAX - (base + l) ? UINT64_MAX : base + l + len;
    r = end - base;
    CHECK (l <= r && r <= known_end);

    switch (op & 7) {
    case 0: case 1:                     /* set */
      CHECK (map_set (m->map, base + l, len, type) == 0);
      if (l < r) {
        paint (m, l, r, type);
        touch (m, l);
      }
      break;

    case 2:                             /* clear */
      CHECK (map_clear (m->map, base + l, len) == 0);
      paint (m, l, r, -1);
      break;

    case 3:                             /* clear_overlapping */
      map_clear_overlapping (m->map, base + l, len);
      model_clear_overlapping (m, l, r);
      break;

    case 4: {                           /* lookup */
      struct map_extent e = { 7, 7, 7 };
      uint64_t x = arg & 8 ? base + l - 1 - (arg & 7) : base + l;
      bool inside = x - base < U;
      bool found = map_lookup (m->map, x, &e);

      if (!inside || m->type[x - base] < 0) {
        CHECK (!found);
        CHECK (e.offset == 7 && e.length == 7 && e.type == 7);
      }
      else {
        uint32_t a = x - base, b = a + 1;

        CHECK (found);
        while (a > 0 && m->type[a - 1] == m->type[x - base])
          a--;
        while (b < U && m->type[b] == m->type[x - base])
          b++;
        CHECK (e.offset == base + a && e.length == b - a);
        CHECK (e.type == (uint32_t) m->type[x - base]);
        touch (m, x - base);
      }
      break;
    }

    case 5: {                           /* next_gap, limit = end */
      uint64_t limit = arg & 8 ? base + l - (arg & 7) : end;
      uint64_t want = base + l, got;

      if (want >= limit)
        want = limit;
      else {
        while (want < limit && want - base < U && m->type[want - base] >= 0)
          want++;
      }
      got = map_next_gap (m->map, base + l, limit);
      CHECK (got == want);
      break;
    }

    case 6: {                           /* evict */
      size_t count = map_lru_bytes (lru) / map_extent_cost ();
      size_t limit;

      if (arg & 8)
        limit = arg * 7 % (map_lru_bytes (lru) + 1);
      else
        limit = (count > arg ? count - arg : 0) * map_extent_cost ();
      evict (lru, ms, limit);
      break;
    }

    default: {                          /* set or clear, failing */
      int need = l < r ? needs (m, l, r, !(arg & 8), type) : 0;
      int cd = arg >> 2 & 1;            /* allocations that succeed */

      fault_countdown = cd;
      errno = 0;
      if (arg & 8) {
        ret = map_clear (m->map, base + l, len);
        if (need > cd) {
          /* The extent it could not split is forgotten in full. */
          CHECK (ret == -1 && errno == ENOMEM);
          model_clear_overlapping (m, l, r);
        }
        else {
          CHECK (ret == 0);
          paint (m, l, r, -1);
        }
      }
      else {
        ret = map_set (m->map, base + l, len, type);
        if (need > cd)                  /* unchanged, LRU included */
          CHECK (ret == -1 && errno == ENOMEM);
        else {
          CHECK (ret == 0);
          if (l < r) {
            paint (m, l, r, type);
            touch (m, l);
          }
        }
      }
      fault_countdown = -1;
    }
    }

    /* Only eviction reaches into the other map. */
    for (i = 0; i < NMAPS; i++)
      if (&ms[i] == m || (op & 7) == 6)
        compare (&ms[i], i);
    CHECK (map_lru_bytes (lru) ==
           (map_count (ms[0].map) + map_count (ms[1].map)) *
           map_extent_cost ());
  }

  for (i = 0; i < NMAPS; i++)
    map_free (ms[i].map);
  CHECK (map_lru_bytes (lru) == 0);
  map_lru_free (lru);
  return 0;
}
