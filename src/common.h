/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: small helpers shared by every room of the filter.
 *
 * Nothing here knows about nbdkit; the unit tests and the fuzzer
 * include it without the server.
 */

#ifndef CACHEEXTENTS_COMMON_H
#define CACHEEXTENTS_COMMON_H

#include <stdint.h>
#include <pthread.h>

#define CE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CE_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Rounding for unsigned values; 'n' need not be a power of two. */
#define CE_ROUND_DOWN(v, n) ((v) / (n) * (n))
#define CE_ROUND_UP(v, n) CE_ROUND_DOWN ((v) + (n) - 1, (n))

/* A mutex held until the end of the enclosing block:
 *
 *   CE_LOCK_FOR_SCOPE (&lock);
 *
 * The unlock runs however the block is left (return, break, goto).
 */
static inline void
ce_unlock_cleanup (pthread_mutex_t **m)
{
  pthread_mutex_unlock (*m);
}

#define CE_CONCAT2(a, b) a##b
#define CE_CONCAT(a, b) CE_CONCAT2 (a, b)
#define CE_LOCK_FOR_SCOPE(m)                                            \
  __attribute__ ((cleanup (ce_unlock_cleanup)))                         \
  pthread_mutex_t *CE_CONCAT (ce_lock_, __LINE__) = (m);                \
  pthread_mutex_lock (CE_CONCAT (ce_lock_, __LINE__))

/* Intrusive doubly linked lists of any struct with 'prev' and 'next'
 * pointers, headed by a plain pointer: push at the head, unlink from
 * anywhere.
 */
#define CE_LIST_PUSH(head, e)                                           \
  do {                                                                  \
    (e)->prev = NULL;                                                   \
    (e)->next = (head);                                                 \
    if ((e)->next)                                                      \
      (e)->next->prev = (e);                                            \
    (head) = (e);                                                       \
  } while (0)

/* Unlink e from the list headed by head, through links named prev and
 * next; the tail, if any, is the caller's.
 */
#define CE_UNLINK_FROM(head, e, prev, next)                             \
  do {                                                                  \
    if ((e)->prev)                                                      \
      (e)->prev->next = (e)->next;                                      \
    else                                                                \
      (head) = (e)->next;                                               \
    if ((e)->next)                                                      \
      (e)->next->prev = (e)->prev;                                      \
  } while (0)

#define CE_LIST_UNLINK(head, e) CE_UNLINK_FROM (head, e, prev, next)

/* Intrusive doubly linked queues with a head and a tail, and link
 * fields of any name (so that one struct can sit on several):
 * append at the tail, unlink from anywhere.  'head' and 'tail' are
 * plain pointers.
 */
#define CE_QUEUE_APPEND(head, tail, e, prev, next)                      \
  do {                                                                  \
    (e)->prev = (tail);                                                 \
    (e)->next = NULL;                                                   \
    if (tail)                                                           \
      (tail)->next = (e);                                               \
    else                                                                \
      (head) = (e);                                                     \
    (tail) = (e);                                                       \
  } while (0)

#define CE_QUEUE_UNLINK(head, tail, e, prev, next)                      \
  do {                                                                  \
    if ((e)->next == NULL)                                              \
      (tail) = (e)->prev;                                               \
    CE_UNLINK_FROM (head, e, prev, next);                               \
    (e)->prev = (e)->next = NULL;                                       \
  } while (0)

/* A typed growable array: CE_VECTOR (name, type) declares
 * 'struct name { type *ptr; size_t len, cap; }' and
 * 'int name_append (struct name *, type)' returning 0 or -1 (ENOMEM).
 */
#include <stdlib.h>
#include <errno.h>

#define CE_VECTOR(name, type)                                           \
  struct name { type *ptr; size_t len, cap; };                          \
  static inline int                                                     \
  name##_append (struct name *v, type elem)                             \
  {                                                                     \
    if (v->len == v->cap) {                                             \
      size_t ncap = v->cap ? v->cap * 2 : 16;                           \
      type *np = realloc (v->ptr, ncap * sizeof *np);                   \
      if (np == NULL)                                                   \
        return -1;                                                      \
      v->ptr = np;                                                      \
      v->cap = ncap;                                                    \
    }                                                                   \
    v->ptr[v->len++] = elem;                                            \
    return 0;                                                           \
  }                                                                     \
  static inline void                                                    \
  name##_reset (struct name *v)                                         \
  {                                                                     \
    free (v->ptr);                                                      \
    v->ptr = NULL;                                                      \
    v->len = v->cap = 0;                                                \
  }

#endif /* CACHEEXTENTS_COMMON_H */
