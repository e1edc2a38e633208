/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: checks of parameter values (see params.h). */

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "params.h"

/* The size suffixes and the power of 2 each multiplies by. */
static const struct {
  char suffix;
  unsigned shift;
} units[] = {
  { 'b', 0 }, { 's', 9 }, { 'k', 10 }, { 'm', 20 },
  { 'g', 30 }, { 't', 40 }, { 'p', 50 }, { 'e', 60 },
};

enum param_size_check
param_check_size (const char *value)
{
  const char *p = value;
  uint64_t n = 0;
  unsigned shift = 0;
  bool too_large = false;
  size_t i;

  while (isspace ((unsigned char) *p))
    p++;
  if (*p == '+')
    p++;
  if (!isdigit ((unsigned char) *p))
    return PARAM_SIZE_SYNTAX;
  for (; isdigit ((unsigned char) *p); p++) {
    unsigned d = *p - '0';

    if (n > ((uint64_t) INT64_MAX - d) / 10)
      too_large = true;
    else
      n = n * 10 + d;
  }
  if (*p) {
    for (i = 0; i < sizeof units / sizeof units[0]; i++)
      if (tolower ((unsigned char) *p) == units[i].suffix)
        break;
    if (i == sizeof units / sizeof units[0] || p[1] != '\0')
      return PARAM_SIZE_SYNTAX;
    shift = units[i].shift;
  }
  if (too_large || n > (uint64_t) INT64_MAX >> shift)
    return PARAM_SIZE_TOO_LARGE;
  return PARAM_SIZE_OK;
}

bool
param_is_bool (const char *value)
{
  static const char *const words[] = {
    "1", "true", "t", "yes", "y", "on",
    "0", "false", "f", "no", "n", "off",
  };
  size_t i;

  for (i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strcasecmp (value, words[i]) == 0)
      return true;
  return false;
}

bool
param_is_small_unsigned (const char *value)
{
  size_t len = strspn (value, "0123456789");

  if (strcmp (value, "0") == 0)
    return true;
  return len >= 1 && len <= 9 && value[len] == '\0' && value[0] != '0';
}

void
param_format_size (uint64_t n, char *buf, size_t len)
{
  static const char big[] = "KMGTPE";
  int i;

  for (i = 5; i >= 0; i--) {
    unsigned shift = 10 * (i + 1);

    if (n != 0 && (n & ((UINT64_C (1) << shift) - 1)) == 0) {
      snprintf (buf, len, "%" PRIu64 "%c", n >> shift, big[i]);
      return;
    }
  }
  snprintf (buf, len, "%" PRIu64, n);
}
