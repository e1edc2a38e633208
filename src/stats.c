/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: counters and the summary line. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "stats.h"

struct stats stats_global;

static const char *const names[STATS_NR_COUNTERS] = {
  [STATS_REQUESTS] = "requests",
  [STATS_HITS] = "hits",
  [STATS_MISSES] = "misses",
  [STATS_WAITS] = "waits",
  [STATS_BACKEND_CALLS] = "backend-calls",
  [STATS_PREFETCH_CALLS] = "prefetch-calls",
  [STATS_BACKEND_ERRORS] = "failed-calls",
  [STATS_BYTES_CACHED] = "bytes-from-cache",
  [STATS_EVICTIONS] = "evictions",
  [STATS_INVALIDATIONS] = "invalidations",
};

/* The counters that only the global set keeps (see stats.h). */
static const bool global_only[STATS_NR_COUNTERS] = {
  [STATS_PREFETCH_CALLS] = true,
  [STATS_BACKEND_ERRORS] = true,
  [STATS_EVICTIONS] = true,
};

void
stats_count (struct stats *conn, enum stats_counter k, uint64_t n)
{
  if (conn)
    __atomic_fetch_add (&conn->c[k], n, __ATOMIC_RELAXED);
  __atomic_fetch_add (&stats_global.c[k], n, __ATOMIC_RELAXED);
}

void
stats_count_connection (struct stats *conn, enum stats_counter k, uint64_t n)
{
  __atomic_fetch_add (&conn->c[k], n, __ATOMIC_RELAXED);
}

static void
format (const struct stats *s, bool connection, char *buf, size_t len)
{
  size_t used = 0;
  int i;

  buf[0] = '\0';
  for (i = 0; i < STATS_NR_COUNTERS && used < len; ++i) {
    uint64_t v = __atomic_load_n (&s->c[i], __ATOMIC_RELAXED);
    int r;

    if (connection && global_only[i])
      continue;
    r = snprintf (buf + used, len - used, "%s%s=%" PRIu64,
                  used ? " " : "", names[i], v);
    if (r < 0)
      break;
    used += r;
  }
}

void
stats_format (const struct stats *s, char *buf, size_t len)
{
  format (s, false, buf, len);
}

void
stats_format_connection (const struct stats *s, char *buf, size_t len)
{
  format (s, true, buf, len);
}

int
stats_write_file (const char *path)
{
  char line[512];
  FILE *fp;

  stats_format (&stats_global, line, sizeof line);
  fp = fopen (path, "w");
  if (fp == NULL)
    return -1;
  fprintf (fp, "cacheextents: %s\n", line);
  return fclose (fp);
}
