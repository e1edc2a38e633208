/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: writes and flushes (see writes.h).
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
 *     kept as at most RANGE_SET_MAX ranges (a fixed array, so
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
 * Calls in flight are known here only by their watches (struct
 * write_watch, in start order): the oldest one's generation tells how
 * much of the log is still needed.
 *
 * Costs: a write or flush forgets in O(scopes * log n) and is logged
 * in amortised O(1); a store merges the writes that concern its call
 * once, O(k log k), then checks each answer extent in O(log k).
 */

#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "scope.h"
#include "stats.h"
#include "writes.h"

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
static struct write_op *writes_in_flight;
static struct flush_op *flushes_in_flight;
static struct write_log completed;      /* live from log_first on */
static size_t log_first;
static struct write_watch *oldest_watch; /* every call in flight, */
static struct write_watch *newest_watch; /* in start order */
static struct dirty_set *dirty_sets;    /* of every connection */
static struct range_set orphans;        /* unflushed, of closed ones */
static uint64_t write_gen;

void
writes_free (void)
{
  write_log_reset (&completed);
}

/* Sets of ranges (rule F). */

/* Sort by offset, then merge overlapping or touching ranges. */
static int
range_compare (const void *a, const void *b)
{
  const struct range *x = a, *y = b;

  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static size_t
ranges_merge (struct range *r, size_t n)
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

bool
range_overlap (const struct range *r, size_t n,
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
set_compact (struct range_set *rs)
{
  rs->n = ranges_merge (rs->r, rs->n);
  if (rs->n > RANGE_SET_MAX / 2) {
    rs->r[0].end = rs->r[rs->n-1].end;
    rs->n = 1;
  }
}

/* Add [offset, end) to a set. */
static void
set_add (struct range_set *rs, uint64_t offset, uint64_t end)
{
  struct range *last = rs->n ? &rs->r[rs->n-1] : NULL;

  if (last && offset <= last->end && last->offset <= end) {
    last->offset = CE_MIN (last->offset, offset);
    last->end = CE_MAX (last->end, end);
    return;
  }
  if (rs->n == RANGE_SET_MAX)
    set_compact (rs);
  rs->r[rs->n].offset = offset;
  rs->r[rs->n].end = end;
  rs->n++;
}

static void
set_add_all (struct range_set *to, const struct range_set *from)
{
  size_t i;

  for (i = 0; i < from->n; ++i)
    set_add (to, from->r[i].offset, from->r[i].end);
}

/* The write log (rule S). */

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
void
writes_trim_locked (void)
{
  if (oldest_watch == NULL) {
    log_clear_locked ();
    return;
  }
  while (log_first < completed.len &&
         completed.ptr[log_first].gen <= oldest_watch->start_gen)
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
poison_watches_locked (void)
{
  struct write_watch *ww, *newer;

  /* A poisoned call needs no log: it leaves the list, so that a long
   * call cannot hold the log full and so poison the calls after it.
   */
  for (ww = oldest_watch; ww; ww = newer) {
    newer = ww->newer;
    ww->poisoned = true;
    ww->older = ww->newer = NULL;
  }
  oldest_watch = newest_watch = NULL;
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
  struct range *r = malloc (n * sizeof *r);

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

  scope_forget_locked (offset, end);
  if (oldest_watch == NULL)
    return;                     /* no call to protect */
  if ((completed.len - log_first >= LOG_MAX && fold_log_locked () == -1) ||
      write_log_append (&completed, lw) == -1)
    poison_watches_locked ();
}

/* Writes (rule W). */

void
write_begin (struct write_op *w, uint64_t offset, uint64_t count)
{
  struct flush_op *fl;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  w->offset = CE_ROUND_DOWN (offset, cache_config.granularity);
  w->end = CE_ROUND_UP (offset + count, cache_config.granularity);
  CE_LIST_PUSH (writes_in_flight, w);
  /* A flush in flight may write this back too (rule F). */
  for (fl = flushes_in_flight; fl; fl = fl->next)
    set_add (&fl->set, w->offset, w->end);
  scope_forget_locked (w->offset, w->end);
}

void
write_end (struct write_op *w, struct dirty_set *d)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  CE_LIST_UNLINK (writes_in_flight, w);

  complete_range_locked (w->offset, w->end, ++write_gen);
  set_add (&d->set, w->offset, w->end);
  writes_trim_locked ();
  stats_count (NULL, STATS_INVALIDATIONS, 1);
  pthread_cond_broadcast (&cache_cond);
}

/* Flushes (rule F). */

void
dirty_register (struct dirty_set *d, bool multi_conn)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  d->set.n = 0;
  d->multi_conn = multi_conn;
  CE_LIST_PUSH (dirty_sets, d);
}

void
dirty_unregister (struct dirty_set *d)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  CE_LIST_UNLINK (dirty_sets, d);
  set_add_all (&orphans, &d->set);
}

void
flush_begin (struct flush_op *fl, struct dirty_set *d, bool fua)
{
  const struct write_op *w;
  struct dirty_set *o;
  size_t i;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  /* Everything unflushed, and the writes in flight.  A flush clears
   * its connection's set (every set with multi-conn, and what closed
   * connections left).  Without multi-conn, what a closed connection
   * left stays dirty for every later flush: the layers below close
   * after this filter, and one may write it back then, after a flush
   * of another connection has returned.  A write with FUA may make
   * the rest visible too (nbdkit emulates FUA with a flush) or not
   * (nbdkit's cache filter writes only that block through), so it
   * clears nothing.
   */
  fl->set = orphans;
  for (o = dirty_sets; o; o = o->next)
    set_add_all (&fl->set, &o->set);
  for (w = writes_in_flight; w; w = w->next)
    set_add (&fl->set, w->offset, w->end);
  if (!fua) {
    d->set.n = 0;
    if (d->multi_conn) {
      for (o = dirty_sets; o; o = o->next)
        o->set.n = 0;
      orphans.n = 0;
    }
  }
  CE_LIST_PUSH (flushes_in_flight, fl);
  for (i = 0; i < fl->set.n; ++i)
    scope_forget_locked (fl->set.r[i].offset, fl->set.r[i].end);
}

void
flush_end (struct flush_op *fl, struct dirty_set *d, bool ok)
{
  uint64_t gen;
  size_t i;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  CE_LIST_UNLINK (flushes_in_flight, fl);
  if (!ok)
    set_add_all (&d->set, &fl->set);
  if (fl->set.n == 0)
    return;

  gen = ++write_gen;
  for (i = 0; i < fl->set.n; ++i)
    complete_range_locked (fl->set.r[i].offset, fl->set.r[i].end, gen);
  writes_trim_locked ();
  pthread_cond_broadcast (&cache_cond);
}

/* Calls in flight (rule S). */

void
writes_watch_locked (struct write_watch *ww)
{
  ww->start_gen = write_gen;
  ww->poisoned = false;
  CE_QUEUE_APPEND (oldest_watch, newest_watch, ww, older, newer);
}

void
writes_unwatch_locked (struct write_watch *ww)
{
  if (!ww->poisoned)            /* else already off the list */
    CE_QUEUE_UNLINK (oldest_watch, newest_watch, ww, older, newer);
}

int
writes_blocked_locked (const struct write_watch *ww,
                       struct range **out, size_t *n)
{
  const struct write_op *w;
  const struct flush_op *fl;
  struct range *r;
  size_t lo = log_first, hi = completed.len, i, k;

  *out = NULL;
  *n = 0;
  if (ww->poisoned)
    return -1;
  /* The log is in generation order: what came after the call's start
   * is a suffix.
   */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (completed.ptr[mid].gen > ww->start_gen)
      hi = mid;
    else
      lo = mid + 1;
  }
  k = completed.len - lo;
  for (w = writes_in_flight; w; w = w->next)
    k++;
  for (fl = flushes_in_flight; fl; fl = fl->next)
    k += fl->set.n;
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

bool
writes_next_locked (uint64_t offset, struct range *r)
{
  const struct write_op *w;
  const struct flush_op *fl;
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
