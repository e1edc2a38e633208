/* cacheextents: the cache proper.
 *
 * Scoping: a scope owns one extent map.  Connections to the same
 * export (name and TLS state) that are guaranteed to see the same
 * data share one scope; any other connection gets a private scope.
 * Scopes are never matched across export names.
 *
 * Writes: every pwrite, trim and zero is bracketed by
 * cache_write_begin and cache_write_end, which forget every cached
 * extent, in every scope, that overlaps the written range.  A backend
 * answer is stored only for extents that no write overlapped while
 * the call was in flight (see the design note in cache.c).
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

#include "stats.h"

enum scope_mode { SCOPE_AUTO, SCOPE_EXPORT, SCOPE_CONNECTION };

/* Configuration, set by .config and read-only afterwards. */
struct cache_config {
  uint64_t window;              /* minimum bytes asked of the backend */
  uint64_t granularity;         /* writes invalidate in these units */
  uint64_t max_size;            /* bound on the maps' memory */
  enum scope_mode scope;
  bool prefetch;
  unsigned prefetch_threads;
};
extern struct cache_config cache_config;

/* Largest count passed to the backend: below 4 GiB, 1 MiB aligned. */
#define CACHE_MAX_COUNT UINT32_C (0xfff00000)

struct prefetch;

struct scope {
  /* All fields are protected by cache_lock. */
  struct scope *next;           /* list of all scopes */
  char *exportname;
  int is_tls;
  bool shared;                  /* may be attached by several connections */
  uint64_t size;                /* export size */
  unsigned refs;                /* connections attached */
  struct map *map;
  struct flight *flights;       /* backend calls in flight for this scope */
  struct prefetch *prefetch;    /* running workers, or NULL */
  bool prefetch_failed;         /* could not start: do not retry */
  uint64_t last_miss_end;       /* end of the last client miss's window */
  uint64_t window_cap;          /* adaptive bound on a call's size */
  bool calibrated;              /* one answer has set window_cap */
};

/* A write in progress (lives on the writer's stack). */
struct cache_write {
  struct cache_write *prev, *next;
  uint64_t offset, end;
};

extern pthread_mutex_t cache_lock;
/* Broadcast (with cache_lock) when a flight finishes, a client misses,
 * a write completes or prefetch workers are told to stop.
 */
extern pthread_cond_t cache_cond;

extern int cache_init (void);
extern void cache_free (void);

/* Attach a connection to a scope, creating it if needed.  'multi_conn'
 * is what the backend reported for this connection.  Returns NULL on
 * error (nbdkit_error called).
 */
extern struct scope *cache_scope_attach (const char *exportname, int is_tls,
                                         int multi_conn, uint64_t size);
/* The reverse; private scopes are freed here.  Prefetch must already
 * be stopped if this connection owned it.
 */
extern void cache_scope_detach (struct scope *s);

/* The .extents path. */
extern int cache_extents (struct scope *s, nbdkit_next *next,
                          uint32_t count, uint64_t offset, uint32_t flags,
                          struct nbdkit_extents *extents,
                          struct stats *conn_stats, int *err);

extern void cache_write_begin (struct cache_write *w,
                               uint64_t offset, uint64_t count);
extern void cache_write_end (struct cache_write *w);

/* Called with cache_lock held and returns with it held, but drops it
 * around the backend call.  Fetches [start, end) from 'next' as a
 * flight, stores what may be stored (a prefetch store never evicts),
 * and returns 0 or -1 with *err set.  On success the answer is left
 * in *answer if answer is non-NULL (the caller frees it).
 */
extern int cache_fetch_locked (struct scope *s, nbdkit_next *next,
                               uint64_t start, uint64_t end, bool prefetch,
                               struct nbdkit_extents **answer, int *err);

/* For the prefetch worker: the first unknown byte at or after offset
 * (below the export end) that no flight is already fetching, or the
 * export size if there is none.  Lock held.
 */
extern uint64_t cache_next_unknown_locked (struct scope *s, uint64_t offset);

/* Bytes of map memory in use, all scopes.  Lock held. */
extern uint64_t cache_bytes_locked (void);

/* The end of the window a miss at 'offset' asks for.  Lock held. */
extern uint64_t cache_window_end_locked (const struct scope *s,
                                         uint32_t count, uint64_t offset);

#endif /* CACHEEXTENTS_CACHE_H */
