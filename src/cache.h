/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: the cache proper.
 *
 * Scoping: a scope owns one extent map.  Connections to the same
 * export (name and TLS state) that are guaranteed to see the same
 * data share one scope; any other connection gets a private scope.
 * Scopes are never matched across export names.  A shared scope whose
 * connections have all gone is kept "idle" while memory allows: its
 * map and name count against cacheextents-max-size and idle scopes are
 * dropped least recently used first.  Writes do not visit idle scopes;
 * instead an idle scope's map is dropped when it is attached again if
 * any write or flush started while it was idle.
 *
 * Writes: every pwrite, trim and zero is bracketed by
 * cache_write_begin and cache_write_end, which forget every cached
 * extent, in every scope, that overlaps the written range.  A backend
 * answer is stored only for extents that no write overlapped while
 * the call was in flight (see the design note in cache.c).
 *
 * Flushes: every flush, and every write with FUA, is bracketed by
 * cache_flush_begin and cache_flush_end, which do the same for every
 * range written since the previous flush (rule F in cache.c).
 *
 * Single flight: a miss registers its backend call as a "flight";
 * other misses whose offset lies in a flight's window wait for it
 * instead of calling the backend themselves.
 *
 * Locking: one mutex, cache_lock, protects every scope, map, flight,
 * the write log and the LRU domain.  It is never held across a
 * backend call.  Functions named *_locked expect it held; all others
 * take it themselves.
 */

#ifndef CACHEEXTENTS_CACHE_H
#define CACHEEXTENTS_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include <nbdkit-filter.h>
#include <nbdkit-version.h>

#include "gate.h"
#include "stats.h"

#define CE_NBDKIT_AT_LEAST(major, minor, micro)                         \
  (NBDKIT_VERSION_MAJOR > (major) ||                                    \
   (NBDKIT_VERSION_MAJOR == (major) &&                                  \
    (NBDKIT_VERSION_MINOR > (minor) ||                                  \
     (NBDKIT_VERSION_MINOR == (minor) && NBDKIT_VERSION_MICRO >= (micro)))))

/* Since nbdkit 1.43.9 a context a filter opens itself (shared) knows
 * its own export name, so prefetch can have contexts of its own; and
 * a filter's .thread_model is told the model of the layers below it.
 */
#define CACHE_OWN_CONTEXTS CE_NBDKIT_AT_LEAST (1, 43, 9)
#define CACHE_BELOW_MODEL CE_NBDKIT_AT_LEAST (1, 43, 9)
#define CACHE_MAX_CONTEXTS 16

enum scope_mode { SCOPE_AUTO, SCOPE_EXPORT, SCOPE_CONNECTION };

/* Configuration, set by .config and read-only afterwards. */
struct cache_config {
  uint64_t window;              /* minimum bytes asked of the backend */
  uint64_t granularity;         /* writes invalidate in these units */
  uint64_t max_size;            /* bound on the maps' memory */
  enum scope_mode scope;
  bool prefetch;
  unsigned prefetch_threads;     /* the pool's workers */
  unsigned prefetch_contexts;    /* own contexts per shared scope */
  /* The layers below are not parallel (set in .get_ready): every call
   * through a client's context passes that connection's gate (gate.h).
   */
  bool gated;
};
extern struct cache_config cache_config;

/* Largest count passed to the backend: below 4 GiB, 1 MiB aligned. */
#define CACHE_MAX_COUNT UINT32_C (0xfff00000)

struct scope {
  /* All fields are protected by cache_lock. */
  struct scope *prev, *next;    /* on the active or the idle list */
  uint64_t idle_gen;            /* writes_started when it went idle */
  char *exportname;
  int is_tls;
  bool shared;                  /* may be attached by several connections */
  uint64_t size;                /* export size */
  unsigned refs;                /* connections attached */
  struct map *map;
  struct flight *flights;       /* backend calls in flight for this scope */
  /* Prefetch (see prefetch.h). */
  struct scope *pf_qprev, *pf_qnext; /* on the ready or parked queue */
  bool pf_queued;               /* on the ready queue */
  bool pf_parked;               /* on the parked queue: waits for pf_gate */
  const void *pf_owner;         /* connection whose context it uses */
  nbdkit_next *pf_ctx;          /* that context, or NULL: no prefetch */
  struct gate *pf_gate;         /* that connection's gate, if gated */
  unsigned pf_running;          /* prefetch calls in flight */
  unsigned pf_draining;         /* prefetch_disown calls waiting */
  uint64_t pf_cursor;           /* where to look for the next window */
  uint64_t pf_front;            /* where it was before going back to a
                                 * gap (prefetch_note), or 0 */
  uint64_t pf_horizon;          /* read ahead up to here, no further */
  uint64_t pf_ahead;            /* how far past a request to read ahead */
  uint64_t pf_last;             /* offset of the latest client request */
  nbdkit_next *pf_own[CACHE_MAX_CONTEXTS]; /* contexts of its own */
  unsigned pf_nown;             /* how many, 0 if none */
  unsigned pf_own_busy;         /* bit i: pf_own[i] has a call */
  bool pf_own_tried;            /* opened (or tried) since attached */
  uint64_t bytes_per_extent;    /* density learned from answers */
  uint64_t window_cap;          /* adaptive bound on a call's size */
  bool calibrated;              /* one answer has set window_cap */
};

/* A write in progress (lives on the writer's stack). */
struct cache_write {
  struct cache_write *prev, *next;
  uint64_t offset, end;
};

/* A set of byte ranges of bounded size: past CACHE_RANGES_MAX ranges
 * they are merged, so the set may grow to cover more, never less.
 */
#define CACHE_RANGES_MAX 64
struct cache_range {
  uint64_t offset, end;
};
struct cache_ranges {
  struct cache_range r[CACHE_RANGES_MAX];
  size_t n;
};

/* What one connection wrote since its last flush (rule F), registered
 * from .prepare to .close.  'multi_conn': the backend says a flush on
 * one connection makes every connection's writes visible.  The set is
 * protected by cache_lock.
 */
struct cache_dirty {
  struct cache_dirty *prev, *next;
  struct cache_ranges set;
  bool multi_conn;
};

/* A flush in progress (lives on the flusher's stack): what it may make
 * visible, that is every range written and not yet flushed when it
 * started, and every range written while it is in flight.
 */
struct cache_flush {
  struct cache_flush *prev, *next;
  struct cache_ranges set;
};

extern pthread_mutex_t cache_lock;
/* Broadcast (with cache_lock) when a flight finishes, a write or
 * flush completes, or a prefetch call ends.
 */
extern pthread_cond_t cache_cond;

extern int cache_init (void);
extern void cache_free (void);

/* Attach a connection to a scope, creating it if needed.  'can_share'
 * says whether the backend guarantees that every connection to the
 * export sees the same data (it reports multi-conn, or nothing can
 * write through this server).  Returns NULL on error (nbdkit_error
 * called).
 */
extern struct scope *cache_scope_attach (const char *exportname, int is_tls,
                                         bool can_share, uint64_t size);
/* The reverse; private scopes are freed here, shared ones go idle (or
 * are freed if their map is empty).  Prefetch must already be stopped
 * if this connection owned it.  Contexts prefetch opened for the scope
 * are closed when it goes idle or is freed (after the lock is let go).
 */
extern void cache_scope_detach (struct scope *s);

/* The .extents path.  g: the connection's gate, or NULL if not gated.
 * Only a miss passes it; a request that waits for a flight announces
 * itself on it first (gate_expect), and gives that back if the flight's
 * answer serves it (a hit calls no backend).
 */
extern int cache_extents (struct scope *s, nbdkit_next *next,
                          struct gate *g, uint32_t count, uint64_t offset, uint32_t flags,
                          struct nbdkit_extents *extents,
                          struct stats *conn_stats, int *err);

extern void cache_dirty_register (struct cache_dirty *d, bool multi_conn);
/* What is left unflushed stays dirty for every later flush. */
extern void cache_dirty_unregister (struct cache_dirty *d);

/* The writer's dirty set d gets the range when the write ends. */
extern void cache_write_begin (struct cache_write *w,
                               uint64_t offset, uint64_t count);
extern void cache_write_end (struct cache_write *w, struct cache_dirty *d);

/* A flush by the connection whose dirty set is d, or (fua) a write
 * with FUA.  ok: the flush or write succeeded; if not, what it took
 * stays dirty.
 */
extern void cache_flush_begin (struct cache_flush *fl, struct cache_dirty *d,
                               bool fua);
extern void cache_flush_end (struct cache_flush *fl, struct cache_dirty *d,
                             bool ok);

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
extern int cache_fetch_locked (struct scope *s, nbdkit_next *next,
                               struct gate *g, uint64_t start, uint64_t end, bool prefetch,
                               struct nbdkit_extents **answer, int *err);

/* Is the byte at offset neither known nor being fetched, nor covered
 * by a write or flush in flight?  O(log n) plus the flights of s and
 * the writes in flight.  Lock held.
 */
extern bool cache_unknown_at_locked (const struct scope *s, uint64_t offset);

/* For the prefetch worker: the first unknown byte at or after offset
 * and below limit (at most the export end) that no flight is already
 * fetching and no write or flush in flight covers, or limit if there
 * is none.  *write_start is set to where the first write or flush in
 * flight after that byte starts (UINT64_MAX if none): a prefetch call
 * ends there, so that rule S keeps all of its answer.  Lock held.
 */
extern uint64_t cache_next_unknown_locked (struct scope *s, uint64_t offset,
                                           uint64_t limit,
                                           uint64_t *write_start);

/* Bytes of memory counted against cacheextents-max-size: every map's
 * extents and every scope's own memory.  Lock held.
 */
extern uint64_t cache_bytes_locked (void);

/* True while the answers in flight may together hold as many extents
 * as the bound allows; prefetch then waits.  Lock held.
 */
extern bool cache_inflight_full_locked (void);

/* The end of the window a miss at 'offset' asks for: at least count
 * bytes and cacheextents-window, but no more than the scope's answers
 * allow for (bytes_per_extent) and the extents in flight leave room
 * for, and never past the export end.  Lock held.
 */
extern uint64_t cache_window_end_locked (const struct scope *s,
                                         uint32_t count, uint64_t offset);

#endif /* CACHEEXTENTS_CACHE_H */
