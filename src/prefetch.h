/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: background prefetch.
 *
 * One pool of worker threads for the whole server fills the maps ahead
 * of the clients.  Work is explicit: a client request on a scope
 * (prefetch_note) moves the scope's horizon to a bounded distance past
 * the request and, if there is something to fetch below it, posts the
 * scope on the pool's ready queue.  A worker takes a scope from the
 * queue, claims the next window at the scope's cursor, posts the scope
 * again if more is left (so other workers fetch the following windows
 * in parallel), and makes the call as a flight (cache.h).  When the
 * cursor reaches the horizon the scope simply stops being posted:
 * prefetch follows the clients' demand and stops when they are idle.
 *
 * Who starts and stops what: the pool's threads are started by the
 * first prefetch_note and stopped when the last connection closes
 * (prefetch_connection) or at .unload (prefetch_unload).  They never
 * belong to a connection.
 *
 * Backend context: on nbdkit >= 1.43.9 a shared scope gets contexts of
 * its own (cacheextents-prefetch-contexts of them, opened with shared
 * set for the scope's export name by the connection that attached it,
 * in its .prepare, and closed when the scope goes idle or is freed), so
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
 * Locking: everything here is protected by cache_lock; the functions
 * take it themselves and must be called without it.
 */

#ifndef CACHEEXTENTS_PREFETCH_H
#define CACHEEXTENTS_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "cache.h"

/* At most this many workers (cacheextents-prefetch-threads). */
#define PREFETCH_MAX_THREADS 64

/* A client request [offset, offset+count) on s from the connection
 * 'owner' with context 'next' and gate 'gate' (NULL if not gated),
 * about to be served.  Moves the horizon and posts work.  Failure to
 * start the pool is logged once and turns prefetch off.
 */
extern void prefetch_note (struct scope *s, const void *owner,
                           nbdkit_next *next, struct gate *gate,
                           uint32_t count, uint64_t offset);

/* The on_free callback of every connection's gate: a client let go of
 * a gate that a prefetch call gave up on; post the scopes waiting.
 */
extern void prefetch_gate_free (struct gate *g);

/* An answer has just told s's density for the first time: start the
 * read-ahead its first request set up (cache_lock held).
 */
extern void prefetch_calibrated_locked (struct scope *s);

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

/* A connection was prepared (open) or closed (!open). */
extern void prefetch_connection (bool open);

/* Stop and join the pool (no connection is left). */
extern void prefetch_unload (void);

#endif /* CACHEEXTENTS_PREFETCH_H */
