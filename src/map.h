/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: the extent map.
 *
 * A map records what is known about one export's block status: a set
 * of extents [offset, offset+length) each with an nbdkit extent type
 * (0, NBDKIT_EXTENT_HOLE, NBDKIT_EXTENT_ZERO or both).  Bytes not
 * covered by any extent are unknown.
 *
 * Invariants after every call:
 *   - extents are sorted, disjoint and non-empty;
 *   - two extents that touch never have the same type (coalesced);
 *   - offset + length never wraps past UINT64_MAX.
 *
 * Every extent also sits on the least-recently-used list of the
 * map's LRU domain.  Several maps may share one domain, so that one
 * memory bound covers all of them; evicting from the domain removes
 * extents from whichever map owns them.
 *
 * Thread safety: none.  The caller serialises every call on a map and
 * on its domain (the cache holds its own lock around them).
 *
 * Costs (n = extents in the map): lookup, set, clear and next_gap are
 * O(log n) expected plus O(k) for the k extents they remove; eviction
 * is O(log n) per extent evicted.
 */

#ifndef CACHEEXTENTS_MAP_H
#define CACHEEXTENTS_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct map_extent {
  uint64_t offset;
  uint64_t length;
  uint32_t type;
};

struct map_lru;
struct map;

/* An LRU domain: counts the memory of all extents of its maps. */
extern struct map_lru *map_lru_new (void);
/* All maps of the domain must be freed first. */
extern void map_lru_free (struct map_lru *lru);
/* Bytes of memory used by the extents of all maps in the domain. */
extern size_t map_lru_bytes (const struct map_lru *lru);
/* Memory one extent costs, so that callers can turn a byte bound into
 * a number of extents.
 */
extern size_t map_extent_cost (void);
/* Evict least recently used extents until map_lru_bytes <= limit.
 * Returns the number of extents evicted.
 */
extern size_t map_lru_evict (struct map_lru *lru, size_t limit);

extern struct map *map_new (struct map_lru *lru);
/* Frees the map and removes its extents from the domain. */
extern void map_free (struct map *map);
/* Number of extents in the map. */
extern size_t map_count (const struct map *map);

/* If 'offset' is known, store the whole (coalesced) extent containing
 * it in *e, mark that extent most recently used and return true.
 * Otherwise return false and leave *e alone.
 */
extern bool map_lookup (struct map *map, uint64_t offset,
                        struct map_extent *e);

/* Record that [offset, offset+length) has 'type', replacing whatever
 * was known there, and coalesce with neighbours of the same type.
 * The new extent is most recently used.  length == 0 does nothing.
 * Returns 0, or -1 with errno = ENOMEM (the map is then unchanged).
 */
extern int map_set (struct map *map, uint64_t offset, uint64_t length,
                    uint32_t type);

/* Forget exactly [offset, offset+length): extents partly inside are
 * cut at the boundaries.  Returns 0, or -1 with errno = ENOMEM when a
 * split could not allocate; in that case the whole extent that would
 * have been split is forgotten instead, so the map never claims more
 * than before.
 */
extern int map_clear (struct map *map, uint64_t offset, uint64_t length);

/* Forget every extent that overlaps [offset, offset+length), in full
 * (used to invalidate after a write, see cache.c).  length == 0 does
 * nothing.
 */
extern void map_clear_overlapping (struct map *map, uint64_t offset,
                                   uint64_t length);

/* The first unknown byte in [offset, limit), or 'limit' if all of it
 * is known.  Does not change the LRU order.
 */
extern uint64_t map_next_gap (const struct map *map, uint64_t offset,
                              uint64_t limit);

/* Debugging and tests: call fn for every extent in order (no LRU
 * change).  Stops early and returns fn's value if it is non-zero.
 */
extern int map_foreach (const struct map *map,
                        int (*fn) (const struct map_extent *e, void *opaque),
                        void *opaque);

/* Tests only: map.c defines this weakly to return false; the unit test
 * and the fuzzer define their own to make the next node allocation
 * fail and so exercise the out-of-memory paths.
 */
extern bool map_fault_alloc (void);

#endif /* CACHEEXTENTS_MAP_H */
