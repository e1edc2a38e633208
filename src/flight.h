/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: backend calls in flight and storing their answers.
 *
 * Single flight: a miss registers its backend call as a "flight" of
 * its scope; other misses whose offset lies in a flight's window wait
 * for it instead of calling the backend themselves.  Prefetch makes
 * its calls as flights too.  When the answer comes, what rule S
 * (writes.h) allows is stored in the scope's map, and the answer tells
 * the scope's density (scope_set_density_locked), from which the next
 * calls are sized.
 *
 * Locking: everything here is under cache_lock (cache.h).
 * flight_fetch_locked drops it around the backend call; nothing else
 * here does.
 */

#ifndef CACHEEXTENTS_FLIGHT_H
#define CACHEEXTENTS_FLIGHT_H

#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "writes.h"

struct gate;
struct scope;

/* A backend extents call in progress. */
struct flight {
  struct flight *next;          /* in scope->flights while not done */
  struct write_watch watch;     /* what it may store (rule S) */
  uint64_t start, end;          /* the window asked for */
  uint64_t reserved;            /* extents counted in flight (room) */
  bool done;
  unsigned refs;                /* the caller plus waiters */
};

/* Called with cache_lock held and returns with it held, but drops it
 * around the backend call.  Fetches [start, end) from 'next' as a
 * flight, stores what may be stored (a prefetch store never evicts),
 * and returns 0 or -1 with *err set.  On success the answer is left
 * in *answer if answer is non-NULL (the caller frees it).  g, if not
 * NULL, is the gate the call must pass, and the caller has announced
 * itself on it (gate_expect); the call enters it without the lock
 * (gate_enter_expected), or, on a path that makes no backend call (out
 * of memory), gives the expectation back (gate_unexpect): every path
 * uses it up.  Prefetch, which only tries gates, takes it itself and
 * passes NULL.
 */
extern int flight_fetch_locked (struct scope *s, nbdkit_next *next,
                                struct gate *g, uint64_t start, uint64_t end,
                                bool prefetch, struct nbdkit_extents **answer,
                                int *err);

/* The flight of s whose window holds offset, or NULL. */
extern struct flight *flight_covering_locked (const struct scope *s,
                                              uint64_t offset);
/* Wait until f is done (cache_lock is dropped while waiting). */
extern void flight_wait_locked (struct flight *f);

/* The end of the window a miss at 'offset' asks for: at least count
 * bytes and cacheextents-window, but no more than the scope's answers
 * allow for (bytes_per_extent) and the extents in flight leave room
 * for, and never past the export end.
 */
extern uint64_t flight_window_end_locked (const struct scope *s,
                                          uint32_t count, uint64_t offset);

/* True while the answers in flight may together hold as many extents
 * as the bound allows; prefetch then waits.
 */
extern bool flight_room_full_locked (void);

/* Is the byte at offset neither known nor being fetched, nor covered
 * by a write or flush in flight?  O(log n) plus the flights of s and
 * the writes in flight.
 */
extern bool flight_unknown_at_locked (const struct scope *s, uint64_t offset);

/* For the prefetch worker: the first unknown byte at or after offset
 * and below limit (at most the export end) that no flight is already
 * fetching and no write or flush in flight covers, or limit if there
 * is none.  *write_start is set to where the first write or flush in
 * flight after that byte starts (UINT64_MAX if none): a prefetch call
 * ends there, so that rule S keeps all of its answer.
 */
extern uint64_t flight_next_unknown_locked (struct scope *s, uint64_t offset,
                                            uint64_t limit,
                                            uint64_t *write_start);

#endif /* CACHEEXTENTS_FLIGHT_H */
