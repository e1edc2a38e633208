/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: filter glue.
 *
 * Parameters, connection lifetime and the data-path callbacks.  The
 * work is done in the rooms of the cache (cache.h: scopes, writes,
 * flights, the .extents path) and in prefetch.c (background workers).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "gate.h"
#include "map.h"
#include "params.h"
#include "prefetch.h"
#include "scope.h"
#include "stats.h"
#include "version.h"
#include "writes.h"

#define DEFAULT_WINDOW (UINT64_C (4) << 30)
#define DEFAULT_MAX_SIZE (UINT64_C (64) << 20)
#define DEFAULT_GRANULARITY (UINT64_C (2) << 20)
#define MAX_GRANULARITY (UINT64_C (1) << 30)
#define DEFAULT_PREFETCH_THREADS 16
#define DEFAULT_PREFETCH_CONTEXTS 8
#define MIN_WINDOW 512
#define MAX_WINDOW (UINT64_C (1) << 62)
#define MIN_MAX_SIZE 4096

static char *statsfile;
/* The thread model of the layers below, where nbdkit tells it. */
static int below_model = -1;

struct handle {
  char *exportname;
  int is_tls;
  struct scope *scope;          /* NULL until .prepare succeeds */
  struct gate gate;             /* calls through this context (gate.h) */
  struct dirty_set dirty;       /* registered while scope is set */
#if CACHE_OWN_CONTEXTS
  nbdkit_backend *backend;      /* for prefetch's own contexts */
  int readonly;
#endif
  struct stats stats;           /* this connection's counters */
};

static void
cacheextents_load (void)
{
  cache_config.window = DEFAULT_WINDOW;
  cache_config.max_size = DEFAULT_MAX_SIZE;
  cache_config.granularity = DEFAULT_GRANULARITY;
  cache_config.scope = SCOPE_AUTO;
  cache_config.prefetch = true;
  cache_config.prefetch_threads = DEFAULT_PREFETCH_THREADS;
  cache_config.prefetch_contexts = DEFAULT_PREFETCH_CONTEXTS;
}

static void
cacheextents_unload (void)
{
  char line[512];

  stats_format (&stats_global, line, sizeof line);
  nbdkit_debug ("cacheextents: %s total (process-wide): %s",
                CACHEEXTENTS_VERSION, line);
  if (statsfile && stats_write_file (statsfile) == -1)
    nbdkit_debug ("cacheextents: writing %s: %m", statsfile);
  free (statsfile);
  prefetch_unload ();
  cache_free ();
}

/* Report a value out of [min, max] in nbdkit's size syntax; max may
 * be INT64_MAX, the largest size there is.
 */
static int
size_range_error (const char *key, const char *value,
                  uint64_t min, uint64_t max, bool too_large)
{
  char lo[32], hi[32];

  param_format_size (min, lo, sizeof lo);
  param_format_size (max, hi, sizeof hi);
  if (max == INT64_MAX && too_large)
    nbdkit_error ("%s=%s: out of range: must be less than 8E", key, value);
  else if (max == INT64_MAX)
    nbdkit_error ("%s=%s: out of range: must be at least %s", key, value, lo);
  else
    nbdkit_error ("%s=%s: out of range: must be between %s and %s",
                  key, value, lo, hi);
  return -1;
}

/* Parse a size parameter within [min, max].  Each failure prints one
 * line (see params.h).
 */
static int
parse_size_param (const char *key, const char *value,
                  uint64_t min, uint64_t max, uint64_t *out)
{
  int64_t r;

  switch (param_check_size (value)) {
  case PARAM_SIZE_OK:
    break;
  case PARAM_SIZE_SYNTAX:
    nbdkit_error ("%s=%s: not a size: expected a number with an optional "
                  "suffix K, M, G, T, P or E", key, value);
    return -1;
  case PARAM_SIZE_TOO_LARGE:
    return size_range_error (key, value, min, max, true);
  }
  r = nbdkit_parse_size (value);
  if (r == -1)
    return -1;
  if ((uint64_t) r < min || (uint64_t) r > max)
    return size_range_error (key, value, min, max, (uint64_t) r > max);
  *out = r;
  return 0;
}

/* Parse a small count within [min, max]. */
static int
parse_count_param (const char *key, const char *value,
                   unsigned min, unsigned max, unsigned *out)
{
  unsigned n;

  if (!param_is_small_unsigned (value)) {
    nbdkit_error ("%s=%s: expected a decimal number from %u to %u",
                  key, value, min, max);
    return -1;
  }
  if (nbdkit_parse_unsigned (key, value, &n) == -1)
    return -1;
  if (n < min || n > max) {
    nbdkit_error ("%s=%s: out of range: must be between %u and %u",
                  key, value, min, max);
    return -1;
  }
  *out = n;
  return 0;
}

static int
cacheextents_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                     const char *key, const char *value)
{
  int r;

  if (strcmp (key, "cacheextents-window") == 0)
    return parse_size_param (key, value, MIN_WINDOW, MAX_WINDOW,
                             &cache_config.window);
  if (strcmp (key, "cacheextents-max-size") == 0)
    return parse_size_param (key, value, MIN_MAX_SIZE, INT64_MAX,
                             &cache_config.max_size);
  if (strcmp (key, "cacheextents-granularity") == 0) {
    uint64_t g;

    if (parse_size_param (key, value, 512, MAX_GRANULARITY, &g) == -1)
      return -1;
    if (g & (g - 1)) {
      nbdkit_error ("%s=%s: must be a power of 2", key, value);
      return -1;
    }
    cache_config.granularity = g;
    return 0;
  }
  if (strcmp (key, "cacheextents-scope") == 0) {
    if (strcmp (value, "auto") == 0)
      cache_config.scope = SCOPE_AUTO;
    else if (strcmp (value, "export") == 0)
      cache_config.scope = SCOPE_EXPORT;
    else if (strcmp (value, "connection") == 0)
      cache_config.scope = SCOPE_CONNECTION;
    else {
      nbdkit_error ("%s=%s: must be auto, export or connection", key, value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "cacheextents-prefetch") == 0) {
    if (!param_is_bool (value)) {
      nbdkit_error ("%s=%s: not a boolean: expected true or false "
                    "(or on/off, yes/no, 1/0)", key, value);
      return -1;
    }
    r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    cache_config.prefetch = r;
    return 0;
  }
  if (strcmp (key, "cacheextents-prefetch-threads") == 0)
    return parse_count_param (key, value, 1, PREFETCH_MAX_THREADS,
                              &cache_config.prefetch_threads);
  if (strcmp (key, "cacheextents-prefetch-contexts") == 0)
    return parse_count_param (key, value, 0, PREFETCH_MAX_CONTEXTS,
                              &cache_config.prefetch_contexts);
  if (strcmp (key, "cacheextents-statsfile") == 0) {
    if (value[0] == '\0') {
      nbdkit_error ("%s=%s: the file name must not be empty", key, value);
      return -1;
    }
    /* nbdkit may change directory (as a daemon) before we write it. */
    free (statsfile);
    statsfile = nbdkit_absolute_path (value);
    return statsfile ? 0 : -1;
  }
  return next (nxdata, key, value);
}

/* The defaults here must match the DEFAULT_ defines above. */
#define cacheextents_config_help \
  "cacheextents-window=SIZE        Bytes asked of the plugin on a miss " \
  "(default 4G).\n" \
  "cacheextents-max-size=SIZE      Memory bound of all extent maps " \
  "(default 64M).\n" \
  "cacheextents-granularity=SIZE   Writes forget extents in this unit " \
  "(default 2M).\n" \
  "cacheextents-scope=auto|export|connection\n" \
  "                                Which connections share a map " \
  "(default auto).\n" \
  "cacheextents-prefetch=BOOL      Fill the map in the background " \
  "(default true).\n" \
  "cacheextents-prefetch-threads=N Prefetch workers, one pool for all " \
  "(default 16).\n" \
  "cacheextents-prefetch-contexts=N Prefetch's own plugin contexts per " \
  "shared map,\n" \
  "                                nbdkit >= 1.43.9 (default 8).\n" \
  "cacheextents-statsfile=FILE     Summary line written at exit " \
  "(default none)."

static int
cacheextents_config_complete (nbdkit_next_config_complete *next,
                              nbdkit_backend *nxdata)
{
  /* The map must hold at least a handful of extents to be useful. */
  if (cache_config.max_size < 16 * map_extent_cost ()) {
    char need[32];

    param_format_size (16 * map_extent_cost (), need, sizeof need);
    nbdkit_error ("cacheextents-max-size=%" PRIu64 ": too small: must hold "
                  "at least 16 extents (%s)", cache_config.max_size, need);
    return -1;
  }
  /* Say now, not silently at exit, that the file cannot be written. */
  if (statsfile) {
    int fd = open (statsfile, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK,
                   0644);

    if (fd == -1) {
      nbdkit_error ("cacheextents-statsfile=%s: cannot create: %m",
                    statsfile);
      return -1;
    }
    close (fd);
  }
  if (cache_init (&prefetch_events) == -1)
    return -1;
  return next (nxdata);
}

#if CACHE_BELOW_MODEL
/* The filter itself is parallel; what the layers below allow decides
 * how prefetch may call them (.get_ready).
 */
static int
cacheextents_thread_model (int next_thread_model)
{
  below_model = next_thread_model;
  return NBDKIT_THREAD_MODEL_PARALLEL;
}
#endif

static const char *
model_name (int model)
{
  switch (model) {
  case NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS:
    return "serialize_connections";
  case NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS:
    return "serialize_all_requests";
  case NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS:
    return "serialize_requests";
  default:
    return "parallel";
  }
}

/* How prefetch may call the layers below, from their thread model
 * (nbdkit >= 1.43.9 says it) or else the server's, which is at least
 * as strict:
 *
 *   parallel             calls beside anything;
 *   serialize_requests   one call at a time per handle: contexts of
 *                        prefetch's own in parallel, and through a
 *                        client's context only between its requests
 *                        (the gate);
 *   serialize_connections  one connection at a time, so the same
 *                        through the client's context, but no handle
 *                        of prefetch's own;
 *   serialize_all_requests  one request at a time in the whole server,
 *                        the handshakes of other connections included,
 *                        which a filter cannot hold back: prefetch off.
 */
static int
cacheextents_get_ready (int thread_model)
{
  int model = below_model >= 0 ? below_model : thread_model;
  const char *where = below_model >= 0 ? "the layers below the filter" :
    "the layers of this server (nbdkit before 1.43.9 does not say which)";

  if (!cache_config.prefetch || model == NBDKIT_THREAD_MODEL_PARALLEL)
    return 0;
  if (model == NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS) {
    /* Said without -v, and not as an error: the user asked for
     * prefetch (it is on by default) and does not get it.
     */
    fprintf (stderr, "nbdkit: cacheextents: prefetch is off: %s "
             "serialize all requests (thread model %s), so no call may "
             "run beside any other; prefetch needs them to be "
             "serialize_requests or parallel; set cacheextents-prefetch="
             "false to silence this\n", where, model_name (model));
    cache_config.prefetch = false;
    return 0;
  }
  cache_config.gated = true;
  if (model == NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS)
    cache_config.prefetch_contexts = 0;
  nbdkit_debug ("cacheextents: %s: thread model %s: prefetch calls go "
                "one at a time through a client's context, between its "
                "requests%s", where, model_name (model),
                cache_config.prefetch_contexts > 0 && CACHE_OWN_CONTEXTS ?
                ", and in parallel through contexts of its own" : "");
  return 0;
}

static void *
cacheextents_open (nbdkit_next_open *next, nbdkit_context *context,
                   int readonly, const char *exportname, int is_tls)
{
  struct handle *h;

  if (next (context, readonly, exportname) == -1)
    return NULL;
  h = calloc (1, sizeof *h);
  if (h == NULL || (h->exportname = strdup (exportname)) == NULL) {
    nbdkit_error ("cacheextents: allocating a handle: %m");
    free (h);
    return NULL;
  }
  h->is_tls = is_tls;
  gate_init (&h->gate, prefetch_gate_free);
#if CACHE_OWN_CONTEXTS
  h->backend = nbdkit_context_get_backend (context);
  h->readonly = readonly;
#endif
  return h;
}

/* The connection's gate, if calls through its context must pass one. */
static struct gate *
gate_of (struct handle *h)
{
  return cache_config.gated ? &h->gate : NULL;
}

/* nbdkit keeps what a context answers to these, once asked.  Where
 * calls through the context pass a gate, ask them all now, before
 * prefetch may call through it: a filter above that asks one later
 * (the retry filter does, on the context it has just reopened) would
 * otherwise reach the layers below beside a prefetch call.
 */
static int
ask_context_once (nbdkit_next *next)
{
  uint32_t minimum, preferred, maximum;

  if (next->can_flush (next) == -1 || next->can_trim (next) == -1 ||
      next->can_zero (next) == -1 || next->can_fast_zero (next) == -1 ||
      next->can_fua (next) == -1 || next->can_extents (next) == -1 ||
      next->can_cache (next) == -1 || next->is_rotational (next) == -1)
    return -1;
  return next->block_size (next, &minimum, &preferred, &maximum);
}

/* Join a scope once the export's size is known.  Connections may
 * share a map when they are sure to see the same data: the backend
 * says so (multi-conn), or nothing can be written through this server
 * (nbdkit -r, or a read-only plugin), so no connection can make what
 * another sees differ.
 */
static int
cacheextents_prepare (nbdkit_next *next, void *handle, int readonly)
{
  struct handle *h = handle;
  int64_t size = next->get_size (next);
  int multi_conn, can_write;

  if (size == -1)
    return -1;
  multi_conn = next->can_multi_conn (next);
  can_write = next->can_write (next);
  if (multi_conn == -1 || can_write == -1)
    return -1;
  if (gate_of (h) && ask_context_once (next) == -1)
    return -1;
  h->scope = scope_attach (h->exportname, h->is_tls,
                           multi_conn == 1 || can_write == 0, size);
  if (h->scope == NULL)
    return -1;
  dirty_register (&h->dirty, multi_conn == 1);
  prefetch_connection (h->scope, true);
#if CACHE_OWN_CONTEXTS
  prefetch_open_contexts (h->scope, h->backend, h->readonly, h->exportname);
#endif
  return 0;
}

/* Prefetch may not call through this connection's context after it. */
static int
cacheextents_finalize (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  if (h->scope)
    prefetch_disown (h->scope, h);
  return 0;
}

static void
cacheextents_close (void *handle)
{
  struct handle *h = handle;
  char line[512];

  if (h->scope) {
    prefetch_disown (h->scope, h);
    prefetch_connection (h->scope, false);
    dirty_unregister (&h->dirty);
    scope_detach (h->scope);
  }
  stats_format_connection (&h->stats, line, sizeof line);
  nbdkit_debug ("cacheextents: connection: %s", line);
  gate_destroy (&h->gate);
  free (h->exportname);
  free (h);
}

static int
cacheextents_extents (nbdkit_next *next, void *handle,
                      uint32_t count, uint64_t offset, uint32_t flags,
                      struct nbdkit_extents *extents, int *err)
{
  struct handle *h = handle;
  const struct cache_client c = {
    .owner = h, .next = next, .gate = gate_of (h), .stats = &h->stats,
  };

  if (h->scope == NULL)
    return next->extents (next, count, offset, flags, extents, err);
  return cache_extents (h->scope, &c, count, offset, flags, extents, err);
}

/* Reads and cache requests pass the gate, nothing else. */
static int
cacheextents_pread (nbdkit_next *next, void *handle,
                    void *buf, uint32_t count, uint64_t offset,
                    uint32_t flags, int *err)
{
  struct gate *g = gate_of (handle);
  int r;

  if (g)
    gate_enter (g);
  r = next->pread (next, buf, count, offset, flags, err);
  if (g)
    gate_leave (g);
  return r;
}

static int
cacheextents_cache (nbdkit_next *next, void *handle,
                    uint32_t count, uint64_t offset, uint32_t flags,
                    int *err)
{
  struct gate *g = gate_of (handle);
  int r;

  if (g)
    gate_enter (g);
  r = next->cache (next, count, offset, flags, err);
  if (g)
    gate_leave (g);
  return r;
}

/* Writes forget what they may change, before and after (rule W in
 * writes.c); with FUA they also make earlier writes visible, as a flush
 * does (rule F).
 */
enum write_kind { WRITE_PWRITE, WRITE_TRIM, WRITE_ZERO };

static int
do_write (nbdkit_next *next, struct handle *h, enum write_kind kind,
          const void *buf, uint32_t count, uint64_t offset, uint32_t flags,
          int *err)
{
  struct flush_op fl;
  struct write_op w;
  struct gate *g = gate_of (h);
  bool fua = flags & NBDKIT_FLAG_FUA;
  int r = -1;

  if (fua)
    flush_begin (&fl, &h->dirty, true);
  write_begin (&w, offset, count);
  if (g)
    gate_enter (g);
  switch (kind) {
  case WRITE_PWRITE:
    r = next->pwrite (next, buf, count, offset, flags, err);
    break;
  case WRITE_TRIM:
    r = next->trim (next, count, offset, flags, err);
    break;
  case WRITE_ZERO:
    r = next->zero (next, count, offset, flags, err);
    break;
  }
  if (g)
    gate_leave (g);
  write_end (&w, &h->dirty);
  stats_count_connection (&h->stats, STATS_INVALIDATIONS, 1);
  if (fua)
    flush_end (&fl, &h->dirty, r == 0);
  return r;
}

static int
cacheextents_pwrite (nbdkit_next *next, void *handle,
                     const void *buf, uint32_t count, uint64_t offset,
                     uint32_t flags, int *err)
{
  return do_write (next, handle, WRITE_PWRITE, buf, count, offset, flags, err);
}

static int
cacheextents_trim (nbdkit_next *next, void *handle,
                   uint32_t count, uint64_t offset, uint32_t flags,
                   int *err)
{
  return do_write (next, handle, WRITE_TRIM, NULL, count, offset, flags, err);
}

static int
cacheextents_zero (nbdkit_next *next, void *handle,
                   uint32_t count, uint64_t offset, uint32_t flags,
                   int *err)
{
  return do_write (next, handle, WRITE_ZERO, NULL, count, offset, flags, err);
}

/* A flush makes earlier writes visible to block status (rule F). */
static int
cacheextents_flush (nbdkit_next *next, void *handle, uint32_t flags,
                    int *err)
{
  struct handle *h = handle;
  struct flush_op fl;
  struct gate *g = gate_of (h);
  int r;

  flush_begin (&fl, &h->dirty, false);
  if (g)
    gate_enter (g);
  r = next->flush (next, flags, err);
  if (g)
    gate_leave (g);
  flush_end (&fl, &h->dirty, r == 0);
  return r;
}

static struct nbdkit_filter filter = {
  .name              = "cacheextents",
  .longname          = "cacheextents " CACHEEXTENTS_VERSION
                       ", exact block status cache",
  .load              = cacheextents_load,
  .unload            = cacheextents_unload,
  .config            = cacheextents_config,
  .config_complete   = cacheextents_config_complete,
  .config_help       = cacheextents_config_help,
#if CACHE_BELOW_MODEL
  .thread_model      = cacheextents_thread_model,
#endif
  .get_ready         = cacheextents_get_ready,
  .open              = cacheextents_open,
  .prepare           = cacheextents_prepare,
  .finalize          = cacheextents_finalize,
  .close             = cacheextents_close,
  .extents           = cacheextents_extents,
  .pread             = cacheextents_pread,
  .cache             = cacheextents_cache,
  .pwrite            = cacheextents_pwrite,
  .trim              = cacheextents_trim,
  .zero              = cacheextents_zero,
  .flush             = cacheextents_flush,
};

NBDKIT_REGISTER_FILTER (filter)
