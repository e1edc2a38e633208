/* cacheextents: background prefetch.
 *
 * After the first block status request on a scope, workers walk the
 * export window by window ahead of the clients and fill the map.  They
 * jump to where a client last missed.  Their backend calls are flights
 * (cache.h), so a client asking for a window being prefetched waits
 * for that call instead of making its own.
 *
 * Backend context: the workers call the backend through the context
 * of the connection that started them, from their own threads (the
 * parallel thread model allows concurrent requests on one context).
 * That context is the only one guaranteed to see the same data as the
 * connection for every plugin: nbdkit 1.32 cannot open a second
 * per-connection context into a plugin, and a shared context
 * (nbdkit_next_context_open with shared=true) cannot tell export
 * names apart, so for `file dir=` it could describe another file.
 * The workers therefore belong to that connection and are stopped in
 * its .finalize; another connection of the scope starts them again on
 * its next block status request.
 *
 * Locking: the functions here take cache_lock themselves and must be
 * called without it.
 */

#ifndef CACHEEXTENTS_PREFETCH_H
#define CACHEEXTENTS_PREFETCH_H

#include <nbdkit-filter.h>

#include "cache.h"

/* Up to this many workers per scope. */
#define PREFETCH_MAX_THREADS 16

/* Start workers for s unless they run already, owned by 'owner' (the
 * connection handle).  Called from a data callback of that connection,
 * with the request that is about to be served: the workers start
 * after the window that request will fetch.
 * Failure is logged and only disables prefetch for the scope.
 */
extern void prefetch_start (struct scope *s, const void *owner,
                            nbdkit_next *next,
                            uint32_t count, uint64_t offset);

/* Stop and join the workers of s if 'owner' started them. */
extern void prefetch_stop (struct scope *s, const void *owner);

#endif /* CACHEEXTENTS_PREFETCH_H */
