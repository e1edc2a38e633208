/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: the cache, and what all of its rooms share.
 *
 * The cache is four rooms, each with its own design note:
 *
 *   scope.c   which connections share a map, idle scopes, the memory
 *             bound and eviction, the density each scope has learned;
 *   writes.c  rules W, S and F: writes and flushes in flight, the log
 *             of writes that calls in flight must not store over,
 *             every connection's dirty ranges;
 *   flight.c  backend calls in flight (single flight), storing an
 *             answer, how large a call may be;
 *   cache.c   the .extents path: hit, wait for a flight, or miss.
 *
 * Calls go one way, from the bottom up: writes.c calls scope.c (to
 * forget), flight.c calls scope.c and writes.c, cache.c calls all
 * three.  Prefetch (prefetch.h) calls into scope.c and flight.c; the
 * cache calls prefetch only through the events below, which the glue
 * hands to cache_init, so no file of the cache calls a function of
 * prefetch.c by name.
 *
 * Locking: one mutex, cache_lock, protects every scope, map, flight,
 * the write log, the dirty sets, the LRU domain and prefetch's state.
 * It is never held across a backend call.  Functions named *_locked
 * expect it held; all others take it themselves.
 */

#ifndef CACHEEXTENTS_CACHE_H
#define CACHEEXTENTS_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include <nbdkit-filter.h>
#include <nbdkit-version.h>

struct gate;
struct scope;
struct stats;

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

extern int cacheextents_debug_cache;

extern pthread_mutex_t cache_lock;
/* Broadcast (with cache_lock) when a flight finishes, a write or
 * flush completes, or a prefetch call ends.
 */
extern pthread_cond_t cache_cond;

/* The connection a block status request comes from. */
struct cache_client {
  const void *owner;            /* its handle */
  nbdkit_next *next;            /* its context */
  struct gate *gate;            /* its gate, or NULL if not gated */
  struct stats *stats;          /* its counters */
};

/* What the cache tells the room that reads ahead (prefetch.c
 * implements them).  Each is called with cache_lock held, must not
 * drop it, and makes no backend call.
 */
struct cache_events {
  /* A client request [offset, offset+count) on s, about to be looked
   * up in the map.
   */
  void (*request_locked) (struct scope *s, const struct cache_client *c,
                          uint32_t count, uint64_t offset);
  /* An answer has just told s's density for the first time. */
  void (*calibrated_locked) (struct scope *s);
  /* s, idle, is attached again but its map was dropped: the export
   * changed size or may have been written meanwhile.
   */
  void (*reset_locked) (struct scope *s);
};
extern const struct cache_events *cache_events;

/* From .config_complete: the memory domain of the maps, and who
 * listens to the events.  Returns -1 on error (nbdkit_error called).
 */
extern int cache_init (const struct cache_events *events);
/* At .unload, after prefetch has stopped. */
extern void cache_free (void);

/* The .extents path.  Only a miss passes the client's gate; a request
 * that waits for a flight announces itself on it first (gate_expect),
 * and gives that back if the flight's answer serves it (a hit calls no
 * backend).
 */
extern int cache_extents (struct scope *s, const struct cache_client *c,
                          uint32_t count, uint64_t offset, uint32_t flags,
                          struct nbdkit_extents *extents, int *err);

#endif /* CACHEEXTENTS_CACHE_H */
