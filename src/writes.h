/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: writes and flushes, rules W, S and F (see writes.c).
 *
 * Writes: every pwrite, trim and zero is bracketed by write_begin and
 * write_end, which forget every cached extent, in every scope, that
 * overlaps the written range.  A backend answer is stored only for
 * extents that no write overlapped while the call was in flight: each
 * call registers a watch (writes_watch_locked) when it starts, and
 * asks what it may not store over (writes_blocked_locked) when its
 * answer comes.
 *
 * Flushes: every flush, and every write with FUA, is bracketed by
 * flush_begin and flush_end, which do the same for every range
 * written since the previous flush.
 *
 * Locking: the structures below are protected by cache_lock
 * (cache.h); functions named *_locked expect it held, the others take
 * it themselves.  None calls the backend.
 */

#ifndef CACHEEXTENTS_WRITES_H
#define CACHEEXTENTS_WRITES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A set of byte ranges of bounded size: past RANGE_SET_MAX ranges
 * they are merged, so the set may grow to cover more, never less.
 */
#define RANGE_SET_MAX 64
struct range {
  uint64_t offset, end;
};
struct range_set {
  struct range r[RANGE_SET_MAX];
  size_t n;
};

/* A write in progress (lives on the writer's stack). */
struct write_op {
  struct write_op *prev, *next;
  uint64_t offset, end;
};

/* What one connection wrote since its last flush (rule F), registered
 * from .prepare to .close.  'multi_conn': the backend says a flush on
 * one connection makes every connection's writes visible.
 */
struct dirty_set {
  struct dirty_set *prev, *next;
  struct range_set set;
  bool multi_conn;
};

/* A flush in progress (lives on the flusher's stack): what it may make
 * visible, that is every range written and not yet flushed when it
 * started, and every range written while it is in flight.
 */
struct flush_op {
  struct flush_op *prev, *next;
  struct range_set set;
};

/* A backend call in flight, as rule S sees it (struct flight holds
 * one): the generation of writes it started at.
 */
struct write_watch {
  struct write_watch *older, *newer; /* every watch, in start order */
  uint64_t start_gen;
  bool poisoned;                /* store nothing from this call */
};

extern void dirty_register (struct dirty_set *d, bool multi_conn);
/* What is left unflushed stays dirty for every later flush. */
extern void dirty_unregister (struct dirty_set *d);

/* The writer's dirty set d gets the range when the write ends. */
extern void write_begin (struct write_op *w, uint64_t offset, uint64_t count);
extern void write_end (struct write_op *w, struct dirty_set *d);

/* A flush by the connection whose dirty set is d, or (fua) a write
 * with FUA.  ok: the flush or write succeeded; if not, what it took
 * stays dirty.
 */
extern void flush_begin (struct flush_op *fl, struct dirty_set *d, bool fua);
extern void flush_end (struct flush_op *fl, struct dirty_set *d, bool ok);

/* At .unload. */
extern void writes_free (void);

/* A call starts: it may store only what no write after now overlaps. */
extern void writes_watch_locked (struct write_watch *ww);
/* The call's answer has come.  Then writes_blocked_locked, then
 * writes_trim_locked: the log must still hold what the call needs.
 */
extern void writes_unwatch_locked (struct write_watch *ww);
/* What the call's answer may not be stored over: every write and
 * flush in flight, and every one that completed after the call
 * started, merged and sorted into *out (malloc'd, *n of them, for
 * range_overlap).  Returns -1 if the call may store nothing at all
 * (out of memory, now or earlier).
 */
extern int writes_blocked_locked (const struct write_watch *ww,
                                  struct range **out, size_t *n);
/* Drop what no call in flight needs from the log. */
extern void writes_trim_locked (void);

/* Does [offset, end) overlap one of n sorted, merged ranges?
 * O(log n).
 */
extern bool range_overlap (const struct range *r, size_t n,
                           uint64_t offset, uint64_t end);

/* Of the ranges writes and flushes in flight cover, the one that
 * starts first among those that end after offset, in *r.  It covers
 * offset if it starts at or before it; if not, nothing does, and it
 * is the first to start after offset.  False if there is none.
 * O(writes and flushed ranges in flight).
 */
extern bool writes_next_locked (uint64_t offset, struct range *r);

#endif /* CACHEEXTENTS_WRITES_H */
