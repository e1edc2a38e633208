/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
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
 *     still in flight, and at most LOG_MAX of them: then they are
 *     folded into fewer, larger ranges (see fold_log_locked).  A store
 *     merges the writes that concern its call into a sorted set once,
 *     then checks each answer extent in O(log n).
 *
 * (F) Some backends make a write visible to block status only when
 *     it is flushed (nbdkit's cache filter in writeback mode, and any
 *     write-back layer).  Every range a write covered (widened as in
 *     W) is remembered as "dirty" when the write returns.  A flush, or
 *     a write with FUA, takes the dirty ranges when it starts (a flush
 *     clears them, a FUA write leaves them for the next flush), adds
 *     the ranges of writes in flight then and of every write that
 *     starts before it returns (a write-back layer may write those
 *     back too), and treats them all as a write in flight until it
 *     returns: it forgets them everywhere when it starts, when they
 *     are added and when it returns, and rule S drops answers that
 *     overlap them from calls in flight meanwhile.  Before the flush
 *     the cache says what the backend says, as no cache would.  Every
 *     write also stays dirty for the next flush.  Scattered writes are
 *     kept as at most CACHE_RANGES_MAX ranges (a fixed array, so
 *     remembering never fails); beyond that they are merged, which
 *     forgets more than needed but never less.
 *
 *     Dirty ranges are kept per connection: without multi-conn a flush
 *     promises only that connection's writes, yet the layer below may
 *     write back others' too.  So a flush covers the dirty ranges of
 *     every connection (and of closed ones, kept as orphans), but
 *     clears only its own connection's set, or all of them (orphans
 *     too) if the backend reports multi-conn.  A flush that fails puts
 *     what it took back.
 *
 *     Not covered: a layer that writes back on its own, with no flush
 *     (nbdkit's cache filter reclaiming dirty blocks when it is full),
 *     or that changes block status on reads (cow-on-read); see the man
 *     page's Limitations.
 *
 * Together: an extent present in the map overlaps no write or flush in
 * flight, and every completed write or flush that overlaps it
 * completed before the call that learned it started.  So a client that
 * finds it in the map after a write (or the flush that made it
 * visible) returned never sees the state from before it.
 *
 * Idle scopes.  Writes visit only scopes with connections.  A shared
 * scope that goes idle remembers writes_started; if it differs when a
 * connection attaches again (a write or flush with something to
 * forget started meanwhile, or one was in flight at the time), its
 * map is dropped.  That costs nothing per write, and a read-only
 * source (qemu-img map, then qemu-img convert, on two connections one
 * after the other) keeps its map.
 *
 * Memory.  Everything counted against cacheextents-max-size is the
 * maps' extents (map_lru_bytes) plus each scope's own memory, its
 * export name included (scope_bytes).  Over the bound, idle scopes go
 * first, least recently used first, then extents, least recently used
 * first.  One answer can hold many extents in nbdkit's own memory
 * before it is stored, so calls are sized from the density of what
 * the export's answers held so far (bytes_per_extent; a first call
 * assumes FIRST_BYTES_PER_EXTENT) to carry at most answer_budget ()
 * extents, the extents of all calls in flight together are held below
 * INFLIGHT_CALLS answers' worth, and one client answer stores at most
 * two answers' worth, so it cannot wipe out what other scopes know.
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

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "map.h"
#include "prefetch.h"
#include "stats.h"

NBDKIT_DLL_PUBLIC int cacheextents_debug_cache = 0;

struct cache_config cache_config;

/* Protects every scope and map, the LRU domain, flights and the write
 * log and write list below.  Never held across a backend call.
 */
pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Broadcast when a flight finishes (waiters look again, and prefetch
 * workers waiting for room in flight), when a write or flush ends and
 * when a prefetch call ends (prefetch_disown waits for those).  Used
 * with cache_lock.
 */
pthread_cond_t cache_cond = PTHREAD_COND_INITIALIZER;

/* A backend extents call in progress. */
struct flight {
  struct flight *next;          /* in scope->flights while not done */
  struct flight *older, *newer; /* in the list of all calls in flight,
                                 * oldest first (start_gen order) */
  uint64_t start, end;          /* the window asked for */
  uint64_t start_gen;           /* write_gen when the call started */
  uint64_t reserved;            /* extents counted in inflight_extents */
  bool done;
  bool poisoned;                /* store nothing from this call */
  unsigned refs;                /* the caller plus waiters */
};

/* A first call on an export nobody has asked yet is sized as if every
 * extent covered this many bytes.
 */
#define FIRST_BYTES_PER_EXTENT 4096
/* All answers in flight together may hold this many answers' worth. */
#define INFLIGHT_CALLS 8
/* Memory of a scope besides its name and its extents. */
#define SCOPE_OVERHEAD (sizeof (struct scope) + 64)

/* The write log holds writes and flushes that completed while some
 * call that started before them is in flight, in generation order.
 * It is trimmed from the front as the oldest call in flight ends.
 * When it reaches LOG_MAX entries (a call stuck while writes go on) it
 * is folded into at most LOG_FOLDED ranges of the newest generation,
 * so that its memory and the time spent on it stay bounded.
 */
#define LOG_MAX 16384
#define LOG_FOLDED (LOG_MAX / 4)
struct logged_write {
  uint64_t offset, end;
  uint64_t gen;
};
CE_VECTOR (write_log, struct logged_write)

/* All protected by cache_lock. */
static struct map_lru *lru;
static struct scope *scopes;            /* active: with connections */
static struct scope *idle_head;         /* idle, most recently used first */
static struct scope *idle_tail;
static uint64_t scope_bytes;            /* memory of all scopes */
static struct cache_write *writes_in_flight;
static struct cache_flush *flushes_in_flight;
static struct write_log completed;     /* live from log_first on */
static size_t log_first;
static struct flight *oldest_flight;    /* every call in flight, */
static struct flight *newest_flight;    /* in start order */
static struct cache_dirty *dirty_sets;  /* of every connection */
static struct cache_ranges orphans;     /* unflushed, of closed ones */
static uint64_t write_gen;
static uint64_t writes_started;         /* writes and flushes, for idle */
static uint64_t inflight_extents;       /* reserved by flights */

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

/* Extents one call should hold at most: 1/16 of the bound. */
static uint64_t
answer_budget (void)
{
  return CE_MAX (UINT64_C (256),
                 cache_config.max_size / map_extent_cost () / 16);
}

static uint64_t
scope_cost (const struct scope *s)
{
  return SCOPE_OVERHEAD + strlen (s->exportname) + 1;
}

static void
scope_free (struct scope *s)
{
  /* Prefetch lets go of a scope before its last connection leaves. */
  assert (!s->pf_queued && !s->pf_parked && s->pf_running == 0 &&
          s->pf_nown == 0);
  scope_bytes -= scope_cost (s);
  map_free (s->map);
  free (s->exportname);
  free (s);
}

/* Take the scope's own contexts, to be closed without the lock. */
static unsigned
take_contexts_locked (struct scope *s, nbdkit_next **out)
{
  unsigned n = s->pf_nown;

  memcpy (out, s->pf_own, n * sizeof *out);
  s->pf_nown = 0;
  s->pf_own_tried = false;
  return n;
}

static void
close_contexts (nbdkit_next **ctx, unsigned n)
{
#if CACHE_OWN_CONTEXTS
  unsigned i;

  for (i = 0; i < n; ++i) {
    ctx[i]->finalize (ctx[i]);
    nbdkit_next_context_close (ctx[i]);
  }
#endif
}

/* The doubly linked lists of scopes. */
static void
list_unlink (struct scope **head, struct scope **tail, struct scope *s)
{
  if (tail && s->next == NULL)
    *tail = s->prev;
  CE_LIST_UNLINK (*head, s);
  s->prev = s->next = NULL;
}

static void
list_push (struct scope **head, struct scope **tail, struct scope *s)
{
  if (tail && *head == NULL)
    *tail = s;
  CE_LIST_PUSH (*head, s);
}

void
cache_free (void)
{
  /* At exit nbdkit may unload without closing the connections (it
   * does not call into the plugin once it is quitting), so scopes may
   * still be attached.  The pool is stopped by now; their contexts are
   * left to nbdkit, which is tearing every backend down.
   */
  while (scopes) {
    struct scope *s = scopes;

    list_unlink (&scopes, NULL, s);
    s->pf_queued = false;
    s->pf_parked = false;
    s->pf_running = 0;
    s->pf_nown = 0;
    scope_free (s);
  }
  while (idle_head) {
    struct scope *s = idle_head;
    list_unlink (&idle_head, &idle_tail, s);
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
  return map_lru_bytes (lru) + scope_bytes;
}

/* Honour the bound: idle scopes first, then extents. */
static void
evict_locked (void)
{
  size_t evicted = 0;

  while (cache_bytes_locked () > cache_config.max_size && idle_tail) {
    struct scope *s = idle_tail;

    evicted += map_count (s->map);
    list_unlink (&idle_head, &idle_tail, s);
    scope_free (s);
  }
  if (cache_bytes_locked () > cache_config.max_size)
    evicted += map_lru_evict (lru, scope_bytes < cache_config.max_size ?
                              cache_config.max_size - scope_bytes : 0);
  if (evicted)
    stats_count (NULL, STATS_EVICTIONS, evicted);
}

/* Size calls from a density (bytes per extent), see the design note. */
static void
set_density_locked (struct scope *s, uint64_t bytes_per_extent)
{
  uint64_t budget = answer_budget (), cap;

  s->bytes_per_extent = CE_MAX (bytes_per_extent, UINT64_C (1));
  if (s->bytes_per_extent > CACHE_MAX_COUNT / budget)
    cap = CACHE_MAX_COUNT;
  else
    cap = CE_ROUND_DOWN (s->bytes_per_extent * budget,
                         cache_config.granularity);
  s->window_cap = CE_MAX (cap, cache_config.granularity);
}

/* What another scope of the same export learned, if any. */
static const struct scope *
sibling_locked (const char *exportname, uint64_t size)
{
  struct scope *lists[2] = { scopes, idle_head };
  struct scope *s;
  int i;

  for (i = 0; i < 2; ++i)
    for (s = lists[i]; s; s = s->next)
      if (s->calibrated && s->size == size &&
          strcmp (s->exportname, exportname) == 0)
        return s;
  return NULL;
}

static struct scope *
scope_new_locked (const char *exportname, int is_tls, bool shared,
                  uint64_t size)
{
  struct scope *s = calloc (1, sizeof *s);
  const struct scope *sib;

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
  s->size = size;
  s->refs = 1;
  sib = sibling_locked (exportname, size);
  set_density_locked (s, sib ? sib->bytes_per_extent : FIRST_BYTES_PER_EXTENT);
  s->calibrated = sib != NULL;
  list_push (&scopes, NULL, s);
  scope_bytes += scope_cost (s);
  evict_locked ();
  return s;
}

/* Forget all a scope knows, keeping the scope.  Returns -1 if out of
 * memory (nbdkit_error called).
 */
static int
scope_reset_locked (struct scope *s, uint64_t size)
{
  struct map *fresh = map_new (lru);

  if (fresh == NULL) {
    nbdkit_error ("cacheextents: map_new: %m");
    return -1;
  }
  map_free (s->map);
  s->map = fresh;
  s->size = size;
  set_density_locked (s, FIRST_BYTES_PER_EXTENT);
  s->calibrated = false;
  s->pf_cursor = s->pf_horizon = s->pf_ahead = s->pf_last = 0;
  s->pf_front = 0;
  return 0;
}

static struct scope *
find_shared_locked (struct scope *list, const char *exportname, int is_tls)
{
  struct scope *s;

  for (s = list; s; s = s->next)
    if (s->shared && s->is_tls == is_tls &&
        strcmp (s->exportname, exportname) == 0)
      return s;
  return NULL;
}

struct scope *
cache_scope_attach (const char *exportname, int is_tls, bool can_share,
                    uint64_t size)
{
  bool shared = cache_config.scope == SCOPE_EXPORT ||
    (cache_config.scope == SCOPE_AUTO && can_share);
  struct scope *s = NULL;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  if (shared && (s = find_shared_locked (scopes, exportname, is_tls))) {
    if (s->size == size) {
      s->refs++;
      return s;
    }
    /* In use with another size: this connection goes private. */
    return scope_new_locked (exportname, is_tls, false, size);
  }
  if (shared && (s = find_shared_locked (idle_head, exportname, is_tls))) {
    if (s->size != size || s->idle_gen != writes_started) {
      /* The export changed size, or may have been written, while
       * nobody was connected: what we knew of it may be wrong now.
       */
      if (cacheextents_debug_cache)
        nbdkit_debug ("cacheextents: export \"%s\" %s while idle, "
                      "dropping its map", exportname,
                      s->size != size ? "changed size" : "was written");
      if (scope_reset_locked (s, size) == -1)
        return NULL;
    }
    list_unlink (&idle_head, &idle_tail, s);
    list_push (&scopes, NULL, s);
    s->refs = 1;
    return s;
  }
  return scope_new_locked (exportname, is_tls, shared, size);
}

void
cache_scope_detach (struct scope *s)
{
  nbdkit_next *ctx[CACHE_MAX_CONTEXTS];
  unsigned n = 0;

  pthread_mutex_lock (&cache_lock);
  if (--s->refs > 0)
    goto out;
  list_unlink (&scopes, NULL, s);
  n = take_contexts_locked (s, ctx);
  if (!s->shared || map_count (s->map) == 0) {
    scope_free (s);
    goto out;
  }
  /* A write in flight now would not reach this map: mark it stale. */
  s->idle_gen = writes_in_flight || flushes_in_flight ?
    writes_started - 1 : writes_started;
  list_push (&idle_head, &idle_tail, s);
  evict_locked ();
 out:
  pthread_mutex_unlock (&cache_lock);
  close_contexts (ctx, n);
}

/* Sets of ranges (rule F). */

/* Sort by offset, then merge overlapping or touching ranges. */
static int
range_compare (const void *a, const void *b)
{
  const struct cache_range *x = a, *y = b;

  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static size_t
ranges_merge (struct cache_range *r, size_t n)
{
  size_t i, j;

  qsort (r, n, sizeof r[0], range_compare);
  for (i = j = 0; i < n; ++i) {
    if (j > 0 && r[i].offset <= r[j-1].end)
      r[j-1].end = CE_MAX (r[j-1].end, r[i].end);
    else
      r[j++] = r[i];
  }
  return j;
}

/* Does [offset, end) overlap one of n merged ranges?  O(log n). */
static bool
ranges_overlap (const struct cache_range *r, size_t n,
                uint64_t offset, uint64_t end)
{
  size_t lo = 0, hi = n;

  /* The first range that ends after offset (ends increase). */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (r[mid].end > offset)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo < n && r[lo].offset < end;
}

static void
ranges_compact (struct cache_ranges *rs)
{
  rs->n = ranges_merge (rs->r, rs->n);
  if (rs->n > CACHE_RANGES_MAX / 2) {
    rs->r[0].end = rs->r[rs->n-1].end;
    rs->n = 1;
  }
}

/* Add [offset, end) to a set. */
static void
ranges_add (struct cache_ranges *rs, uint64_t offset, uint64_t end)
{
  struct cache_range *last = rs->n ? &rs->r[rs->n-1] : NULL;

  if (last && offset <= last->end && last->offset <= end) {
    last->offset = CE_MIN (last->offset, offset);
    last->end = CE_MAX (last->end, end);
    return;
  }
  if (rs->n == CACHE_RANGES_MAX)
    ranges_compact (rs);
  rs->r[rs->n].offset = offset;
  rs->r[rs->n].end = end;
  rs->n++;
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
  struct cache_flush *fl;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  w->offset = CE_ROUND_DOWN (offset, cache_config.granularity);
  w->end = CE_ROUND_UP (offset + count, cache_config.granularity);
  CE_LIST_PUSH (writes_in_flight, w);
  writes_started++;
  /* A flush in flight may write this back too (rule F). */
  for (fl = flushes_in_flight; fl; fl = fl->next)
    ranges_add (&fl->set, w->offset, w->end);
  forget_everywhere_locked (w->offset, w->end);
}

static void
log_clear_locked (void)
{
  if (completed.cap > LOG_FOLDED)
    write_log_reset (&completed);   /* give back what a burst took */
  completed.len = log_first = 0;
}

/* Drop log entries that no call in flight can be affected by: those
 * of a generation the oldest call in flight already saw.  Amortised
 * O(1) per entry.
 */
static void
trim_log_locked (void)
{
  if (oldest_flight == NULL) {
    log_clear_locked ();
    return;
  }
  while (log_first < completed.len &&
         completed.ptr[log_first].gen <= oldest_flight->start_gen)
    log_first++;
  if (log_first == completed.len)
    log_clear_locked ();
  else if (log_first > 1024 && log_first > completed.len / 2) {
    memmove (completed.ptr, completed.ptr + log_first,
             (completed.len - log_first) * sizeof completed.ptr[0]);
    completed.len -= log_first;
    log_first = 0;
  }
}

/* Make every call in flight store nothing, which is always safe, and
 * empty the log, which then serves no call.  Used when out of memory.
 */
static void
poison_flights_locked (void)
{
  struct flight *f, *newer;

  /* A poisoned call needs no log: it leaves the list, so that a long
   * call cannot hold the log full and so poison the calls after it.
   */
  for (f = oldest_flight; f; f = newer) {
    newer = f->newer;
    f->poisoned = true;
    f->older = f->newer = NULL;
  }
  oldest_flight = newest_flight = NULL;
  log_clear_locked ();
}

/* Fold the full log into at most LOG_FOLDED ranges that cover every
 * byte it covered, all stamped with its newest generation.  A call
 * that started before that generation then drops answer extents over
 * any of them, even those of writes it had already seen: more than
 * needed, never less; a call that started after it, none, as before.
 * Generation order holds, since later writes have later generations.
 * Returns -1 if out of memory.
 */
static int
fold_log_locked (void)
{
  size_t n = completed.len - log_first, i, k, group;
  uint64_t gen = completed.ptr[completed.len - 1].gen;
  struct cache_range *r = malloc (n * sizeof *r);

  if (r == NULL)
    return -1;
  for (i = 0; i < n; ++i) {
    r[i].offset = completed.ptr[log_first + i].offset;
    r[i].end = completed.ptr[log_first + i].end;
  }
  n = ranges_merge (r, n);
  /* Still too many: each run of 'group' neighbours becomes one range,
   * the gaps between them included.
   */
  group = (n + LOG_FOLDED - 1) / LOG_FOLDED;
  for (i = k = 0; i < n; i += group, ++k) {
    completed.ptr[k].offset = r[i].offset;
    completed.ptr[k].end = r[CE_MIN (i + group, n) - 1].end;
    completed.ptr[k].gen = gen;
  }
  completed.len = k;
  log_first = 0;
  free (r);
  return 0;
}

/* A write or flush of [offset, end) has completed: forget it again and
 * log it for the calls still in flight (rule S).  The caller trims the
 * log and wakes the workers.
 */
static void
complete_range_locked (uint64_t offset, uint64_t end, uint64_t gen)
{
  struct logged_write lw = { .offset = offset, .end = end, .gen = gen };

  forget_everywhere_locked (offset, end);
  if (oldest_flight == NULL)
    return;                     /* no call to protect */
  if ((completed.len - log_first >= LOG_MAX && fold_log_locked () == -1) ||
      write_log_append (&completed, lw) == -1)
    poison_flights_locked ();
}

void
cache_write_end (struct cache_write *w, struct cache_dirty *d)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  CE_LIST_UNLINK (writes_in_flight, w);

  complete_range_locked (w->offset, w->end, ++write_gen);
  ranges_add (&d->set, w->offset, w->end);
  trim_log_locked ();
  stats_count (NULL, STATS_INVALIDATIONS, 1);
  pthread_cond_broadcast (&cache_cond);
}

void
cache_dirty_register (struct cache_dirty *d, bool multi_conn)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  d->set.n = 0;
  d->multi_conn = multi_conn;
  CE_LIST_PUSH (dirty_sets, d);
}

static void
ranges_add_all (struct cache_ranges *to, const struct cache_ranges *from)
{
  size_t i;

  for (i = 0; i < from->n; ++i)
    ranges_add (to, from->r[i].offset, from->r[i].end);
}

void
cache_dirty_unregister (struct cache_dirty *d)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  CE_LIST_UNLINK (dirty_sets, d);
  ranges_add_all (&orphans, &d->set);
}

void
cache_flush_begin (struct cache_flush *fl, struct cache_dirty *d, bool fua)
{
  const struct cache_write *w;
  struct cache_dirty *o;
  size_t i;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  /* Everything unflushed, and the writes in flight.  A flush clears
   * its connection's set (every set with multi-conn, and what closed
   * connections left).  Without multi-conn, what a closed connection
   * left stays dirty for every later flush: the layers below close
   * after this filter, and one may write it back then, after a flush
   * of another connection has returned.  A write with
   * FUA may make the rest visible too (nbdkit emulates FUA with a
   * flush) or not (nbdkit's cache filter writes only that block
   * through), so it clears nothing.
   */
  fl->set = orphans;
  for (o = dirty_sets; o; o = o->next)
    ranges_add_all (&fl->set, &o->set);
  for (w = writes_in_flight; w; w = w->next)
    ranges_add (&fl->set, w->offset, w->end);
  if (!fua) {
    d->set.n = 0;
    if (d->multi_conn) {
      for (o = dirty_sets; o; o = o->next)
        o->set.n = 0;
      orphans.n = 0;
    }
  }
  CE_LIST_PUSH (flushes_in_flight, fl);
  if (fl->set.n > 0)
    writes_started++;
  for (i = 0; i < fl->set.n; ++i)
    forget_everywhere_locked (fl->set.r[i].offset, fl->set.r[i].end);
}

void
cache_flush_end (struct cache_flush *fl, struct cache_dirty *d, bool ok)
{
  uint64_t gen;
  size_t i;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  CE_LIST_UNLINK (flushes_in_flight, fl);
  if (!ok)
    ranges_add_all (&d->set, &fl->set);
  if (fl->set.n == 0)
    return;

  gen = ++write_gen;
  for (i = 0; i < fl->set.n; ++i)
    complete_range_locked (fl->set.r[i].offset, fl->set.r[i].end, gen);
  trim_log_locked ();
  pthread_cond_broadcast (&cache_cond);
}

/* Flights and stores. */

/* What no extent of an answer to a call that started at generation
 * 'gen' may be stored over (rule S): every write and flush in flight,
 * and every one that completed after gen, merged and sorted into *out
 * (malloc'd, *n of them), so that each extent is checked in
 * O(log n).  Returns -1 if out of memory.
 */
static int
blocked_ranges_locked (uint64_t gen, struct cache_range **out, size_t *n)
{
  const struct cache_write *w;
  const struct cache_flush *fl;
  struct cache_range *r;
  size_t lo = log_first, hi = completed.len, i, k;

  /* The log is in generation order: what came after gen is a suffix. */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (completed.ptr[mid].gen > gen)
      hi = mid;
    else
      lo = mid + 1;
  }
  k = completed.len - lo;
  for (w = writes_in_flight; w; w = w->next)
    k++;
  for (fl = flushes_in_flight; fl; fl = fl->next)
    k += fl->set.n;
  *out = NULL;
  *n = 0;
  if (k == 0)
    return 0;
  r = malloc (k * sizeof *r);
  if (r == NULL)
    return -1;
  k = 0;
  for (i = lo; i < completed.len; ++i) {
    r[k].offset = completed.ptr[i].offset;
    r[k++].end = completed.ptr[i].end;
  }
  for (w = writes_in_flight; w; w = w->next) {
    r[k].offset = w->offset;
    r[k++].end = w->end;
  }
  for (fl = flushes_in_flight; fl; fl = fl->next)
    for (i = 0; i < fl->set.n; ++i)
      r[k++] = fl->set.r[i];
  *out = r;
  *n = ranges_merge (r, k);
  return 0;
}

/* Merge a backend answer into the map, applying rule (S).
 *
 * Both kinds of store go from the start of the answer, so that the
 * extents a client will ask for next are stored first.  A client's
 * store evicts as it goes, so the bound holds even while a large
 * answer is merged, but stores at most two answers' worth, so that one
 * answer cannot wipe out what other scopes know.  Prefetch never
 * evicts: it stops at the bound, so that reading ahead cannot push out
 * what clients have not used yet.
 */
static void
store_locked (struct scope *s, const struct flight *f,
              const struct nbdkit_extents *answer, bool prefetch)
{
  size_t i, n = nbdkit_extents_count (answer), nblocked;
  size_t most = prefetch ? n : CE_MIN (n, 2 * answer_budget ());
  struct cache_range *blocked;

  /* Out of memory: storing nothing is always right. */
  if (f->poisoned ||
      blocked_ranges_locked (f->start_gen, &blocked, &nblocked) == -1)
    return;
  for (i = 0; i < most; ++i) {
    struct nbdkit_extent e = nbdkit_get_extent (answer, i);

    if (prefetch &&
        cache_bytes_locked () + map_extent_cost () > cache_config.max_size)
      break;
    if (ranges_overlap (blocked, nblocked, e.offset, e.offset + e.length))
      continue;
    /* Out of memory leaves the map as it was, which stays true. */
    map_set (s->map, e.offset, e.length, e.type);
    if (!prefetch && cache_bytes_locked () > cache_config.max_size)
      evict_locked ();
  }
  free (blocked);
}

/* Learn the export's density from an answer (see the design note):
 * the next calls are sized to hold about answer_budget () extents.
 */
static void
adapt_window_locked (struct scope *s, uint64_t start,
                     const struct nbdkit_extents *answer)
{
  size_t n = nbdkit_extents_count (answer);
  struct nbdkit_extent last = nbdkit_get_extent (answer, n - 1);
  uint64_t covered = last.offset + last.length - start;

  set_density_locked (s, covered / n);
  if (!s->calibrated) {
    s->calibrated = true;
    prefetch_calibrated_locked (s);
  }
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

bool
cache_inflight_full_locked (void)
{
  return inflight_extents >= INFLIGHT_CALLS * answer_budget ();
}

int
cache_fetch_locked (struct scope *s, nbdkit_next *next, struct gate *g,
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
  f->start_gen = write_gen;
  f->reserved = (end - start) / s->bytes_per_extent + 1;
  f->refs = 1;
  f->next = s->flights;
  s->flights = f;
  CE_QUEUE_APPEND (oldest_flight, newest_flight, f, older, newer);
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
  if (!f->poisoned)             /* else already off the list */
    CE_QUEUE_UNLINK (oldest_flight, newest_flight, f, older, newer);
  f->done = true;
  inflight_extents -= f->reserved;
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

/* Of the ranges writes and flushes in flight cover, the one that
 * starts first among those that end after offset, in *r.  It covers
 * offset if it starts at or before it; if not, nothing does, and it
 * is the first to start after offset.  False if there is none.
 */
static bool
write_after_locked (uint64_t offset, struct cache_range *r)
{
  const struct cache_write *w;
  const struct cache_flush *fl;
  bool found = false;
  size_t i;

  for (w = writes_in_flight; w; w = w->next)
    if (w->end > offset && (!found || w->offset < r->offset)) {
      r->offset = w->offset;
      r->end = w->end;
      found = true;
    }
  for (fl = flushes_in_flight; fl; fl = fl->next)
    for (i = 0; i < fl->set.n; ++i)
      if (fl->set.r[i].end > offset &&
          (!found || fl->set.r[i].offset < r->offset)) {
        *r = fl->set.r[i];
        found = true;
      }
  return found;
}

/* Skips what a flight is fetching, and what a write or flush in flight
 * covers: rule S would drop that part of any answer, so fetching it
 * now would only be repeated.  Prefetch moves on past it; a client
 * that asks there later misses and fetches it itself.
 */
uint64_t
cache_next_unknown_locked (struct scope *s, uint64_t offset,
                           uint64_t limit, uint64_t *write_start)
{
  const struct flight *f;
  struct cache_range w = { 0, 0 };
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
    ahead = write_after_locked (offset, &w);
    if (!ahead || w.offset > offset)
      break;
    offset = w.end;             /* covered by a write: skip it */
    ahead = false;
  }
  *write_start = ahead ? w.offset : UINT64_MAX;
  return CE_MIN (offset, limit);
}

bool
cache_unknown_at_locked (const struct scope *s, uint64_t offset)
{
  struct cache_range w;

  return offset < s->size &&
    map_next_gap (s->map, offset, offset + 1) == offset &&
    flight_covering_locked (s, offset) == NULL &&
    !(write_after_locked (offset, &w) && w.offset <= offset);
}

/* The client path. */

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

uint64_t
cache_window_end_locked (const struct scope *s, uint32_t count,
                         uint64_t offset)
{
  uint64_t len = CE_MAX ((uint64_t) count, cache_config.window);
  uint64_t room = INFLIGHT_CALLS * answer_budget ();

  len = CE_MIN (len, s->window_cap);
  /* Fast start: until an answer has told the export's density, a miss
   * also fetches the window after its own, in the same call (prefetch
   * waits for that answer, see parallel () in prefetch.c).  Two
   * windows sized for the densest disk stay well inside the room.
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

int
cache_extents (struct scope *s, nbdkit_next *next, struct gate *g,
               uint32_t count, uint64_t offset, uint32_t flags,
               struct nbdkit_extents *extents,
               struct stats *conn_stats, int *err)
{
  struct nbdkit_extents *answer = NULL;
  struct map_extent e;
  struct flight *f;
  bool waited = false, expected = false;
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
      stats_count (conn_stats, STATS_HITS, 1);
      stats_count (conn_stats, STATS_BYTES_CACHED, served);
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
    f->refs++;
    while (!f->done)
      pthread_cond_wait (&cache_cond, &cache_lock);
    flight_unref_locked (f);
    waited = true;
    stats_count (conn_stats, STATS_WAITS, 1);
  }

  end = cache_window_end_locked (s, count, offset);
  if (cacheextents_debug_cache)
    nbdkit_debug ("cacheextents: miss offset=%" PRIu64 " count=%" PRIu32
                  " asking backend for %" PRIu64 " bytes",
                  offset, count, end - offset);
  stats_count (conn_stats, STATS_MISSES, 1);
  stats_count (conn_stats, STATS_BACKEND_CALLS, 1);
  if (g && !expected)
    gate_expect (g);
  r = cache_fetch_locked (s, next, g, offset, end, false, &answer, err);
  pthread_mutex_unlock (&cache_lock);
  if (r == -1)
    return -1;

  n = nbdkit_extents_count (answer);
  for (i = 0; i < n; ++i) {
    struct nbdkit_extent x = nbdkit_get_extent (answer, i);

    uint64_t x_end = CE_MIN (x.offset + x.length, offset + count);

    /* Clipped to the request, as in serve_locked. */
    if (nbdkit_add_extent (extents, x.offset, x_end - x.offset,
                           x.type) == -1) {
      *err = errno;
      r = -1;
      break;
    }
    /* The rest of the window is in the map; copying it would only
     * double the memory of a large answer.
     */
    if ((flags & NBDKIT_FLAG_REQ_ONE) || x_end >= offset + count)
      break;
  }
  nbdkit_extents_free (answer);
  return r;
}
