/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: scopes (see scope.h).
 *
 * Design note
 * ===========
 *
 * Sharing.  A connection attaches to the shared scope of its export
 * name and TLS state when the backend guarantees that every
 * connection sees the same data (multi-conn, or nothing can write
 * through this server), or cacheextents-scope=export says so; to a
 * private scope otherwise, or when the shared one is in use with
 * another size.  So a map is only ever read by connections that would
 * get the same answers from the backend.
 *
 * Idle scopes.  Writes visit only scopes with connections.  Every
 * forget (scope_forget_locked, called by writes.c when a write or a
 * flush with something to forget starts and again when it completes)
 * is counted; a shared scope that goes idle remembers the count, and
 * if it differs when a connection attaches again, its map is dropped.
 * A write or flush in flight when the scope went idle forgets again
 * when it completes, so it is counted too.  That costs nothing per
 * write, and a read-only source (qemu-img map, then qemu-img convert,
 * on two connections one after the other) keeps its map.
 *
 * Memory.  Everything counted against cacheextents-max-size is the
 * maps' extents (map_lru_bytes) plus each scope's own memory, its
 * export name included (scope_bytes).  Over the bound, idle scopes go
 * first, least recently used first, then extents, least recently used
 * first.  One answer can hold many extents in nbdkit's own memory
 * before it is stored, so calls are sized from the density of what
 * the export's answers held so far (bytes_per_extent; a first call
 * assumes SCOPE_FIRST_BYTES_PER_EXTENT, or what another scope of the
 * same export learned) to carry at most scope_answer_budget ()
 * extents; flight.c bounds what is in flight and what one answer
 * stores.
 *
 * Costs: attach and detach walk the lists of scopes, O(scopes); a
 * forget visits every attached scope, O(scopes * log n).
 */

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "map.h"
#include "scope.h"
#include "stats.h"

/* Memory of a scope besides its name and its extents. */
#define SCOPE_OVERHEAD (sizeof (struct scope) + 64)

/* All protected by cache_lock. */
static struct map_lru *lru;
static struct scope *scopes;            /* active: with connections */
static struct scope *idle_head;         /* idle, most recently used first */
static struct scope *idle_tail;
static uint64_t scope_bytes;            /* memory of all scopes */
static uint64_t forgets;                /* see Idle scopes */

int
scope_init (void)
{
  lru = map_lru_new ();
  if (lru == NULL) {
    nbdkit_error ("cacheextents: map_lru_new: %m");
    return -1;
  }
  return 0;
}

uint64_t
scope_answer_budget (void)
{
  return CE_MAX (UINT64_C (256),
                 cache_config.max_size / map_extent_cost () / 16);
}

static uint64_t
scope_cost (const struct scope *s)
{
  return SCOPE_OVERHEAD + strlen (s->exportname) + 1;
}

static void
scope_free (struct scope *s)
{
  scope_bytes -= scope_cost (s);
  map_free (s->map);
  free (s->exportname);
  free (s);
}

/* The doubly linked lists of scopes. */
static void
list_unlink (struct scope **head, struct scope **tail, struct scope *s)
{
  if (tail && s->next == NULL)
    *tail = s->prev;
  CE_LIST_UNLINK (*head, s);
  s->prev = s->next = NULL;
}

static void
list_push (struct scope **head, struct scope **tail, struct scope *s)
{
  if (tail && *head == NULL)
    *tail = s;
  CE_LIST_PUSH (*head, s);
}

void
scope_free_all (void)
{
  /* The pool is stopped by now; contexts prefetch opened for scopes
   * still attached are left to nbdkit, which is tearing every backend
   * down.
   */
  while (scopes) {
    struct scope *s = scopes;

    list_unlink (&scopes, NULL, s);
    scope_free (s);
  }
  while (idle_head) {
    struct scope *s = idle_head;

    list_unlink (&idle_head, &idle_tail, s);
    scope_free (s);
  }
  if (lru)
    map_lru_free (lru);
  lru = NULL;
}

uint64_t
scope_bytes_locked (void)
{
  return map_lru_bytes (lru) + scope_bytes;
}

void
scope_evict_locked (void)
{
  size_t evicted = 0;

  while (scope_bytes_locked () > cache_config.max_size && idle_tail) {
    struct scope *s = idle_tail;

    evicted += map_count (s->map);
    list_unlink (&idle_head, &idle_tail, s);
    scope_free (s);
  }
  if (scope_bytes_locked () > cache_config.max_size)
    evicted += map_lru_evict (lru, scope_bytes < cache_config.max_size ?
                              cache_config.max_size - scope_bytes : 0);
  if (evicted)
    stats_count (NULL, STATS_EVICTIONS, evicted);
}

void
scope_set_density_locked (struct scope *s, uint64_t bytes_per_extent)
{
  uint64_t budget = scope_answer_budget (), cap;

  s->bytes_per_extent = CE_MAX (bytes_per_extent, UINT64_C (1));
  if (s->bytes_per_extent > CACHE_MAX_COUNT / budget)
    cap = CACHE_MAX_COUNT;
  else
    cap = CE_ROUND_DOWN (s->bytes_per_extent * budget,
                         cache_config.granularity);
  s->window_cap = CE_MAX (cap, cache_config.granularity);
}

/* What another scope of the same export learned, if any. */
static const struct scope *
sibling_locked (const char *exportname, uint64_t size)
{
  struct scope *lists[2] = { scopes, idle_head };
  struct scope *s;
  int i;

  for (i = 0; i < 2; ++i)
    for (s = lists[i]; s; s = s->next)
      if (s->calibrated && s->size == size &&
          strcmp (s->exportname, exportname) == 0)
        return s;
  return NULL;
}

static struct scope *
scope_new_locked (const char *exportname, int is_tls, bool shared,
                  uint64_t size)
{
  struct scope *s = calloc (1, sizeof *s);
  const struct scope *sib;

  if (s == NULL || (s->exportname = strdup (exportname)) == NULL ||
      (s->map = map_new (lru)) == NULL) {
    nbdkit_error ("cacheextents: allocating a scope: %m");
    if (s)
      free (s->exportname);
    free (s);
    return NULL;
  }
  s->is_tls = is_tls;
  s->shared = shared;
  s->size = size;
  s->refs = 1;
  sib = sibling_locked (exportname, size);
  scope_set_density_locked (s, sib ? sib->bytes_per_extent :
                            SCOPE_FIRST_BYTES_PER_EXTENT);
  s->calibrated = sib != NULL;
  list_push (&scopes, NULL, s);
  scope_bytes += scope_cost (s);
  scope_evict_locked ();
  return s;
}

/* Forget all a scope knows, keeping the scope.  Returns -1 if out of
 * memory (nbdkit_error called).
 */
static int
scope_reset_locked (struct scope *s, uint64_t size)
{
  struct map *fresh = map_new (lru);

  if (fresh == NULL) {
    nbdkit_error ("cacheextents: map_new: %m");
    return -1;
  }
  map_free (s->map);
  s->map = fresh;
  s->size = size;
  scope_set_density_locked (s, SCOPE_FIRST_BYTES_PER_EXTENT);
  s->calibrated = false;
  cache_events->reset_locked (s);
  return 0;
}

static struct scope *
find_shared_locked (struct scope *list, const char *exportname, int is_tls)
{
  struct scope *s;

  for (s = list; s; s = s->next)
    if (s->shared && s->is_tls == is_tls &&
        strcmp (s->exportname, exportname) == 0)
      return s;
  return NULL;
}

struct scope *
scope_attach (const char *exportname, int is_tls, bool can_share,
              uint64_t size)
{
  bool shared = cache_config.scope == SCOPE_EXPORT ||
    (cache_config.scope == SCOPE_AUTO && can_share);
  struct scope *s = NULL;
  CE_LOCK_FOR_SCOPE (&cache_lock);

  if (shared && (s = find_shared_locked (scopes, exportname, is_tls))) {
    if (s->size == size) {
      s->refs++;
      return s;
    }
    /* In use with another size: this connection goes private. */
    return scope_new_locked (exportname, is_tls, false, size);
  }
  if (shared && (s = find_shared_locked (idle_head, exportname, is_tls))) {
    if (s->size != size || s->idle_forgets != forgets) {
      /* The export changed size, or may have been written, while
       * nobody was connected: what we knew of it may be wrong now.
       */
      if (cacheextents_debug_cache)
        nbdkit_debug ("cacheextents: export \"%s\" %s while idle, "
                      "dropping its map", exportname,
                      s->size != size ? "changed size" : "was written");
      if (scope_reset_locked (s, size) == -1)
        return NULL;
    }
    list_unlink (&idle_head, &idle_tail, s);
    list_push (&scopes, NULL, s);
    s->refs = 1;
    return s;
  }
  return scope_new_locked (exportname, is_tls, shared, size);
}

void
scope_detach (struct scope *s)
{
  CE_LOCK_FOR_SCOPE (&cache_lock);

  if (--s->refs > 0)
    return;
  /* No request is left, and prefetch has let go of it. */
  assert (s->flights == NULL);
  list_unlink (&scopes, NULL, s);
  if (!s->shared || map_count (s->map) == 0) {
    scope_free (s);
    return;
  }
  s->idle_forgets = forgets;
  list_push (&idle_head, &idle_tail, s);
  scope_evict_locked ();
}

void
scope_forget_locked (uint64_t offset, uint64_t end)
{
  struct scope *s;

  forgets++;
  for (s = scopes; s; s = s->next)
    map_clear_overlapping (s->map, offset, end - offset);
}
