/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: gates, one backend call at a time on a handle.
 *
 * A layer below this filter whose thread model is serialize_requests
 * (or serialize_connections) may not see two calls at once on one
 * handle.  nbdkit serializes the clients' own requests before they
 * reach the filter, but a prefetch call made through a client's
 * context would run beside them.  When the layers below are not
 * parallel, each connection has a gate that every call of the filter
 * through that connection's context passes: the client's requests
 * (reads, writes, flushes, cache, block status that misses) and
 * prefetch's calls.  The gate admits one call at a time, and it
 * always favours the client:
 *
 *   - a client waits until the gate is free: for at most the one
 *     prefetch call in progress, since prefetch never takes the gate
 *     while a client waits for it;
 *   - a client that waits for a flight (an answer another call is
 *     fetching) may need the gate next, if that answer does not cover
 *     it: it says so first (gate_expect), and prefetch holds off until
 *     it has either entered (gate_enter_expected) or found its answer
 *     (gate_unexpect), so that its miss, too, waits for one call only;
 *   - prefetch only tries: if the gate is busy or a client waits, it
 *     gives up, marks the gate as wanted, and is told when the gate
 *     is let go with nobody waiting (the on_free callback), so that it
 *     can try again.  It never blocks on a gate.
 *
 * A hit in the map passes no gate: it does not call the backend.
 *
 * Locking: each gate has its own mutex, which protects its fields and
 * is never held across a backend call nor while taking any other lock.
 * gate_try_prefetch, gate_leave_prefetch and gate_expect may be called
 * with other locks held (prefetch and the .extents path hold
 * cache_lock); gate_enter, gate_enter_expected, gate_unexpect and
 * gate_leave must be called without cache_lock, because the enters
 * block and on_free may take it.
 */

#ifndef CACHEEXTENTS_GATE_H
#define CACHEEXTENTS_GATE_H

#include <stdbool.h>
#include <pthread.h>

struct gate {
  pthread_mutex_t lock;         /* protects the fields below */
  pthread_cond_t freed;         /* broadcast when the gate is let go */
  bool busy;                    /* a call holds the gate */
  unsigned waiting;             /* clients waiting in gate_enter, or
                                   expecting to (gate_expect) */
  bool wanted;                  /* prefetch gave up on it meanwhile */
  /* Called (without any lock) when a client lets go of a wanted gate
   * (gate_leave) or gives back its expectation of it (gate_unexpect)
   * and nobody waits for it.  Set once, before the gate is used.
   */
  void (*on_free) (struct gate *g);
};

extern void gate_init (struct gate *g, void (*on_free) (struct gate *g));
extern void gate_destroy (struct gate *g);

/* A client call: wait until the gate is free, then hold it. */
extern void gate_enter (struct gate *g);
/* A client that may need the gate soon: prefetch holds off from now.
 * May be called with cache_lock held.  Followed by exactly one of
 * gate_enter_expected (it needs the gate after all) and gate_unexpect
 * (it does not; calls on_free if prefetch wanted the gate, so without
 * cache_lock).
 */
extern void gate_expect (struct gate *g);
extern void gate_enter_expected (struct gate *g);
extern void gate_unexpect (struct gate *g);
/* The client call is done; calls on_free if prefetch wanted the gate. */
extern void gate_leave (struct gate *g);

/* Prefetch: hold the gate if it is free and no client waits for it;
 * else mark it wanted and return false.
 */
extern bool gate_try_prefetch (struct gate *g);
/* The prefetch call is done.  Returns true if the gate is now free,
 * nobody waits and prefetch wanted it meanwhile (for another scope):
 * on_free is not called here, the caller acts on the result.
 */
extern bool gate_leave_prefetch (struct gate *g);

#endif /* CACHEEXTENTS_GATE_H */
