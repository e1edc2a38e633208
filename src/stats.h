/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: counters and the summary line.
 *
 * Counters are updated with atomic adds and need no lock.  There is
 * one set per connection and one global set for the whole server;
 * stats_count adds to both.
 *
 * Not every counter has a meaning per connection: prefetch workers,
 * eviction and failed backend calls (which may be prefetch's) are
 * counted in the global set only.  stats_format_connection leaves
 * those out, so that a connection's line never shows a zero for
 * something it cannot count.  A write is counted twice: process-wide
 * by the cache (cache.c) and, for the connection that sent it, by the
 * filter glue with stats_count_connection.
 */

#ifndef CACHEEXTENTS_STATS_H
#define CACHEEXTENTS_STATS_H

#include <stddef.h>
#include <stdint.h>

enum stats_counter {
  STATS_REQUESTS,        /* block status requests from clients */
  STATS_HITS,            /* answered from the map, no own backend call */
  STATS_MISSES,          /* needed a backend call of their own */
  STATS_WAITS,           /* waited for another request's backend call */
  STATS_BACKEND_CALLS,   /* backend extents calls made for clients */
  STATS_PREFETCH_CALLS,  /* backend extents calls made by prefetch */
  STATS_BACKEND_ERRORS,  /* failed backend extents calls (all kinds) */
  STATS_BYTES_CACHED,    /* bytes of block status answered from the map */
  STATS_EVICTIONS,       /* extents evicted to honour max-size */
  STATS_INVALIDATIONS,   /* writes, trims and zeroes seen */
  STATS_NR_COUNTERS
};

struct stats {
  uint64_t c[STATS_NR_COUNTERS];
};

/* The server-wide totals. */
extern struct stats stats_global;

/* Add n to counter k of 'conn' (may be NULL) and of stats_global. */
extern void stats_count (struct stats *conn, enum stats_counter k, uint64_t n);

/* Add n to counter k of 'conn' only, for an event whose global count
 * is kept elsewhere.
 */
extern void stats_count_connection (struct stats *conn,
                                    enum stats_counter k, uint64_t n);

/* Format the one-line summary "hits=... misses=... ..." of every
 * counter into buf.
 */
extern void stats_format (const struct stats *s, char *buf, size_t len);

/* The same for a connection's set: only the counters kept per
 * connection.
 */
extern void stats_format_connection (const struct stats *s,
                                     char *buf, size_t len);

/* Write the global summary to 'path' (replacing it).  Returns 0 or -1
 * with errno set.
 */
extern int stats_write_file (const char *path);

#endif /* CACHEEXTENTS_STATS_H */
