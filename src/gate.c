/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: gates (see gate.h).
 *
 * Invariant: busy is true exactly while one call (a client's or
 * prefetch's) holds the gate.  A client sets busy only after waiting
 * for it to clear; prefetch sets it only if it is clear and waiting is
 * 0.  wanted is cleared, and reported, only when the gate is free
 * with nobody waiting, so a prefetch that gave up is always told once
 * it could succeed.
 */

#include <stdbool.h>
#include <assert.h>
#include <pthread.h>

#include "gate.h"

void
gate_init (struct gate *g, void (*on_free) (struct gate *g))
{
  pthread_mutex_init (&g->lock, NULL);
  pthread_cond_init (&g->freed, NULL);
  g->busy = false;
  g->waiting = 0;
  g->wanted = false;
  g->on_free = on_free;
}

void
gate_destroy (struct gate *g)
{
  assert (!g->busy && g->waiting == 0);
  pthread_cond_destroy (&g->freed);
  pthread_mutex_destroy (&g->lock);
}

void
gate_expect (struct gate *g)
{
  pthread_mutex_lock (&g->lock);
  g->waiting++;
  pthread_mutex_unlock (&g->lock);
}

void
gate_enter_expected (struct gate *g)
{
  pthread_mutex_lock (&g->lock);
  while (g->busy)
    pthread_cond_wait (&g->freed, &g->lock);
  assert (g->waiting > 0);
  g->waiting--;
  g->busy = true;
  pthread_mutex_unlock (&g->lock);
}

void
gate_enter (struct gate *g)
{
  gate_expect (g);
  gate_enter_expected (g);
}

void
gate_unexpect (struct gate *g)
{
  bool tell = false;

  pthread_mutex_lock (&g->lock);
  assert (g->waiting > 0);
  g->waiting--;
  if (!g->busy && g->waiting == 0 && g->wanted) {
    g->wanted = false;
    tell = true;
  }
  pthread_mutex_unlock (&g->lock);
  if (tell && g->on_free)
    g->on_free (g);
}

/* Let go of the gate.  Lock held.  Returns whether prefetch should be
 * told that it may try again.
 */
static bool
release_locked (struct gate *g)
{
  bool tell = false;

  g->busy = false;
  if (g->waiting > 0)
    pthread_cond_broadcast (&g->freed);
  else if (g->wanted) {
    g->wanted = false;
    tell = true;
  }
  return tell;
}

void
gate_leave (struct gate *g)
{
  if (gate_leave_prefetch (g) && g->on_free)
    g->on_free (g);
}

bool
gate_try_prefetch (struct gate *g)
{
  bool ok;

  pthread_mutex_lock (&g->lock);
  ok = !g->busy && g->waiting == 0;
  if (ok)
    g->busy = true;
  else
    g->wanted = true;
  pthread_mutex_unlock (&g->lock);
  return ok;
}

bool
gate_leave_prefetch (struct gate *g)
{
  bool tell;

  pthread_mutex_lock (&g->lock);
  tell = release_locked (g);
  pthread_mutex_unlock (&g->lock);
  return tell;
}
