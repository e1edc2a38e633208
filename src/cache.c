/* cacheextents: the cache proper.
 *
 * Design note
 * ===========
 *
 * What a map entry means.  An extent in a scope's map is a statement
 * "the backend would answer this type for these bytes right now".  It
 * is kept true by two rules:
 *
 * (W) Every write (pwrite, trim, zero) forgets, in every scope, each
 *     cached extent that overlaps the written range widened to
 *     cacheextents-granularity, both when the write starts and again
 *     when it has returned from the backend, before the reply goes to
 *     the client.  A backend allocates in units of its own (pages,
 *     clusters, filesystem blocks): a one-byte write can turn a whole
 *     unit from hole into data, and a cached extent may start or end
 *     inside such a unit (a miss asks from the client's offset and
 *     the answer ends where the window ends).  Widening to the
 *     granularity covers every unit touched when the unit size
 *     divides it; forgetting whole extents, not just the bytes, keeps
 *     the map free of pieces of units.  Scopes of other exports are
 *     included because a plugin may serve the same data under several
 *     names.
 *
 * (S) A backend answer is stored only for those of its extents that
 *     no write overlapped while the call was in flight.  Writes carry a
 *     generation number taken when they complete; a call remembers the
 *     generation at its start.  An answer extent is dropped if it
 *     overlaps a write still in flight, or a write that completed with
 *     a later generation than the call's start.  Completed writes are
 *     logged only as long as some call that started before them is
 *     still in flight.
 *
 * Together: an extent present in the map overlaps no write in flight,
 * and every completed write that overlaps it completed before the
 * call that learned it started.  So a client that finds it in the map
 * after a write returned never sees the state from before that write.
 *
 * A client whose own backend call starts after its request arrived
 * may be given that call's raw answer, because the backend produced it
 * after every write the client could know of.  A client that waited
 * for another request's call (single flight) instead looks the map up
 * again once that call has finished: the call may have started before
 * a write the client knows of, and rule (S) has filtered what was
 * stored.  If the map still does not know the offset, the client makes
 * its own call.
 *
 * Costs: a hit is one map lookup per extent returned, O(log n).  A
 * miss stores k extents in O(k log n) and checks each against the
 * writes in flight and the write log, which hold only writes that
 * overlap calls in flight and so stay short.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "map.h"
#include "stats.h"

NBDKIT_DLL_PUBLIC int cacheextents_debug_cache = 0;

struct cache_config cache_config;

/* Protects every scope and map, the LRU domain, flights and the write
 * log and write list below.  Never held across a backend call.
 */
pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Broadcast when a flight finishes (waiters look again) and when
 * prefetch workers should look for work or stop.  Used with
 * cache_lock.
 */
pthread_cond_t cache_cond = PTHREAD_COND_INITIALIZER;

/* A backend extents call in progress. */
struct flight {
  struct flight *next;          /* in scope->flights while not done */
  uint64_t start, end;          /* the window asked for */
  uint64_t start_gen;           /* write_gen when the call started */
  bool done;
  bool poisoned;                /* store nothing from this call */
  unsigned refs;                /* the caller plus waiters */
};

struct logged_write {
  uint64_t offset, end;
  uint64_t gen;
};
CE_VECTOR (write_log, struct logged_write)

static struct map_lru *lru;
static struct scope *scopes;
static struct cache_write *writes_in_flight;
static struct write_log completed;
static uint64_t write_gen;

int
cache_init (void)
{
  lru = map_lru_new ();
  if (lru == NULL) {
    nbdkit_error ("cacheextents: map_lru_new: %m");
    return -1;
  }
  return 0;
}

static void
scope_free (struct scope *s)
{
  map_free (s->map);
  free (s->exportname);
  free (s);
}

void
cache_free (void)
{
  while (scopes) {
    struct scope *s = scopes;
    scopes = s->next;
    scope_free (s);
  }
  write_log_reset (&completed);
  if (lru)
    map_lru_free (lru);
  lru = NULL;
}

uint64_t
cache_bytes_locked (void)
{
  return map_lru_bytes (lru);
}

/* Scopes. */

static struct scope *
scope_new_locked (const char *exportname, int is_tls, bool shared,
                  uint64_t size)
{
  struct scope *s = calloc (1, sizeof *s);

  if (s == NULL || (s->exportname = strdup (exportname)) == NULL ||
      (s->map = map_new (lru)) == NULL) {
    nbdkit_error ("cacheextents: allocating a scope: %m");
    if (s)
      free (s->exportname);
    free (s);
    return NULL;
  }
  s->is_tls = is_tls;
  s->shared = shared;
  s->window_cap = CACHE_MAX_COUNT;
  s->size = size;
  s->refs = 1;
  s->next = scopes;
  scopes = s;
  return s;
}

struct scope *
cache_scope_attach (const char *exportname, int is_tls, int multi_conn,
                    uint64_t size)
{
  bool shared = cache_config.scope == SCOPE_EXPORT ||
    (cache_config.scope == SCOPE_AUTO && multi_conn == 1);
  struct scope *s;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  for (s = scopes; shared && s; s = s->next) {
    if (!s->shared || s->is_tls != is_tls ||
        strcmp (s->exportname, exportname) != 0)
      continue;
    if (s->size != size) {
      if (s->refs > 0)
        break;                  /* in use with another size: go private */
      /* The export changed size while nobody was connected: what we
       * knew of it may be wrong now.
       */
      struct map *fresh = map_new (lru);

      if (fresh == NULL) {
        nbdkit_error ("cacheextents: map_new: %m");
        return NULL;
      }
      nbdkit_debug ("cacheextents: export \"%s\" changed size, "
                    "dropping its map", exportname);
      map_free (s->map);
      s->map = fresh;
      s->size = size;
      s->window_cap = CACHE_MAX_COUNT;
      s->calibrated = false;
    }
    s->refs++;
    return s;
  }
  return scope_new_locked (exportname, is_tls, shared && s == NULL, size);
}

void
cache_scope_detach (struct scope *s)
{
  struct scope **pp;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  if (--s->refs > 0 || s->shared)
    return;
  for (pp = &scopes; *pp != s; pp = &(*pp)->next)
    ;
  *pp = s->next;
  scope_free (s);
}

/* Writes. */

static void
forget_everywhere_locked (uint64_t offset, uint64_t end)
{
  struct scope *s;

  for (s = scopes; s; s = s->next)
    map_clear_overlapping (s->map, offset, end - offset);
}

void
cache_write_begin (struct cache_write *w, uint64_t offset, uint64_t count)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  w->offset = CE_ROUND_DOWN (offset, cache_config.granularity);
  w->end = CE_ROUND_UP (offset + count, cache_config.granularity);
  w->prev = NULL;
  w->next = writes_in_flight;
  if (w->next)
    w->next->prev = w;
  writes_in_flight = w;
  forget_everywhere_locked (w->offset, w->end);
}

/* Drop log entries that no call in flight can be affected by. */
static void
trim_log_locked (void)
{
  uint64_t oldest = UINT64_MAX;
  struct scope *s;
  struct flight *f;
  size_t i, j;

  for (s = scopes; s; s = s->next)
    for (f = s->flights; f; f = f->next)
      oldest = CE_MIN (oldest, f->start_gen);
  for (i = j = 0; i < completed.len; ++i)
    if (completed.ptr[i].gen > oldest)
      completed.ptr[j++] = completed.ptr[i];
  completed.len = j;
}

/* Out of memory for the write log: make every call in flight store
 * nothing, which is always safe.
 */
static void
poison_flights_locked (void)
{
  struct scope *s;
  struct flight *f;

  for (s = scopes; s; s = s->next)
    for (f = s->flights; f; f = f->next)
      f->poisoned = true;
}

void
cache_write_end (struct cache_write *w)
{
  struct logged_write lw = { .offset = w->offset, .end = w->end };
  CE_LOCK_FOR_SCOPE (&cache_lock);

  if (w->prev)
    w->prev->next = w->next;
  else
    writes_in_flight = w->next;
  if (w->next)
    w->next->prev = w->prev;

  lw.gen = ++write_gen;
  forget_everywhere_locked (w->offset, w->end);
  if (write_log_append (&completed, lw) == -1)
    poison_flights_locked ();
  trim_log_locked ();
  stats_count (NULL, STATS_INVALIDATIONS, 1);
  /* Prefetch workers may refill what was forgotten. */
  pthread_cond_broadcast (&cache_cond);
}

/* Flights and stores. */

/* Does [offset, end) overlap a write in flight, or one that completed
 * after generation 'gen'?
 */
static bool
overlaps_write_since_locked (uint64_t gen, uint64_t offset, uint64_t end)
{
  const struct cache_write *w;
  size_t i;

  for (w = writes_in_flight; w; w = w->next)
    if (w->offset < end && offset < w->end)
      return true;
  for (i = 0; i < completed.len; ++i)
    if (completed.ptr[i].gen > gen &&
        completed.ptr[i].offset < end && offset < completed.ptr[i].end)
      return true;
  return false;
}

/* Merge a backend answer into the map, applying rule (S).
 *
 * For a client the answer is stored from its end backwards, so that
 * the extents the client will ask for next are the most recently used
 * and the last to be evicted if the answer alone exceeds the bound.
 * Prefetch never evicts: it stores from the start and stops at the
 * bound, so that reading ahead cannot push out what clients have not
 * used yet.
 */
static void
store_locked (struct scope *s, const struct flight *f,
              const struct nbdkit_extents *answer, bool prefetch)
{
  size_t i, n = nbdkit_extents_count (answer);
  size_t evicted = 0;

  if (f->poisoned)
    return;
  for (i = 0; i < n; ++i) {
    struct nbdkit_extent e = nbdkit_get_extent (answer, prefetch ? i : n-1-i);

    if (prefetch &&
        map_lru_bytes (lru) + map_extent_cost () > cache_config.max_size)
      break;
    if (overlaps_write_since_locked (f->start_gen, e.offset,
                                     e.offset + e.length))
      continue;
    /* Out of memory leaves the map as it was, which stays true. */
    map_set (s->map, e.offset, e.length, e.type);
    /* Evict as we go, so the map never exceeds its bound even while
     * a large answer is merged.
     */
    if (!prefetch && map_lru_bytes (lru) > cache_config.max_size)
      evicted += map_lru_evict (lru, cache_config.max_size);
  }
  if (evicted)
    stats_count (NULL, STATS_EVICTIONS, evicted);
}

/* Bound the memory of one answer: nbdkit holds every extent of an
 * answer until the call returns, so on a densely fragmented disk a
 * 4 GiB window could hold millions.  Aim for at most 1/16 of the
 * map's bound per answer: shrink the calls when an answer had more
 * extents than that, and grow them back (doubling) when answers are
 * sparse.  Until the first answer has come back prefetch does not
 * start (see prefetch.c).
 */
static void
adapt_window_locked (struct scope *s, uint64_t start,
                     const struct nbdkit_extents *answer)
{
  size_t n = nbdkit_extents_count (answer);
  struct nbdkit_extent last = nbdkit_get_extent (answer, n - 1);
  uint64_t covered = last.offset + last.length - start;
  uint64_t budget = CE_MAX (UINT64_C (256),
                            cache_config.max_size / map_extent_cost () / 16);

  s->calibrated = true;
  if (n > budget) {
    uint64_t len = covered / n * budget;

    len = CE_ROUND_DOWN (len, cache_config.granularity);
    s->window_cap = CE_MAX (len, cache_config.granularity);
  }
  else if (n < budget / 4)
    s->window_cap = CE_MIN (s->window_cap * 2, (uint64_t) CACHE_MAX_COUNT);
}

static void
flight_unref_locked (struct flight *f)
{
  if (--f->refs == 0)
    free (f);
}

static struct flight *
flight_covering_locked (const struct scope *s, uint64_t offset)
{
  struct flight *f;

  for (f = s->flights; f; f = f->next)
    if (f->start <= offset && offset < f->end)
      return f;
  return NULL;
}

int
cache_fetch_locked (struct scope *s, nbdkit_next *next,
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
    return -1;
  }
  f->start = start;
  f->end = end;
  f->start_gen = write_gen;
  f->refs = 1;
  f->next = s->flights;
  s->flights = f;

  /* Extents past 'end' are dropped, so one answer stays bounded. */
  ext = nbdkit_extents_new (start, end);
  pthread_mutex_unlock (&cache_lock);
  if (ext == NULL)
    *err = errno;
  else {
    r = next->extents (next, end - start, start, 0, ext, err);
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
  f->done = true;
  pthread_cond_broadcast (&cache_cond);
  if (r == 0) {
    store_locked (s, f, ext, prefetch);
    adapt_window_locked (s, start, ext);
  }
  else
    stats_count (NULL, STATS_BACKEND_ERRORS, 1);
  trim_log_locked ();
  flight_unref_locked (f);

  if (r == 0 && answer)
    *answer = ext;
  else if (ext)
    nbdkit_extents_free (ext);
  return r;
}

uint64_t
cache_next_unknown_locked (struct scope *s, uint64_t offset)
{
  const struct flight *f;

  while (offset < s->size) {
    offset = map_next_gap (s->map, offset, s->size);
    if (offset >= s->size || (f = flight_covering_locked (s, offset)) == NULL)
      break;
    offset = f->end;
  }
  return CE_MIN (offset, s->size);
}

/* The client path. */

/* Answer from the map, starting with the known extent *e containing
 * offset.  Returns bytes answered, or -1 if nbdkit_add_extent failed.
 */
static int64_t
serve_locked (struct scope *s, struct map_extent e,
              uint64_t offset, uint64_t want_end, uint32_t flags,
              struct nbdkit_extents *extents)
{
  uint64_t pos = offset;

  for (;;) {
    uint64_t e_end = e.offset + e.length;

    if (nbdkit_add_extent (extents, e.offset, e.length, e.type) == -1)
      return -1;
    pos = e_end;
    if ((flags & NBDKIT_FLAG_REQ_ONE) || pos >= want_end ||
        !map_lookup (s->map, pos, &e))
      break;
  }
  return CE_MIN (pos, want_end) - offset;
}

uint64_t
cache_window_end_locked (const struct scope *s, uint32_t count,
                         uint64_t offset)
{
  uint64_t len = CE_MAX ((uint64_t) count, cache_config.window);

  len = CE_MIN (len, s->window_cap);
  len = CE_MIN (len, s->size - offset);
  return offset + len;
}

int
cache_extents (struct scope *s, nbdkit_next *next,
               uint32_t count, uint64_t offset, uint32_t flags,
               struct nbdkit_extents *extents,
               struct stats *conn_stats, int *err)
{
  struct nbdkit_extents *answer = NULL;
  struct map_extent e;
  struct flight *f;
  bool waited = false;
  uint64_t end;
  int64_t served;
  size_t i, n;
  int r;

  stats_count (conn_stats, STATS_REQUESTS, 1);
  pthread_mutex_lock (&cache_lock);
  for (;;) {
    if (map_lookup (s->map, offset, &e)) {
      served = serve_locked (s, e, offset, offset + count, flags, extents);
      pthread_mutex_unlock (&cache_lock);
      if (served == -1) {
        *err = errno;
        return -1;
      }
      if (cacheextents_debug_cache)
        nbdkit_debug ("cacheextents: hit offset=%" PRIu64 " count=%" PRIu32
                      " answered=%" PRIi64 "%s", offset, count, served,
                      waited ? " after waiting" : "");
      stats_count (conn_stats, STATS_HITS, 1);
      stats_count (conn_stats, STATS_BYTES_CACHED, served);
      return 0;
    }
    /* Wait at most once for a call already fetching this offset. */
    if (waited || (f = flight_covering_locked (s, offset)) == NULL)
      break;
    f->refs++;
    while (!f->done)
      pthread_cond_wait (&cache_cond, &cache_lock);
    flight_unref_locked (f);
    waited = true;
    stats_count (conn_stats, STATS_WAITS, 1);
  }

  end = cache_window_end_locked (s, count, offset);
  s->last_miss_end = end;
  pthread_cond_broadcast (&cache_cond);      /* prefetch follows misses */
  if (cacheextents_debug_cache)
    nbdkit_debug ("cacheextents: miss offset=%" PRIu64 " count=%" PRIu32
                  " asking backend for %" PRIu64 " bytes",
                  offset, count, end - offset);
  stats_count (conn_stats, STATS_MISSES, 1);
  stats_count (conn_stats, STATS_BACKEND_CALLS, 1);
  r = cache_fetch_locked (s, next, offset, end, false, &answer, err);
  pthread_mutex_unlock (&cache_lock);
  if (r == -1)
    return -1;

  n = nbdkit_extents_count (answer);
  for (i = 0; i < n; ++i) {
    struct nbdkit_extent x = nbdkit_get_extent (answer, i);

    if (nbdkit_add_extent (extents, x.offset, x.length, x.type) == -1) {
      *err = errno;
      r = -1;
      break;
    }
    /* The rest of the window is in the map; copying it would only
     * double the memory of a large answer.
     */
    if ((flags & NBDKIT_FLAG_REQ_ONE) || x.offset + x.length >= offset + count)
      break;
  }
  nbdkit_extents_free (answer);
  return r;
}
