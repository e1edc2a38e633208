/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: background prefetch.
 *
 * One pool of worker threads for the whole server fills the maps ahead
 * of the clients.  Work is explicit: a client request on a scope
 * (the request event, note_locked in prefetch.c) moves the scope's
 * horizon to a bounded distance past the request and, if there is
 * something to fetch below it, posts the scope on the pool's ready
 * queue.  A worker takes a scope from the
 * queue, claims the next window at the scope's cursor, posts the scope
 * again if more is left (so other workers fetch the following windows
 * in parallel), and makes the call as a flight (flight.h).  When the
 * cursor reaches the horizon the scope simply stops being posted:
 * prefetch follows the clients' demand and stops when they are idle.
 *
 * Who starts and stops what: the pool's threads are started by the
 * first request and stopped when the last connection closes
 * (prefetch_connection) or at .unload (prefetch_unload).  They never
 * belong to a connection.
 *
 * Backend context: on nbdkit >= 1.43.9 a shared scope gets contexts of
 * its own (cacheextents-prefetch-contexts of them, opened with shared
 * set for the scope's export name by the connection that attached it,
 * in its .prepare, and closed when its last connection closes), so
 * prefetch runs in parallel even on a plugin that serves one request at
 * a time per context, and never queues in front of a client's own
 * requests.  Otherwise (private scopes, older nbdkit: 1.32 cannot open
 * a second per-connection context into a plugin, and its shared
 * contexts cannot tell export names apart) the workers call through
 * the context of one connection attached to the scope.  Either way a
 * scope prefetches only while it has an "owner", the first connection
 * that asks something once there is none; when the owner finalizes
 * (prefetch_disown), the scope is taken off the queue and its calls in
 * flight are waited for; the next request of another connection of the
 * scope makes that one the owner.
 *
 * Thread models (cacheextents.c, .get_ready): when the layers below
 * are not parallel, a call through the owner's context must pass the
 * owner's gate (gate.h).  The scope then has at most one call in
 * flight through that context, a worker only tries the gate, and a
 * scope whose gate is busy waits on the parked queue, off the ready
 * queue, until the client lets the gate go (prefetch_gate_free).  Its
 * own contexts need no gate: each has at most one call at a time.
 *
 * How it hears of the clients: the cache tells it of each request and
 * of the first answer that told an export's density through the
 * events of cache.h (prefetch_events), with cache_lock held; the glue
 * tells it of connections, gates and owners going away.  It calls
 * the cache (flight.h, scope.h), never the other way round.
 *
 * Locking: everything here is protected by cache_lock; the functions
 * below take it themselves and must be called without it.
 */

#ifndef CACHEEXTENTS_PREFETCH_H
#define CACHEEXTENTS_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "cache.h"

struct gate;
struct scope;

/* At most this many workers (cacheextents-prefetch-threads). */
#define PREFETCH_MAX_THREADS 64
/* At most this many contexts of its own per scope
 * (cacheextents-prefetch-contexts).
 */
#define PREFETCH_MAX_CONTEXTS 16

/* Prefetch's state of one scope (struct scope holds one as 'pf'),
 * protected by cache_lock.  The scope room zeroes it when the scope is
 * made and never reads it; see prefetch.c for what the positions mean.
 */
struct prefetch_scope {
  struct scope *qprev, *qnext;  /* on the ready or parked queue */
  bool queued;                  /* on the ready queue */
  bool parked;                  /* on the parked queue: waits for gate */
  unsigned conns;               /* connections prepared on the scope */
  const void *owner;            /* connection whose context it uses */
  nbdkit_next *ctx;             /* that context, or NULL: no prefetch */
  struct gate *gate;            /* that connection's gate, if gated */
  unsigned running;             /* prefetch calls in flight */
  unsigned draining;            /* prefetch_disown calls waiting */
  uint64_t cursor;              /* where to look for the next window */
  uint64_t front;               /* where it was before going back to a
                                 * gap, or 0 */
  uint64_t horizon;             /* read ahead up to here, no further */
  uint64_t ahead;               /* how far past a request to read ahead */
  uint64_t last;                /* offset of the latest client request */
  nbdkit_next *own[PREFETCH_MAX_CONTEXTS]; /* contexts of its own */
  unsigned nown;                /* how many, 0 if none */
  unsigned own_busy;            /* bit i: own[i] has a call */
  bool own_tried;               /* opened (or tried) since attached */
};

/* What the cache calls (cache_init): a request arrived, a scope was
 * calibrated, a scope's map was dropped.
 */
extern const struct cache_events prefetch_events;

/* The on_free callback of every connection's gate: a client let go of
 * a gate that a prefetch call gave up on; post the scopes waiting.
 */
extern void prefetch_gate_free (struct gate *g);

/* The connection 'owner' is going away: if it owns s's prefetch, stop
 * using its context and wait for calls through it to finish.
 */
extern void prefetch_disown (struct scope *s, const void *owner);

#if CACHE_OWN_CONTEXTS
/* Called from .prepare of a connection just attached to s: open the
 * scope's own contexts if it is shared and has none.  Failure is
 * logged (debug) and leaves prefetch on the connection's context.
 */
extern void prefetch_open_contexts (struct scope *s, nbdkit_backend *backend,
                                    int readonly, const char *exportname);
#endif

/* A connection was prepared on s (open) or is closing (!open), after
 * prefetch_disown and before it leaves the scope.  The last one of a
 * scope closes the scope's own contexts, unless another connection has
 * attached meanwhile (it uses them); the last one of the server stops
 * the pool, which never starts again after prefetch_unload.
 */
extern void prefetch_connection (struct scope *s, bool open);

/* Stop and join the pool (no connection is left). */
extern void prefetch_unload (void);

#endif /* CACHEEXTENTS_PREFETCH_H */
