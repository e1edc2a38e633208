/* cacheextents: background prefetch workers.
 *
 * Each worker loops, under cache_lock except during its backend call:
 *
 *   1. If a client missed since the worker last looked, move the
 *      cursor to the end of that miss's window: the client is there,
 *      so that is what it will ask next.
 *   2. Stop fetching while the maps use 7/8 of cacheextents-max-size
 *      or more: reading further ahead would evict what clients have
 *      not used yet.
 *   3. Find the first byte at or after the cursor that is neither known
 *      nor being fetched (wrapping to the start of the export once);
 *      if there is none, sleep until something changes.
 *   4. Fetch one window there as a flight and advance the cursor.
 *
 * Several workers share one cursor, so they fetch consecutive windows
 * in parallel.  A failed call is logged, stores nothing, and the worker
 * backs off (doubling from 10 ms up to 2 s); clients never see it.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "prefetch.h"
#include "stats.h"

NBDKIT_DLL_PUBLIC int cacheextents_debug_prefetch = 0;

#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 2000

struct prefetch {
  /* Set before the workers start, then read-only. */
  struct scope *scope;
  const void *owner;
  unsigned nthreads;
  pthread_t threads[PREFETCH_MAX_THREADS];
  unsigned started;             /* threads created */

  /* Protected by cache_lock. */
  bool stop;
  uint64_t cursor;              /* where the next window starts */
  uint64_t seen_miss_end;       /* scope->last_miss_end acted upon */
};

struct worker {
  struct prefetch *p;
  nbdkit_next *next;
};

/* Sleep up to ms milliseconds on cache_cond, or until told to stop. */
static void
backoff_wait_locked (struct prefetch *p, unsigned ms)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long) (ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  while (!p->stop &&
         pthread_cond_timedwait (&cache_cond, &cache_lock, &ts) == 0)
    ;
}

/* Step 1-3 of the loop: where to fetch next, or the export size. */
static uint64_t
next_target_locked (struct prefetch *p)
{
  struct scope *s = p->scope;
  uint64_t start;

  if (s->last_miss_end != p->seen_miss_end) {
    p->seen_miss_end = s->last_miss_end;
    p->cursor = s->last_miss_end;
  }
  if (cache_bytes_locked () >= cache_config.max_size / 8 * 7)
    return s->size;
  /* Wait for the first answer (the client's own miss) to size the
   * calls (cache.c): on a densely fragmented disk nine full windows
   * at once could hold millions of extents.
   */
  if (!s->calibrated)
    return s->size;
  start = cache_next_unknown_locked (s, p->cursor);
  if (start >= s->size && p->cursor > 0)
    start = cache_next_unknown_locked (s, 0);
  return start;
}

static void *
worker_thread (void *arg)
{
  struct worker *w = arg;
  struct prefetch *p = w->p;
  struct scope *s = p->scope;
  unsigned backoff = 0;

  pthread_mutex_lock (&cache_lock);
  while (!p->stop) {
    uint64_t start = next_target_locked (p), end;
    int err = 0;

    if (start >= s->size) {
      pthread_cond_wait (&cache_cond, &cache_lock);
      continue;
    }
    end = cache_window_end_locked (s, 0, start);
    p->cursor = end;
    stats_count (NULL, STATS_PREFETCH_CALLS, 1);
    if (cacheextents_debug_prefetch)
      nbdkit_debug ("cacheextents: prefetch offset=%" PRIu64
                    " count=%" PRIu64, start, end - start);
    if (cache_fetch_locked (s, w->next, start, end, true, NULL, &err) == 0) {
      backoff = 0;
      continue;
    }
    backoff = backoff ? CE_MIN (backoff * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
    nbdkit_debug ("cacheextents: prefetch at offset %" PRIu64 " failed: "
                  "%s; retrying in %u ms", start, strerror (err), backoff);
    backoff_wait_locked (p, backoff);
  }
  pthread_mutex_unlock (&cache_lock);
  free (w);
  return NULL;
}

void
prefetch_start (struct scope *s, const void *owner, nbdkit_next *next,
                uint32_t count, uint64_t offset)
{
  struct prefetch *p;
  unsigned i;

  if (!cache_config.prefetch)
    return;
  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    if (s->prefetch || s->prefetch_failed)
      return;
    p = calloc (1, sizeof *p);
    if (p == NULL) {
      s->prefetch_failed = true;
      return;
    }
    p->scope = s;
    p->owner = owner;
    p->nthreads = cache_config.prefetch_threads;
    p->cursor = cache_window_end_locked (s, count, offset);
    p->seen_miss_end = s->last_miss_end;
    s->prefetch = p;            /* claimed: nobody else starts one */
  }

  for (i = 0; i < p->nthreads; ++i) {
    struct worker *w = malloc (sizeof *w);
    int err;

    if (w == NULL)
      break;
    w->p = p;
    w->next = next;
    err = pthread_create (&p->threads[i], NULL, worker_thread, w);
    if (err) {
      free (w);
      break;
    }
    p->started++;
  }
  if (p->started == 0) {
    nbdkit_debug ("cacheextents: prefetch could not start a thread");
    pthread_mutex_lock (&cache_lock);
    s->prefetch = NULL;
    s->prefetch_failed = true;
    pthread_mutex_unlock (&cache_lock);
    free (p);
    return;
  }
  if (cacheextents_debug_prefetch)
    nbdkit_debug ("cacheextents: prefetch started, %u workers", p->started);
}

void
prefetch_stop (struct scope *s, const void *owner)
{
  struct prefetch *p;
  unsigned i;

  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    p = s->prefetch;
    if (p == NULL || p->owner != owner)
      return;
    p->stop = true;
    pthread_cond_broadcast (&cache_cond);
  }
  for (i = 0; i < p->started; ++i)
    pthread_join (p->threads[i], NULL);
  {
    CE_LOCK_FOR_SCOPE (&cache_lock);
    s->prefetch = NULL;
  }
  if (cacheextents_debug_prefetch)
    nbdkit_debug ("cacheextents: prefetch stopped");
  free (p);
}
