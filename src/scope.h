/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: scopes, the maps they own, and the memory bound.
 *
 * A scope owns one extent map.  Connections to the same export (name
 * and TLS state) that are guaranteed to see the same data share one
 * scope; any other connection gets a private scope.  Scopes are never
 * matched across export names.  A shared scope whose connections have
 * all gone is kept "idle" while memory allows: its map and name count
 * against cacheextents-max-size and idle scopes are dropped least
 * recently used first.  Writes do not visit idle scopes; instead an
 * idle scope's map is dropped when it is attached again if anything
 * was forgotten while it was idle (see the design note in scope.c).
 *
 * A scope also holds what its answers taught about the export's
 * density, from which calls are sized (flight.h), and prefetch's state
 * (struct prefetch_scope, which only prefetch.c reads).
 *
 * Locking: every field and every function named *_locked is under
 * cache_lock (cache.h); the others take it themselves.
 */

#ifndef CACHEEXTENTS_SCOPE_H
#define CACHEEXTENTS_SCOPE_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "map.h"
#include "prefetch.h"

struct flight;

struct scope {
  /* All fields are protected by cache_lock. */
  struct scope *prev, *next;    /* on the active or the idle list */
  uint64_t idle_forgets;        /* forgets when it went idle */
  char *exportname;
  int is_tls;
  bool shared;                  /* may be attached by several connections */
  uint64_t size;                /* export size */
  unsigned refs;                /* connections attached */
  struct map *map;
  struct flight *flights;       /* backend calls in flight (flight.c) */
  uint64_t bytes_per_extent;    /* density learned from answers */
  uint64_t window_cap;          /* adaptive bound on a call's size */
  bool calibrated;              /* one answer has set window_cap */
  struct prefetch_scope pf;     /* prefetch's (prefetch.h) */
};

/* A first call on an export nobody has asked yet is sized as if every
 * extent covered this many bytes.
 */
#define SCOPE_FIRST_BYTES_PER_EXTENT 4096

extern int scope_init (void);
/* Free every scope, attached or idle (at .unload: nbdkit may unload
 * without closing the connections once it is quitting).
 */
extern void scope_free_all (void);

/* Attach a connection to a scope, creating it if needed.  'can_share'
 * says whether the backend guarantees that every connection to the
 * export sees the same data (it reports multi-conn, or nothing can
 * write through this server).  Returns NULL on error (nbdkit_error
 * called).
 */
extern struct scope *scope_attach (const char *exportname, int is_tls,
                                   bool can_share, uint64_t size);
/* The reverse; private scopes are freed here, shared ones go idle (or
 * are freed if their map is empty).  Prefetch must have let go of the
 * scope if this is its last connection (prefetch_connection).
 */
extern void scope_detach (struct scope *s);

/* Forget, in every attached scope, each extent that overlaps
 * [offset, end), and count the forget for the idle scopes.
 */
extern void scope_forget_locked (uint64_t offset, uint64_t end);

/* Bytes of memory counted against cacheextents-max-size: every map's
 * extents and every scope's own memory.
 */
extern uint64_t scope_bytes_locked (void);
/* Honour the bound: idle scopes first, then extents. */
extern void scope_evict_locked (void);

/* Extents one answer should hold at most: 1/16 of the bound. */
extern uint64_t scope_answer_budget (void);
/* Size s's calls from a density (bytes per extent): they are to hold
 * about scope_answer_budget () extents.
 */
extern void scope_set_density_locked (struct scope *s,
                                      uint64_t bytes_per_extent);

#endif /* CACHEEXTENTS_SCOPE_H */
