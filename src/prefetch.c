/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: background prefetch (see prefetch.h).
 *
 * Per scope (struct prefetch_scope, s->pf, under cache_lock):
 *
 *   cursor    where the next window is looked for.  It only moves
 *             forward as windows are claimed, except that a client
 *             request outside [cursor - H, cursor + H] (a jump) moves
 *             it to the end of that request's own window, and one
 *             behind it with a gap just after it (gap_behind_locked)
 *             moves it back to that gap.  A map dropped while its
 *             scope was idle (the reset event) puts every position
 *             back to 0.
 *   front     where the cursor was before it went back to a gap: the
 *             workers fetch on from the gap while what follows is
 *             unknown, then go back to the front (one point lookup),
 *             so no step walks the known extents in between.
 *   horizon   the first byte not to prefetch: the end of the latest
 *             client request plus 'ahead'.  Only clients move it, so
 *             an idle client gets at most 'ahead' bytes read ahead of
 *             it.
 *   ahead     one call's worth after the first request or a jump, and
 *             H from the next request that moves forward: a client
 *             that asks once costs one prefetch call (on its first
 *             request, the second window of its own call), a client that
 *             walks the disk has H in flight before it from its second
 *             request on (doubling instead, as readahead does, cost a
 *             round trip per doubling on a fast client).
 *   H         HORIZON_WINDOWS times the scope's current call size
 *             (which the export's density sets, scope.c), so that on
 *             a dense disk the read-ahead is short in bytes.  With as
 *             many workers, one round trip after the first answer
 *             fetches all of H.
 *
 * Fast start: while the density is unknown the workers wait (parallel
 * is 0) and the client's first miss fetches the window after its own
 * in the same call (flight_window_end_locked); the answer that tells
 * the density posts the scope (calibrated_locked).  A pass
 * then costs ceil (size / window) + 1 calls, as without a fast start.
 *
 * The ready queue holds each scope at most once.  A worker pops a
 * scope, finds the next unknown byte at or after the cursor that no
 * flight is fetching and no write or flush in flight covers
 * (flight_next_unknown_locked: O(log n) plus the known extents it steps
 * over, which are few because the cursor stays at the frontier of what
 * prefetch fetched), claims one window from there, ending at the next
 * write or flush in flight, advances the cursor past it, posts the
 * scope again if there is more below the horizon and fewer calls in
 * flight for it than there are workers, and makes the call.  So the
 * workers spread over the scopes that have work in turn, and a scope
 * that has none costs nothing.
 *
 * Bounds: the pool has cacheextents-prefetch-threads threads whatever
 * the number of connections; a scope is not fetched for while the maps
 * use 7/8 of the memory bound or more (a prefetch store never evicts),
 * nor while the answers in flight are at their bound (the worker then
 * waits for a flight to finish); a call that the room left would cut
 * short waits for one of the scope's own calls to end instead of going
 * out small.  A failed call is
 * logged (debug) and stops read-ahead for the scope until a client
 * asks again; clients never see it.
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "flight.h"
#include "gate.h"
#include "prefetch.h"
#include "scope.h"
#include "stats.h"

NBDKIT_DLL_PUBLIC int cacheextents_debug_prefetch = 0;

/* Read ahead this many of the scope's calls past the clients. */
#define HORIZON_WINDOWS 16

/* The pool.  All protected by cache_lock. */
static pthread_t threads[PREFETCH_MAX_THREADS];
static unsigned nthreads;               /* started */
static bool pool_failed;                /* could not start: prefetch off */
static bool pool_stop;
static bool pool_unloaded;              /* .unload: never start again */
static unsigned connections;            /* open, see prefetch_connection */
static struct scope *queue_head, *queue_tail;
/* Scopes whose next call waits for their gate (gate.h): a client was
 * using it.  The client's gate_leave puts them back on the ready queue
 * (prefetch_gate_free).
 */
static struct scope *parked_head, *parked_tail;
/* Signalled when a scope is posted, a flight of a full in-flight
 * budget ends, or the pool stops.  Only the pool's workers wait on it.
 */
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;

/* The length of one prefetch call on s (before clamping to the end or
 * to the room in flight).
 */
static uint64_t
call_bytes (const struct scope *s)
{
  return CE_MIN (cache_config.window, s->window_cap);
}

static uint64_t
horizon_bytes (const struct scope *s)
{
  return HORIZON_WINDOWS * call_bytes (s);
}

static void
post_locked (struct scope *s)
{
  if (s->pf.queued || s->pf.parked)
    return;
  s->pf.queued = true;
  CE_QUEUE_APPEND (queue_head, queue_tail, s, pf.qprev, pf.qnext);
  pthread_cond_signal (&pool_cond);
}

static void
unqueue_locked (struct scope *s)
{
  if (s->pf.queued)
    CE_QUEUE_UNLINK (queue_head, queue_tail, s, pf.qprev, pf.qnext);
  if (s->pf.parked)
    CE_QUEUE_UNLINK (parked_head, parked_tail, s, pf.qprev, pf.qnext);
  s->pf.queued = s->pf.parked = false;
}

/* s's gate was busy: wait off the ready queue until it is let go. */
static void
park_locked (struct scope *s)
{
  unqueue_locked (s);
  s->pf.parked = true;
  CE_QUEUE_APPEND (parked_head, parked_tail, s, pf.qprev, pf.qnext);
}

static bool wants_worker_locked (const struct scope *s);

/* Gate g was let go: post the scopes that wait for it. */
static void
unpark_locked (const struct gate *g)
{
  struct scope *s, *next;

  for (s = parked_head; s; s = next) {
    next = s->pf.qnext;
    if (s->pf.gate != g)
      continue;
    unqueue_locked (s);
    if (wants_worker_locked (s))
      post_locked (s);
  }
}

static struct scope *
pop_locked (void)
{
  struct scope *s = queue_head;

  if (s)
    unqueue_locked (s);
  return s;
}

/* How many prefetch calls a scope may have in flight at once.  Until
 * an answer has told the export's density, none: calls would be sized
 * for the densest disk (flight.c), so the client's first miss fetches
 * the window after its own in the same call instead.  A separate call
 * would cost one more call per pass on a sparse disk, and on a backend
 * that serves one call at a time it would queue beside the client's.
 */
static unsigned
parallel (const struct scope *s)
{
  if (!s->calibrated)
    return 0;
  if (s->pf.nown)
    return CE_MIN (s->pf.nown, nthreads);
  /* Through a client's context below a layer that is not parallel:
   * one call at a time, and only while the client makes none (gate).
   */
  return s->pf.gate ? 1 : nthreads;
}

/* Should s be posted for a worker: is there anything to prefetch below
 * the horizon, and room for one more of its calls?  Cheap test: the
 * worker does the real search.
 */
static bool
wants_worker_locked (const struct scope *s)
{
  return s->pf.ctx && s->pf.running < parallel (s) &&
    s->pf.cursor < CE_MIN (s->pf.horizon, s->size);
}

/* One step of a worker on scope s: claim and fetch one window.
 * Returns false if s had nothing to do.
 */

static bool
step_locked (struct scope *s)
{
  uint64_t limit = CE_MIN (s->pf.horizon, s->size), start, end, write_start;
  nbdkit_next *next = s->pf.ctx;
  struct gate *gate = NULL;
  unsigned own = PREFETCH_MAX_CONTEXTS;    /* none */
  int err = 0;

  if (next == NULL || s->pf.running >= parallel (s) ||
      scope_bytes_locked () >= cache_config.max_size / 8 * 7)
    return false;
  /* Gone back to a gap (note_locked): fetch on from there only while
   * what follows is unknown, then back to the front, so that no step
   * walks the known extents in between.
   */
  if (s->pf.cursor < s->pf.front &&
      !flight_unknown_at_locked (s, s->pf.cursor))
    s->pf.cursor = s->pf.front;
  start = flight_next_unknown_locked (s, s->pf.cursor, limit, &write_start);
  if (start >= limit) {
    s->pf.cursor = CE_MAX (s->pf.cursor, limit);
    return false;
  }
  end = flight_window_end_locked (s, 0, start);
  /* Cut short for want of room in flight: rather than a small call
   * (a round trip for little), wait for one of the scope's own calls to
   * end; it posts the scope again.
   */
  if (s->pf.running > 0 && end < CE_MIN (start + call_bytes (s), s->size))
    return false;
  end = CE_MIN (end, write_start);
  /* Through a client's context under a serializing layer: only if the
   * client makes no call now; else wait parked until it is done.
   */
  if (s->pf.nown == 0 && s->pf.gate) {
    if (!gate_try_prefetch (s->pf.gate)) {
      park_locked (s);
      return false;
    }
    gate = s->pf.gate;
  }
  s->pf.cursor = end;
  s->pf.running++;
  if (s->pf.nown > 0) {
    for (own = 0; s->pf.own_busy & (1u << own); ++own)
      ;
    s->pf.own_busy |= 1u << own;
    next = s->pf.own[own];
  }
  if (wants_worker_locked (s))
    post_locked (s);

  stats_count (NULL, STATS_PREFETCH_CALLS, 1);
  if (cacheextents_debug_prefetch)
    nbdkit_debug ("cacheextents: prefetch offset=%" PRIu64
                  " count=%" PRIu64, start, end - start);
  if (flight_fetch_locked (s, next, NULL, start, end, true, NULL,
                          &err) == -1) {
    nbdkit_debug ("cacheextents: prefetch at offset %" PRIu64 " failed: "
                  "%s; stopping until a client asks again",
                  start, strerror (err));
    s->pf.horizon = s->pf.cursor;
  }
  if (own < PREFETCH_MAX_CONTEXTS)
    s->pf.own_busy &= ~(1u << own);
  /* Another scope may wait for the same gate. */
  if (gate && gate_leave_prefetch (gate))
    unpark_locked (gate);
  s->pf.running--;
  /* prefetch_disown may be waiting for this call. */
  pthread_cond_broadcast (&cache_cond);
  if (wants_worker_locked (s))
    post_locked (s);
  return true;
}

static void *
worker_thread (void *arg)
{
  pthread_mutex_lock (&cache_lock);
  while (!pool_stop) {
    struct scope *s = pop_locked ();

    if (s == NULL) {
      pthread_cond_wait (&pool_cond, &cache_lock);
      continue;
    }
    /* While the answers in flight are at their bound, hold on to the
     * scope until a flight ends (cache_cond is broadcast then).
     * Holding counts as a call, so that prefetch_disown waits for it
     * and the scope cannot go away meanwhile.
     */
    if (flight_room_full_locked ()) {
      s->pf.running++;
      while (!pool_stop && s->pf.ctx && flight_room_full_locked ())
        pthread_cond_wait (&cache_cond, &cache_lock);
      s->pf.running--;
      pthread_cond_broadcast (&cache_cond);
    }
    if (!pool_stop)
      step_locked (s);
  }
  pthread_mutex_unlock (&cache_lock);
  return NULL;
}

/* Start the pool on first use (after nbdkit has forked, if it does). */
static bool
pool_start_locked (void)
{
  unsigned i;
  int err;

  if (nthreads > 0 || pool_failed || pool_unloaded)
    return nthreads > 0;
  for (i = 0; i < cache_config.prefetch_threads; ++i) {
    err = pthread_create (&threads[i], NULL, worker_thread, NULL);
    if (err) {
      nbdkit_debug ("cacheextents: prefetch: pthread_create: %s",
                    strerror (err));
      break;
    }
    nthreads++;
  }
  if (nthreads == 0) {
    nbdkit_error ("cacheextents: prefetch is off: no thread could be "
                  "started");
    pool_failed = true;
    return false;
  }
  if (cacheextents_debug_prefetch)
    nbdkit_debug ("cacheextents: prefetch started, %u workers", nthreads);
  return true;
}

/* A request [offset, offset+count) behind the cursor: the first byte
 * after what it reads (or, if it misses, after the window its miss
 * will fetch) if nothing knows or is fetching that byte; else
 * UINT64_MAX.  Such a gap behind the cursor is a client that went back
 * (however far: the front is kept, unlike on a jump forward), or
 * answers that were not stored (rule S, the bound on what one answer
 * stores, eviction): the cursor only moves forward otherwise, so
 * prefetch would never come back for it.  O(log n) plus the flights
 * and the writes in flight.
 */
static uint64_t
gap_behind_locked (struct scope *s, uint32_t count, uint64_t offset)
{
  uint64_t after = offset + count;

  if (offset >= s->pf.cursor)
    return UINT64_MAX;
  if (flight_unknown_at_locked (s, offset))
    after = flight_window_end_locked (s, count, offset);
  return flight_unknown_at_locked (s, after) ? after : UINT64_MAX;
}

/* The request event: a client request [offset, offset+count) on s
 * from connection c, about to be served.  Moves the horizon and posts
 * work.  Failure to start the pool is logged once and turns prefetch
 * off.
 */
static void
note_locked (struct scope *s, const struct cache_client *c,
             uint32_t count, uint64_t offset)
{
  uint64_t end = offset + count, h, back;

  if (!cache_config.prefetch || !pool_start_locked ())
    return;
  /* No new owner while a leaving one waits for the calls in flight,
   * or it could wait for as long as the new one keeps asking.
   */
  if (s->pf.ctx == NULL && s->pf.draining == 0) {
    s->pf.owner = c->owner;
    s->pf.ctx = c->next;
    s->pf.gate = c->gate;
  }
  h = horizon_bytes (s);
  back = gap_behind_locked (s, count, offset);
  /* A jump (or the first request): start after the window this
   * request's miss will fetch, or at the gap just after the request
   * if it went back, with one call's worth read ahead, and forget how
   * far ahead the old position was read.
   */
  if (s->pf.ahead == 0 || back < s->pf.cursor ||
      end + h < s->pf.cursor || s->pf.cursor + h < offset) {
    if (back < s->pf.cursor) {
      s->pf.front = CE_MAX (s->pf.front, s->pf.cursor);
      s->pf.cursor = back;
    }
    else {
      s->pf.front = 0;
      s->pf.cursor = flight_window_end_locked (s, count, offset);
    }
    s->pf.ahead = call_bytes (s);
    s->pf.horizon = CE_MIN (end + s->pf.ahead, s->size);
  }
  else if (offset > s->pf.last)
    s->pf.ahead = h;
  s->pf.last = offset;
  s->pf.cursor = CE_MAX (s->pf.cursor, offset);
  s->pf.horizon = CE_MAX (s->pf.horizon,
                          CE_MIN (end + s->pf.ahead, s->size));
  if (wants_worker_locked (s))
    post_locked (s);
}

/* The calibrated event: an answer has just told s's density for the
 * first time; start the read-ahead its first request set up.
 */
static void
calibrated_locked (struct scope *s)
{
  /* The pool may have stopped since this scope's first request, when
   * there was nothing to post (its last connection but one left).
   */
  if (wants_worker_locked (s) && pool_start_locked ())
    post_locked (s);
}

/* The reset event: s is attached again, idle no more, with its map
 * dropped; nothing reads ahead on it (it had no connection).
 */
static void
reset_locked (struct scope *s)
{
  s->pf.cursor = s->pf.horizon = s->pf.ahead = s->pf.last = 0;
  s->pf.front = 0;
}

const struct cache_events prefetch_events = {
  .request_locked = note_locked,
  .calibrated_locked = calibrated_locked,
  .reset_locked = reset_locked,
};

#if CACHE_OWN_CONTEXTS
/* Open one context for exportname and get it ready for ->extents.
 * It must see the size the scope was made for: an export that changed
 * size meanwhile would be asked past its end.
 */
static nbdkit_next *
open_context (nbdkit_backend *backend, int readonly, const char *exportname,
              uint64_t size)
{
  nbdkit_next *n = nbdkit_next_context_open (backend, readonly, exportname,
                                             1);

  if (n == NULL)
    return NULL;
  /* nbdkit asserts that size and can_extents are known before the
   * first ->extents on a context.
   */
  if (n->prepare (n) == -1) {
    nbdkit_next_context_close (n);
    return NULL;
  }
  if (n->get_size (n) != (int64_t) size || n->can_extents (n) != 1) {
    n->finalize (n);
    nbdkit_next_context_close (n);
    return NULL;
  }
  return n;
}

void
prefetch_open_contexts (struct scope *s, nbdkit_backend *backend,
                        int readonly, const char *exportname)
{
  nbdkit_next *ctx[PREFETCH_MAX_CONTEXTS];
  unsigned n, want = cache_config.prefetch_contexts;
  uint64_t size;

  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    /* A context nbdkit opens for a filter is not a TLS one unless the
     * server requires TLS, so a TLS scope could be filled with what a
     * plaintext client sees: TLS scopes use their clients' contexts.
     */
    if (!cache_config.prefetch || want == 0 || !s->shared || s->is_tls ||
        s->pf.own_tried)
      return;
    s->pf.own_tried = true;     /* nobody else opens them */
    size = s->size;
  }
  /* Outside the lock: opening may be slow (a VDDK login). */
  for (n = 0; n < want; ++n)
    if ((ctx[n] = open_context (backend, readonly, exportname,
                                size)) == NULL)
      break;
  if (n < want)
    nbdkit_debug ("cacheextents: prefetch: opened %u of %u contexts of "
                  "its own for export \"%s\"", n, want, exportname);
  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    memcpy (s->pf.own, ctx, n * sizeof ctx[0]);
    s->pf.nown = n;
  }
  if (cacheextents_debug_prefetch)
    nbdkit_debug ("cacheextents: prefetch has %u contexts of its own for "
                  "export \"%s\"", n, exportname);
}
#endif

void
prefetch_disown (struct scope *s, const void *owner)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  if (s->pf.owner != owner)
    return;
  s->pf.owner = NULL;
  s->pf.ctx = NULL;
  s->pf.gate = NULL;
  unqueue_locked (s);
  /* A worker holding the scope in the in-flight wait lets go now. */
  pthread_cond_broadcast (&cache_cond);
  s->pf.draining++;
  while (s->pf.running > 0)
    pthread_cond_wait (&cache_cond, &cache_lock);
  s->pf.draining--;
}

/* Stop and join the pool.  Called without the lock. */
static void
pool_stop_and_join (void)
{
  unsigned i, n;

  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    pool_stop = true;
    pthread_cond_broadcast (&pool_cond);
    pthread_cond_broadcast (&cache_cond);
    n = nthreads;
  }
  for (i = 0; i < n; ++i)
    pthread_join (threads[i], NULL);
  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    nthreads = 0;
    pool_stop = false;
    /* A connection that came meanwhile may have posted work. */
    if (queue_head && connections > 0)
      pool_start_locked ();
  }
}

/* Close contexts of a scope's own, without the lock. */
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

void
prefetch_connection (struct scope *s, bool open)
{
  nbdkit_next *ctx[PREFETCH_MAX_CONTEXTS];
  unsigned n = 0;
  bool last;

  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    if (open) {
      s->pf.conns++;
      connections++;
      return;
    }
    /* The last connection of s to leave, and no other attached
     * (scope_attach) but not counted yet: it would reuse them.
     */
    if (--s->pf.conns == 0 && s->refs == 1) {
      /* Every connection of s has disowned it: nothing is queued or
       * in flight.  Its own contexts go; the next connection to
       * attach opens others.
       */
      assert (s->pf.ctx == NULL && !s->pf.queued && !s->pf.parked &&
              s->pf.running == 0);
      n = s->pf.nown;
      memcpy (ctx, s->pf.own, n * sizeof ctx[0]);
      s->pf.nown = 0;
      s->pf.own_tried = false;
    }
    last = --connections == 0 && nthreads > 0 && !pool_stop;
    /* Stopping from here on: a connection that opens and closes
     * before the join must not join the same threads again.
     */
    if (last)
      pool_stop = true;
  }
  close_contexts (ctx, n);
  /* No connection, no prefetch: no thread stays behind idle.  Every
   * owner has let go of its scopes (prefetch_disown), so no worker is
   * in a call.
   */
  if (last)
    pool_stop_and_join ();
}

void
prefetch_gate_free (struct gate *g)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  unpark_locked (g);
}

/* Scopes may still be queued here (nbdkit may unload with connections
 * not yet closed): no worker may start after this, as cache_free is
 * about to free them.
 */
void
prefetch_unload (void)
{
  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    pool_unloaded = true;
  }
  pool_stop_and_join ();
}
