/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: the extent map.
 *
 * Design note
 * ===========
 *
 * What the map holds.  A map is a set of extents (offset, length,
 * type) describing the block status of one export.  A byte is "known"
 * when it lies inside an extent, and its status is then that extent's
 * type.  Every other byte is unknown: it was never recorded, or it was
 * forgotten by map_clear, map_clear_overlapping or eviction.  The map
 * never guesses: an unknown byte is not "probably data".
 *
 * Invariants (checked by tests/unit-map.c after every operation):
 *   I1  extents are non-empty, sorted by offset and pairwise disjoint;
 *   I2  coalesced: two extents that touch (a.offset + a.length ==
 *       b.offset) have different types, so an extent is always the
 *       maximal run of bytes of one type and callers see one extent
 *       where the backend may have sent several;
 *   I3  offset + length <= UINT64_MAX, so ends never wrap.  As a
 *       consequence the single byte at offset UINT64_MAX can never be
 *       known (NBD export sizes are below 2^63, so this costs nothing);
 *   I4  the nodes form a treap: a binary search tree ordered by offset
 *       that is also a max-heap on a random priority;
 *   I5  every node is on the LRU list of its map's domain exactly once,
 *       points back to its map, and the domain's node count is the sum
 *       of its maps' counts.
 *
 * Ranges.  Every function takes [offset, offset+length).  A length
 * that would carry the end past UINT64_MAX is clamped so that the end
 * is UINT64_MAX (rather than rejected): for map_set this records less
 * than the caller said, never more; for the clears nothing lies past
 * the clamp anyway.  length == 0 (after clamping) is a no-op.
 * map_next_gap (offset, limit) with offset >= limit returns limit: an
 * empty range has no unknown byte.
 *
 * The data structure.  The extents of one map live in a treap keyed by
 * offset.  All edits are done with two primitives, split (cut a tree
 * into keys < k and keys >= k) and merge (join two trees whose keys do
 * not interleave): map_set, for example, splits the tree into the
 * extents before, inside and after the new range, trims or drops the
 * few that overlap, and merges the three parts back with the new node
 * in the middle.  Priorities come from a xorshift generator stored in
 * the domain with a fixed seed, so a run is reproducible and two
 * domains used under different locks never share state.
 *
 * Costs, n = extents in the map, k = extents removed or walked:
 *   map_lookup                O(log n)
 *   map_set, map_clear,
 *   map_clear_overlapping     O(log n + k)
 *   map_next_gap              O(log n + k), k = known extents before the gap
 *   map_foreach               O(n)
 *   map_lru_evict             O(log n) per extent evicted
 *   map_free                  O(n)
 * All O(log n) bounds are expected values over the random priorities.
 * Recursion depth is the tree height, also O(log n) expected.
 *
 * Why a treap.  A sorted array of extents gives O(log n) lookup but
 * O(n) memmove for each insertion or removal in the middle, and the
 * cache inserts constantly.  A bitmap with a few bits per block (what
 * nbdkit's own block caches use) is O(1) but its size is proportional
 * to the export, not to what is known, and is unusable for a sparse
 * 64-bit offset space.  Balanced trees (red-black, AVL) have the same
 * bounds as a treap, but range edits on them need many rotation cases;
 * split and merge make every range operation a few lines.
 *
 * LRU.  Every node is also on an intrusive doubly linked list, one per
 * domain (struct map_lru), spanning all maps of the domain; the head
 * is the most recently used end.  Touching is O(1).  map_lru_evict
 * takes the tail node, finds it in its owner's tree by its offset
 * (nodes carry a pointer to their map) and unlinks it.  Pieces that
 * remain of a cut extent keep the extent's place in the list; when an
 * extent is cut in two, the new right-hand piece goes just behind the
 * left one, so of the two it is evicted first.  A node made by map_set
 * (after coalescing with its neighbours) always goes to the head.
 *
 * Memory accounting.  map_lru_bytes counts sizeof (struct node) per
 * extent, and nothing else: not the malloc header of each node, nor
 * the small fixed struct map and struct map_lru.  It is exact in the
 * sense that what it counts grows and shrinks with the number of
 * extents, which is what a bound has to control.
 *
 * Running out of memory.  Each operation works out how many nodes it
 * will need before it touches anything (map_set: at most two, when it
 * splits an extent of another type around the new range; map_clear:
 * at most one, when it punches a hole inside a single extent) and
 * allocates them first, so a failed allocation leaves the map as it
 * was (map_clear then forgets the whole extent, as map.h promises).
 *
 * Fault injection.  Every node allocation first asks map_fault_alloc.
 * The weak definition here always says no; the unit test and the
 * fuzzer link a strong definition to reach the ENOMEM paths.
 */

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "map.h"

/* A link of the LRU list.  The list is circular through the sentinel
 * in struct map_lru: sentinel.next is the most recently used node,
 * sentinel.prev the least recently used.
 */
struct lru_link {
  struct lru_link *next;        /* towards the least recently used */
  struct lru_link *prev;        /* towards the most recently used */
};

/* One extent.  64 bytes on LP64 platforms, one cache line. */
struct node {
  uint64_t offset;
  uint64_t length;              /* > 0, offset + length <= UINT64_MAX */
  uint32_t type;
  uint32_t prio;                /* treap heap key, parent >= child */
  struct node *left;            /* offsets below this one */
  struct node *right;           /* offsets above this one */
  struct lru_link lru;
  struct map *map;              /* owner, so eviction can find the tree */
};

struct map_lru {
  struct lru_link sentinel;
  size_t count;                 /* nodes in all maps of the domain */
  size_t nmaps;                 /* live maps, must be 0 at map_lru_free */
  uint32_t rng;                 /* xorshift32 state, never 0 */
};

struct map {
  struct node *root;
  size_t count;                 /* nodes in this tree */
  struct map_lru *lru;
};

/* Fixed seed: runs are reproducible.  Any non-zero value works. */
#define MAP_RNG_SEED UINT32_C (0x9e3779b9)

bool map_fault_alloc (void);

__attribute__ ((weak)) bool
map_fault_alloc (void)
{
  return false;
}

static inline uint64_t
node_end (const struct node *n)
{
  return n->offset + n->length;
}

static inline struct node *
node_of_link (struct lru_link *l)
{
  return (struct node *) ((char *) l - offsetof (struct node, lru));
}

/* Clamp [offset, offset+*length) so that the end does not wrap, and
 * return the end.
 */
static inline uint64_t
clamp_end (uint64_t offset, uint64_t *length)
{
  if (*length > UINT64_MAX - offset)
    *length = UINT64_MAX - offset;
  return offset + *length;
}

/* xorshift32 (Marsaglia, 2003): never returns 0 from a non-zero state. */
static uint32_t
next_prio (struct map_lru *lru)
{
  uint32_t x = lru->rng;

  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  lru->rng = x;
  return x;
}

/*----------------------------------------------------------------------
 * LRU list.
 */

static void
lru_link_after (struct lru_link *pos, struct lru_link *l)
{
  l->prev = pos;
  l->next = pos->next;
  pos->next->prev = l;
  pos->next = l;
}

static void
lru_unlink (struct lru_link *l)
{
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->next = l->prev = NULL;
}

/* Make n the most recently used node of its domain. */
static void
lru_touch (struct node *n)
{
  struct map_lru *lru = n->map->lru;

  lru_unlink (&n->lru);
  lru_link_after (&lru->sentinel, &n->lru);
}

/*----------------------------------------------------------------------
 * Nodes.  A node is "attached" once it is counted and on the LRU list;
 * attach and destroy keep I5.
 */

static struct node *
node_alloc (struct map *map)
{
  struct node *n;

  if (map_fault_alloc ()) {
    errno = ENOMEM;
    return NULL;
  }
  n = malloc (sizeof *n);
  if (n == NULL)
    return NULL;
  n->left = n->right = NULL;
  n->lru.next = n->lru.prev = NULL;
  n->prio = next_prio (map->lru);
  n->map = map;
  return n;
}

/* Count n and put it on the LRU list just behind 'pos' (the sentinel
 * for most recently used).
 */
static void
node_attach (struct node *n, struct lru_link *pos)
{
  lru_link_after (pos, &n->lru);
  n->map->count++;
  n->map->lru->count++;
}

/* The node must already be out of its tree. */
static void
node_destroy (struct node *n)
{
  lru_unlink (&n->lru);
  n->map->count--;
  n->map->lru->count--;
  free (n);
}

/* Destroy a whole detached subtree. */
static void
tree_destroy (struct node *t)
{
  if (t == NULL)
    return;
  tree_destroy (t->left);
  tree_destroy (t->right);
  node_destroy (t);
}

/*----------------------------------------------------------------------
 * Treap primitives.
 */

/* Cut t into *l (offsets < key) and *r (offsets >= key). */
static void
split (struct node *t, uint64_t key, struct node **l, struct node **r)
{
  if (t == NULL) {
    *l = *r = NULL;
    return;
  }
  if (t->offset < key) {
    split (t->right, key, &t->right, r);
    *l = t;
  }
  else {
    split (t->left, key, l, &t->left);
    *r = t;
  }
}

/* Join two trees; every offset in l is below every offset in r. */
static struct node *
merge (struct node *l, struct node *r)
{
  if (l == NULL)
    return r;
  if (r == NULL)
    return l;
  if (l->prio > r->prio) {
    l->right = merge (l->right, r);
    return l;
  }
  else {
    r->left = merge (l, r->left);
    return r;
  }
}

static struct node *
tree_max (struct node *t)
{
  if (t)
    while (t->right)
      t = t->right;
  return t;
}

static struct node *
tree_min (struct node *t)
{
  if (t)
    while (t->left)
      t = t->left;
  return t;
}

/* Detach the last (first) node of *t and return it, with no children.
 * The child that moves up had a lower priority than the node it
 * replaces, so the heap order is kept.
 */
static struct node *
take_max (struct node **t)
{
  struct node *n;

  while ((*t)->right)
    t = &(*t)->right;
  n = *t;
  *t = n->left;
  n->left = NULL;
  return n;
}

static struct node *
take_min (struct node **t)
{
  struct node *n;

  while ((*t)->left)
    t = &(*t)->left;
  n = *t;
  *t = n->right;
  n->right = NULL;
  return n;
}

/* The node with the greatest offset <= x, or NULL. */
static struct node *
tree_floor (struct node *t, uint64_t x)
{
  struct node *best = NULL;

  while (t) {
    if (t->offset <= x) {
      best = t;
      t = t->right;
    }
    else
      t = t->left;
  }
  return best;
}

/* Take n out of its map's tree (it stays attached). */
static void
tree_remove (struct node *n)
{
  struct node **link = &n->map->root;

  while (*link != n) {
    assert (*link != NULL);
    link = n->offset < (*link)->offset ? &(*link)->left : &(*link)->right;
  }
  *link = merge (n->left, n->right);
  n->left = n->right = NULL;
}

/*----------------------------------------------------------------------
 * Domains.
 */

struct map_lru *
map_lru_new (void)
{
  struct map_lru *lru = malloc (sizeof *lru);

  if (lru == NULL)
    return NULL;
  lru->sentinel.next = lru->sentinel.prev = &lru->sentinel;
  lru->count = 0;
  lru->nmaps = 0;
  lru->rng = MAP_RNG_SEED;
  return lru;
}

void
map_lru_free (struct map_lru *lru)
{
  if (lru == NULL)
    return;
  assert (lru->nmaps == 0);
  assert (lru->count == 0);
  assert (lru->sentinel.next == &lru->sentinel);
  free (lru);
}

size_t
map_extent_cost (void)
{
  return sizeof (struct node);
}

size_t
map_lru_bytes (const struct map_lru *lru)
{
  return lru->count * sizeof (struct node);
}

size_t
map_lru_evict (struct map_lru *lru, size_t limit)
{
  size_t keep = limit / sizeof (struct node);
  size_t evicted = 0;

  while (lru->count > keep) {
    struct node *n = node_of_link (lru->sentinel.prev);

    tree_remove (n);
    node_destroy (n);
    evicted++;
  }
  return evicted;
}

/*----------------------------------------------------------------------
 * Maps.
 */

struct map *
map_new (struct map_lru *lru)
{
  struct map *map = malloc (sizeof *map);

  if (map == NULL)
    return NULL;
  map->root = NULL;
  map->count = 0;
  map->lru = lru;
  lru->nmaps++;
  return map;
}

void
map_free (struct map *map)
{
  if (map == NULL)
    return;
  tree_destroy (map->root);
  assert (map->count == 0);
  map->lru->nmaps--;
  free (map);
}

size_t
map_count (const struct map *map)
{
  return map->count;
}

bool
map_lookup (struct map *map, uint64_t offset, struct map_extent *e)
{
  struct node *n = tree_floor (map->root, offset);

  if (n == NULL || offset >= node_end (n))
    return false;
  lru_touch (n);
  e->offset = n->offset;
  e->length = n->length;
  e->type = n->type;
  return true;
}

int
map_set (struct map *map, uint64_t offset, uint64_t length, uint32_t type)
{
  struct node *s, *nn, *rest = NULL;
  struct node *a, *b, *m, *c, *n;
  uint64_t end, new_start, new_end;

  end = clamp_end (offset, &length);
  if (length == 0)
    return 0;

  /* Count the nodes needed before changing anything.  s is the extent
   * holding the first byte, if any.
   */
  s = tree_floor (map->root, offset);
  if (s && node_end (s) > offset) {
    if (node_end (s) >= end && s->type == type) {
      /* Already known, and stays one extent: only the LRU changes. */
      lru_touch (s);
      return 0;
    }
    if (s->offset < offset && node_end (s) > end) {
      /* s surrounds the range with another type: its right-hand part
       * needs a node of its own.
       */
      rest = node_alloc (map);
      if (rest == NULL) {
        errno = ENOMEM;
        return -1;
      }
    }
  }
  nn = node_alloc (map);
  if (nn == NULL) {
    free (rest);
    errno = ENOMEM;
    return -1;
  }

  /* a: offsets < offset; m: offsets in [offset, end); c: >= end. */
  split (map->root, offset, &a, &b);
  split (b, end, &m, &c);
  new_start = offset;
  new_end = end;

  /* The last extent before the range may overlap it or touch it. */
  n = tree_max (a);
  if (n && node_end (n) >= offset) {
    if (node_end (n) > end) {
      /* Surrounds the range; the type differs (checked above). */
      assert (rest != NULL && m == NULL);
      rest->offset = end;
      rest->length = node_end (n) - end;
      rest->type = n->type;
      node_attach (rest, &n->lru);
      c = merge (rest, c);
      rest = NULL;
    }
    n->length = offset - n->offset;
    if (n->type == type) {
      /* Touches the range now: coalesce. */
      new_start = n->offset;
      take_max (&a);
      node_destroy (n);
    }
  }
  assert (rest == NULL);

  /* Extents starting inside the range go, but the last one may reach
   * past the end: then it is either absorbed or keeps its tail.
   */
  if (m) {
    n = tree_max (m);
    if (node_end (n) > end) {
      take_max (&m);
      if (n->type == type) {
        new_end = node_end (n);
        node_destroy (n);
      }
      else {
        n->length = node_end (n) - end;
        n->offset = end;
        c = merge (n, c);
      }
    }
    tree_destroy (m);
  }

  /* The first extent after the range may touch it. */
  n = tree_min (c);
  if (n && n->offset == new_end && n->type == type) {
    new_end = node_end (n);
    take_min (&c);
    node_destroy (n);
  }

  nn->offset = new_start;
  nn->length = new_end - new_start;
  nn->type = type;
  node_attach (nn, &map->lru->sentinel);
  map->root = merge (merge (a, nn), c);
  return 0;
}

int
map_clear (struct map *map, uint64_t offset, uint64_t length)
{
  struct node *s, *rest = NULL;
  struct node *a, *b, *m, *c, *n;
  uint64_t end;

  end = clamp_end (offset, &length);
  if (length == 0)
    return 0;

  /* Punching a hole inside one extent is the only case that needs a
   * node.  Without one, forget that whole extent.
   */
  s = tree_floor (map->root, offset);
  if (s && s->offset < offset && node_end (s) > end) {
    rest = node_alloc (map);
    if (rest == NULL) {
      tree_remove (s);
      node_destroy (s);
      errno = ENOMEM;
      return -1;
    }
  }

  split (map->root, offset, &a, &b);
  split (b, end, &m, &c);

  n = tree_max (a);
  if (n && node_end (n) > offset) {
    if (node_end (n) > end) {
      assert (rest != NULL && m == NULL);
      rest->offset = end;
      rest->length = node_end (n) - end;
      rest->type = n->type;
      node_attach (rest, &n->lru);
      c = merge (rest, c);
      rest = NULL;
    }
    n->length = offset - n->offset;
  }
  assert (rest == NULL);

  if (m) {
    n = tree_max (m);
    if (node_end (n) > end) {
      take_max (&m);
      n->length = node_end (n) - end;
      n->offset = end;
      c = merge (n, c);
    }
    tree_destroy (m);
  }

  map->root = merge (a, c);
  return 0;
}

void
map_clear_overlapping (struct map *map, uint64_t offset, uint64_t length)
{
  struct node *a, *b, *m, *c, *n;
  uint64_t end;

  end = clamp_end (offset, &length);
  if (length == 0)
    return;

  split (map->root, offset, &a, &b);
  split (b, end, &m, &c);
  n = tree_max (a);
  if (n && node_end (n) > offset) {
    take_max (&a);
    node_destroy (n);
  }
  tree_destroy (m);
  map->root = merge (a, c);
}

/* In-order walk of the extents that could cover *pos, advancing *pos
 * over each one that does.  Returns true once the answer is settled:
 * a gap was found at *pos, or *pos reached limit.
 */
static bool
gap_walk (const struct node *t, uint64_t *pos, uint64_t limit)
{
  if (t == NULL)
    return false;
  if (node_end (t) <= *pos)
    /* t and everything left of it end before *pos. */
    return gap_walk (t->right, pos, limit);
  if (t->offset > *pos && gap_walk (t->left, pos, limit))
    return true;
  if (t->offset > *pos)
    return true;                /* gap at *pos */
  *pos = node_end (t);
  if (*pos >= limit)
    return true;
  return gap_walk (t->right, pos, limit);
}

uint64_t
map_next_gap (const struct map *map, uint64_t offset, uint64_t limit)
{
  uint64_t pos = offset;

  if (offset >= limit)
    return limit;
  gap_walk (map->root, &pos, limit);
  return pos < limit ? pos : limit;
}

static int
foreach_walk (const struct node *t,
              int (*fn) (const struct map_extent *e, void *opaque),
              void *opaque)
{
  struct map_extent e;
  int r;

  if (t == NULL)
    return 0;
  r = foreach_walk (t->left, fn, opaque);
  if (r)
    return r;
  e.offset = t->offset;
  e.length = t->length;
  e.type = t->type;
  r = fn (&e, opaque);
  if (r)
    return r;
  return foreach_walk (t->right, fn, opaque);
}

int
map_foreach (const struct map *map,
             int (*fn) (const struct map_extent *e, void *opaque),
             void *opaque)
{
  return foreach_walk (map->root, fn, opaque);
}
