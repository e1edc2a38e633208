/* cacheextents: filter glue.
 *
 * Parameters, connection lifetime and the data-path callbacks.  The
 * work is done in cache.c (the map per scope, writes, single flight)
 * and prefetch.c (background workers).
 */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cache.h"
#include "common.h"
#include "map.h"
#include "prefetch.h"
#include "stats.h"

#define DEFAULT_WINDOW (UINT64_C (4) << 30)
#define DEFAULT_MAX_SIZE (UINT64_C (64) << 20)
#define DEFAULT_GRANULARITY (UINT64_C (2) << 20)
#define MAX_GRANULARITY (UINT64_C (1) << 30)
#define DEFAULT_PREFETCH_THREADS 8
#define MIN_WINDOW 512
#define MAX_WINDOW (UINT64_C (1) << 62)
#define MIN_MAX_SIZE 4096

static char *statsfile;

struct handle {
  char *exportname;
  int is_tls;
  struct scope *scope;          /* NULL until .prepare succeeds */
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
}

static void
cacheextents_unload (void)
{
  char line[512];

  stats_format (&stats_global, line, sizeof line);
  nbdkit_debug ("cacheextents: total %s", line);
  if (statsfile && stats_write_file (statsfile) == -1)
    nbdkit_debug ("cacheextents: writing %s: %m", statsfile);
  free (statsfile);
  cache_free ();
}

/* Parse a size parameter within [min, max]. */
static int
parse_size_param (const char *key, const char *value,
                  uint64_t min, uint64_t max, uint64_t *out)
{
  int64_t r = nbdkit_parse_size (value);

  if (r == -1) {
    nbdkit_error ("%s=%s: not a valid size", key, value);
    return -1;
  }
  if ((uint64_t) r < min || (uint64_t) r > max) {
    nbdkit_error ("%s=%s: out of range: must be between %" PRIu64
                  " and %" PRIu64 " bytes", key, value, min, max);
    return -1;
  }
  *out = r;
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
    if (parse_size_param (key, value, 512, MAX_GRANULARITY,
                          &cache_config.granularity) == -1)
      return -1;
    if (cache_config.granularity & (cache_config.granularity - 1)) {
      nbdkit_error ("%s=%s: must be a power of 2", key, value);
      return -1;
    }
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
    r = nbdkit_parse_bool (value);
    if (r == -1) {
      nbdkit_error ("%s=%s: must be a boolean", key, value);
      return -1;
    }
    cache_config.prefetch = r;
    return 0;
  }
  if (strcmp (key, "cacheextents-prefetch-threads") == 0) {
    if (nbdkit_parse_unsigned (key, value,
                               &cache_config.prefetch_threads) == -1) {
      nbdkit_error ("%s=%s: not a valid number of threads", key, value);
      return -1;
    }
    if (cache_config.prefetch_threads < 1 ||
        cache_config.prefetch_threads > PREFETCH_MAX_THREADS) {
      nbdkit_error ("%s=%s: out of range: must be between 1 and %d",
                    key, value, PREFETCH_MAX_THREADS);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "cacheextents-statsfile") == 0) {
    if (value[0] == '\0') {
      nbdkit_error ("%s=%s: the file name must not be empty", key, value);
      return -1;
    }
    free (statsfile);
    statsfile = strdup (value);
    if (statsfile == NULL) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    return 0;
  }
  return next (nxdata, key, value);
}

#define cacheextents_config_help \
  "cacheextents-window=SIZE        Least bytes asked of the backend on a miss.\n" \
  "cacheextents-max-size=SIZE      Memory bound of the extent maps.\n" \
  "cacheextents-granularity=SIZE   Writes forget cached extents this near.\n" \
  "cacheextents-scope=auto|export|connection\n" \
  "                                Which connections share a map.\n" \
  "cacheextents-prefetch=BOOL      Fill the map in the background.\n" \
  "cacheextents-prefetch-threads=N Prefetch workers per export.\n" \
  "cacheextents-statsfile=FILE     Write the summary line to FILE at exit."

static int
cacheextents_config_complete (nbdkit_next_config_complete *next,
                              nbdkit_backend *nxdata)
{
  /* The map must hold at least a handful of extents to be useful. */
  if (cache_config.max_size < 16 * map_extent_cost ()) {
    nbdkit_error ("cacheextents-max-size=%" PRIu64 ": too small: must hold "
                  "at least 16 extents (%zu bytes)", cache_config.max_size,
                  16 * map_extent_cost ());
    return -1;
  }
  if (cache_init () == -1)
    return -1;
  return next (nxdata);
}

static int
cacheextents_get_ready (int thread_model)
{
  /* Workers call the backend beside the clients' own requests. */
  if (cache_config.prefetch && thread_model != NBDKIT_THREAD_MODEL_PARALLEL) {
    nbdkit_debug ("cacheextents: prefetch disabled: the thread model "
                  "is not parallel");
    cache_config.prefetch = false;
  }
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
  return h;
}

/* Join a scope once the export's size and multi-conn are known. */
static int
cacheextents_prepare (nbdkit_next *next, void *handle, int readonly)
{
  struct handle *h = handle;
  int64_t size = next->get_size (next);
  int multi_conn = next->can_multi_conn (next);

  if (size == -1)
    return -1;
  h->scope = cache_scope_attach (h->exportname, h->is_tls, multi_conn, size);
  return h->scope ? 0 : -1;
}

/* Workers this connection started may not outlive its contexts. */
static int
cacheextents_finalize (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  if (h->scope)
    prefetch_stop (h->scope, h);
  return 0;
}

static void
cacheextents_close (void *handle)
{
  struct handle *h = handle;
  char line[512];

  if (h->scope) {
    prefetch_stop (h->scope, h);
    cache_scope_detach (h->scope);
  }
  stats_format (&h->stats, line, sizeof line);
  nbdkit_debug ("cacheextents: connection %s", line);
  free (h->exportname);
  free (h);
}

static int
cacheextents_extents (nbdkit_next *next, void *handle,
                      uint32_t count, uint64_t offset, uint32_t flags,
                      struct nbdkit_extents *extents, int *err)
{
  struct handle *h = handle;

  if (h->scope == NULL)
    return next->extents (next, count, offset, flags, extents, err);
  prefetch_start (h->scope, h, next, count, offset);
  return cache_extents (h->scope, next, count, offset, flags, extents,
                        &h->stats, err);
}

/* Writes: forget what they may change, before and after. */
static int
cacheextents_pwrite (nbdkit_next *next, void *handle,
                     const void *buf, uint32_t count, uint64_t offset,
                     uint32_t flags, int *err)
{
  struct cache_write w;
  int r;

  cache_write_begin (&w, offset, count);
  r = next->pwrite (next, buf, count, offset, flags, err);
  cache_write_end (&w);
  return r;
}

static int
cacheextents_trim (nbdkit_next *next, void *handle,
                   uint32_t count, uint64_t offset, uint32_t flags,
                   int *err)
{
  struct cache_write w;
  int r;

  cache_write_begin (&w, offset, count);
  r = next->trim (next, count, offset, flags, err);
  cache_write_end (&w);
  return r;
}

static int
cacheextents_zero (nbdkit_next *next, void *handle,
                   uint32_t count, uint64_t offset, uint32_t flags,
                   int *err)
{
  struct cache_write w;
  int r;

  cache_write_begin (&w, offset, count);
  r = next->zero (next, count, offset, flags, err);
  cache_write_end (&w);
  return r;
}

static struct nbdkit_filter filter = {
  .name              = "cacheextents",
  .longname          = "nbdkit exact block status cache filter",
  .load              = cacheextents_load,
  .unload            = cacheextents_unload,
  .config            = cacheextents_config,
  .config_complete   = cacheextents_config_complete,
  .config_help       = cacheextents_config_help,
  .get_ready         = cacheextents_get_ready,
  .open              = cacheextents_open,
  .prepare           = cacheextents_prepare,
  .finalize          = cacheextents_finalize,
  .close             = cacheextents_close,
  .extents           = cacheextents_extents,
  .pwrite            = cacheextents_pwrite,
  .trim              = cacheextents_trim,
  .zero              = cacheextents_zero,
};

NBDKIT_REGISTER_FILTER (filter)
