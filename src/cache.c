/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: the .extents path (see cache.h).
 *
 * Design note
 * ===========
 *
 * A request is looked up in its scope's map under cache_lock, taken
 * once per request: the request event (prefetch moves its horizon),
 * then the lookup.
 *
 * Hit: the offset is known.  The answer is read from the map, extent
 * by extent, and needs no backend call.  What the map holds is true
 * now (the design note of writes.c), so a hit never shows the state
 * from before a write or flush that had returned.
 *
 * Wait: the offset is unknown but a flight's window holds it.  The
 * request waits for that call, at most once, then looks the map up
 * again: the call may have started before a write the client knows
 * of, and rule S has filtered what was stored.  If the map still does
 * not know the offset, it misses.
 *
 * Miss: the client makes a call of its own (flight_fetch_locked), and
 * may be given that call's raw answer, because the backend produced
 * it after every write the client could know of.  Only the part that
 * the request covers is copied; the rest of the window is in the map.
 *
 * Gates (gate.h): a request that may call the backend says so before
 * it waits for a flight, so that prefetch holds off meanwhile and its
 * miss waits for one prefetch call at most; a hit gives that back.
 *
 * Costs: a hit is one map lookup per extent returned, O(log n).
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

NBDKIT_DLL_PUBLIC int cacheextents_debug_cache = 0;

struct cache_config cache_config;

/* Protects every scope and map, the LRU domain, flights, the write
 * log, the write and flush lists, the dirty sets and prefetch's state
 * (see cache.h).  Never held across a backend call.
 */
pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Broadcast when a flight finishes (waiters look again, and prefetch
 * workers waiting for room in flight), when a write or flush ends and
 * when a prefetch call ends (prefetch_disown waits for those).  Used
 * with cache_lock.
 */
pthread_cond_t cache_cond = PTHREAD_COND_INITIALIZER;

/* Nobody listens until cache_init. */
static void
no_request (struct scope *s, const struct cache_client *c,
            uint32_t count, uint64_t offset)
{
}

static void
no_scope_event (struct scope *s)
{
}

static const struct cache_events no_events = {
  .request_locked = no_request,
  .calibrated_locked = no_scope_event,
  .reset_locked = no_scope_event,
};

/* Set once by cache_init, before any connection. */
const struct cache_events *cache_events = &no_events;

int
cache_init (const struct cache_events *events)
{
  if (scope_init () == -1)
    return -1;
  cache_events = events;
  return 0;
}

void
cache_free (void)
{
  scope_free_all ();
  writes_free ();
}

/* Answer [offset, want_end) from the map, starting with the known
 * extent e containing offset.  Every extent is clipped to the request:
 * a merged extent can be longer than nbdkit's encoder accepts for a
 * count near 4 GiB (nbdkit before 1.43.7 aborts on one that reaches
 * exactly 2^32-1 bytes past the offset and beyond).  Returns bytes
 * answered, or -1 if nbdkit_add_extent failed.
 */
static int64_t
serve_locked (struct scope *s, struct map_extent e,
              uint64_t offset, uint64_t want_end, uint32_t flags,
              struct nbdkit_extents *extents)
{
  uint64_t pos = offset;

  for (;;) {
    uint64_t e_end = CE_MIN (e.offset + e.length, want_end);

    if (nbdkit_add_extent (extents, e.offset, e_end - e.offset,
                           e.type) == -1)
      return -1;
    pos = e_end;
    if ((flags & NBDKIT_FLAG_REQ_ONE) || pos >= want_end ||
        !map_lookup (s->map, pos, &e))
      break;
  }
  return pos - offset;
}

/* Copy the part of a miss's own answer that the request covers,
 * clipped as in serve_locked.
 */
static int
serve_answer (const struct nbdkit_extents *answer, uint64_t offset,
              uint32_t count, uint32_t flags, struct nbdkit_extents *extents,
              int *err)
{
  size_t i, n = nbdkit_extents_count (answer);

  for (i = 0; i < n; ++i) {
    struct nbdkit_extent x = nbdkit_get_extent (answer, i);
    uint64_t x_end = CE_MIN (x.offset + x.length, offset + count);

    if (nbdkit_add_extent (extents, x.offset, x_end - x.offset,
                           x.type) == -1) {
      *err = errno;
      return -1;
    }
    if ((flags & NBDKIT_FLAG_REQ_ONE) || x_end >= offset + count)
      break;
  }
  return 0;
}

int
cache_extents (struct scope *s, const struct cache_client *c,
               uint32_t count, uint64_t offset, uint32_t flags,
               struct nbdkit_extents *extents, int *err)
{
  struct gate *g = c->gate;
  struct nbdkit_extents *answer = NULL;
  struct map_extent e;
  struct flight *f;
  bool waited = false, expected = false;
  uint64_t end;
  int64_t served;
  int r;

  stats_count (c->stats, STATS_REQUESTS, 1);
  pthread_mutex_lock (&cache_lock);
  cache_events->request_locked (s, c, count, offset);
  for (;;) {
    if (map_lookup (s->map, offset, &e)) {
      served = serve_locked (s, e, offset, offset + count, flags, extents);
      pthread_mutex_unlock (&cache_lock);
      if (expected)
        gate_unexpect (g);
      if (served == -1) {
        *err = errno;
        return -1;
      }
      if (cacheextents_debug_cache)
        nbdkit_debug ("cacheextents: hit offset=%" PRIu64 " count=%" PRIu32
                      " answered=%" PRIi64 "%s", offset, count, served,
                      waited ? " after waiting" : "");
      stats_count (c->stats, STATS_HITS, 1);
      stats_count (c->stats, STATS_BYTES_CACHED, served);
      return 0;
    }
    /* Wait at most once for a call already fetching this offset. */
    if (waited || (f = flight_covering_locked (s, offset)) == NULL)
      break;
    /* If the flight's answer does not cover offset, this request
     * calls next, through the gate when there is one: prefetch holds
     * off from now, so that the call waits for this flight only.
     */
    if (g && !expected) {
      gate_expect (g);
      expected = true;
    }
    flight_wait_locked (f);
    waited = true;
    stats_count (c->stats, STATS_WAITS, 1);
  }

  end = flight_window_end_locked (s, count, offset);
  if (cacheextents_debug_cache)
    nbdkit_debug ("cacheextents: miss offset=%" PRIu64 " count=%" PRIu32
                  " asking backend for %" PRIu64 " bytes",
                  offset, count, end - offset);
  stats_count (c->stats, STATS_MISSES, 1);
  stats_count (c->stats, STATS_BACKEND_CALLS, 1);
  if (g && !expected)
    gate_expect (g);
  r = flight_fetch_locked (s, c->next, g, offset, end, false, &answer, err);
  pthread_mutex_unlock (&cache_lock);
  if (r == -1)
    return -1;

  r = serve_answer (answer, offset, count, flags, extents, err);
  nbdkit_extents_free (answer);
  return r;
}
