/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: flights (see flight.h).
 *
 * Design note
 * ===========
 *
 * A flight is one backend extents call, client's or prefetch's, from
 * its start to the store of its answer.  It is on its scope's list
 * (s->flights, unordered, short: at most one per client request in
 * flight plus the prefetch calls) while the call runs, so that a miss
 * inside its window waits for it rather than asking the same bytes
 * again, and prefetch does not fetch them twice.  It is freed when
 * its caller and every waiter have let go (refs).
 *
 * Rule S (writes.c) decides what of an answer may be stored: the
 * flight's watch is registered before the call starts and taken off
 * after its answer has come, and the write log is trimmed only once
 * the answer is stored.
 *
 * Sizes.  The window of a call is at least the request and
 * cacheextents-window, at most the scope's window_cap (what
 * scope_answer_budget () extents cover at the density learned so
 * far), and the extents of all calls in flight together, counted
 * from that density when each call starts ('reserved'), stay below
 * INFLIGHT_CALLS answers' worth: a dense export cannot make nbdkit
 * hold more extents in answers than the bound allows for.  A store
 * for a client evicts as it goes and stores at most two answers'
 * worth, so that one answer cannot wipe out what other scopes know; a
 * store for prefetch never evicts: it stops at the bound, so that
 * reading ahead cannot push out what clients have not used yet.  Both
 * go from the start of the answer, so that the extents a client will
 * ask for next are stored first.
 *
 * Fast start: until an answer has told the export's density, a miss
 * also fetches the window after its own, in the same call (prefetch
 * waits for that answer and hears of it through the calibrated event,
 * cache.h).
 *
 * Costs: a store of k extents is O(k log n) in the map, plus the
 * check of each against what rule S blocks, O(k log w).
 */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "flight.h"
#include "gate.h"
#include "map.h"
#include "scope.h"
#include "stats.h"
#include "writes.h"

/* All answers in flight together may hold this many answers' worth. */
#define INFLIGHT_CALLS 8

/* Extents reserved by the flights in flight (cache_lock). */
static uint64_t inflight_extents;

/* Merge a backend answer into the map, applying rule S and the
 * bounds of the design note.
 */
static void
store_locked (struct scope *s, const struct flight *f,
              const struct nbdkit_extents *answer, bool prefetch)
{
  size_t i, n = nbdkit_extents_count (answer), nblocked;
  size_t most = prefetch ? n : CE_MIN (n, 2 * scope_answer_budget ());
  struct range *blocked;

  /* Out of memory: storing nothing is always right. */
  if (writes_blocked_locked (&f->watch, &blocked, &nblocked) == -1)
    return;
  for (i = 0; i < most; ++i) {
    struct nbdkit_extent e = nbdkit_get_extent (answer, i);

    if (prefetch &&
        scope_bytes_locked () + map_extent_cost () > cache_config.max_size)
      break;
    if (range_overlap (blocked, nblocked, e.offset, e.offset + e.length))
      continue;
    /* Out of memory leaves the map as it was, which stays true. */
    map_set (s->map, e.offset, e.length, e.type);
    if (!prefetch && scope_bytes_locked () > cache_config.max_size)
      scope_evict_locked ();
  }
  free (blocked);
}

/* Learn the export's density from an answer: the next calls are sized
 * to hold about scope_answer_budget () extents.
 */
static void
adapt_window_locked (struct scope *s, uint64_t start,
                     const struct nbdkit_extents *answer)
{
  size_t n = nbdkit_extents_count (answer);
  struct nbdkit_extent last = nbdkit_get_extent (answer, n - 1);
  uint64_t covered = last.offset + last.length - start;

  scope_set_density_locked (s, covered / n);
  if (!s->calibrated) {
    s->calibrated = true;
    cache_events->calibrated_locked (s);
  }
}

static void
flight_unref_locked (struct flight *f)
{
  if (--f->refs == 0)
    free (f);
}

struct flight *
flight_covering_locked (const struct scope *s, uint64_t offset)
{
  struct flight *f;

  for (f = s->flights; f; f = f->next)
    if (f->start <= offset && offset < f->end)
      return f;
  return NULL;
}

void
flight_wait_locked (struct flight *f)
{
  f->refs++;
  while (!f->done)
    pthread_cond_wait (&cache_cond, &cache_lock);
  flight_unref_locked (f);
}

bool
flight_room_full_locked (void)
{
  return inflight_extents >= INFLIGHT_CALLS * scope_answer_budget ();
}

int
flight_fetch_locked (struct scope *s, nbdkit_next *next, struct gate *g,
                     uint64_t start, uint64_t end, bool prefetch,
                     struct nbdkit_extents **answer, int *err)
{
  struct flight *f, **pp;
  struct nbdkit_extents *ext;
  int r = -1;

  f = calloc (1, sizeof *f);
  if (f == NULL) {
    *err = errno;
    nbdkit_error ("cacheextents: calloc: %m");
    if (g) {
      /* The expectation is used up on every path (gate_unexpect may
       * call on_free, which takes cache_lock).
       */
      pthread_mutex_unlock (&cache_lock);
      gate_unexpect (g);
      pthread_mutex_lock (&cache_lock);
    }
    return -1;
  }
  f->start = start;
  f->end = end;
  f->reserved = (end - start) / s->bytes_per_extent + 1;
  f->refs = 1;
  f->next = s->flights;
  s->flights = f;
  writes_watch_locked (&f->watch);
  inflight_extents += f->reserved;

  /* Extents past 'end' are dropped, so one answer stays bounded. */
  ext = nbdkit_extents_new (start, end);
  pthread_mutex_unlock (&cache_lock);
  if (ext == NULL) {
    *err = errno;
    if (g)
      gate_unexpect (g);
  }
  else {
    if (g)
      gate_enter_expected (g);
    r = next->extents (next, end - start, start, 0, ext, err);
    if (g)
      gate_leave (g);
    if (r == 0 && nbdkit_extents_count (ext) == 0) {
      nbdkit_error ("cacheextents: the backend returned no extents "
                    "at offset %" PRIu64, start);
      *err = EIO;
      r = -1;
    }
  }
  pthread_mutex_lock (&cache_lock);

  for (pp = &s->flights; *pp != f; pp = &(*pp)->next)
    ;
  *pp = f->next;
  writes_unwatch_locked (&f->watch);
  f->done = true;
  inflight_extents -= f->reserved;
  pthread_cond_broadcast (&cache_cond);
  if (r == 0) {
    store_locked (s, f, ext, prefetch);
    adapt_window_locked (s, start, ext);
  }
  else
    stats_count (NULL, STATS_BACKEND_ERRORS, 1);
  writes_trim_locked ();
  flight_unref_locked (f);

  if (r == 0 && answer)
    *answer = ext;
  else if (ext)
    nbdkit_extents_free (ext);
  return r;
}

uint64_t
flight_window_end_locked (const struct scope *s, uint32_t count,
                          uint64_t offset)
{
  uint64_t len = CE_MAX ((uint64_t) count, cache_config.window);
  uint64_t room = INFLIGHT_CALLS * scope_answer_budget ();

  len = CE_MIN (len, s->window_cap);
  /* Fast start (see the design note).  Two windows sized for the
   * densest disk stay well inside the room.
   */
  if (!s->calibrated)
    len = CE_MIN (2 * len, (uint64_t) CACHE_MAX_COUNT);
  /* What the answers in flight leave room for, but always some. */
  room = room > inflight_extents ? room - inflight_extents : 0;
  if (room < len / s->bytes_per_extent)
    len = CE_MIN (len, CE_MAX (CE_ROUND_DOWN (room * s->bytes_per_extent,
                                              cache_config.granularity),
                               cache_config.granularity));
  len = CE_MIN (len, s->size - offset);
  return offset + len;
}

/* Skips what a flight is fetching, and what a write or flush in flight
 * covers: rule S would drop that part of any answer, so fetching it
 * now would only be repeated.  Prefetch moves on past it; a client
 * that asks there later misses and fetches it itself.
 */
uint64_t
flight_next_unknown_locked (struct scope *s, uint64_t offset,
                            uint64_t limit, uint64_t *write_start)
{
  const struct flight *f;
  struct range w = { 0, 0 };
  bool ahead = false;           /* w is the next write after offset */

  limit = CE_MIN (limit, s->size);
  while (offset < limit) {
    offset = map_next_gap (s->map, offset, limit);
    if (offset >= limit)
      break;
    if ((f = flight_covering_locked (s, offset)) != NULL) {
      offset = f->end;
      continue;
    }
    ahead = writes_next_locked (offset, &w);
    if (!ahead || w.offset > offset)
      break;
    offset = w.end;             /* covered by a write: skip it */
    ahead = false;
  }
  *write_start = ahead ? w.offset : UINT64_MAX;
  return CE_MIN (offset, limit);
}

bool
flight_unknown_at_locked (const struct scope *s, uint64_t offset)
{
  struct range w;

  return offset < s->size &&
    map_next_gap (s->map, offset, offset + 1) == offset &&
    flight_covering_locked (s, offset) == NULL &&
    !(writes_next_locked (offset, &w) && w.offset <= offset);
}
