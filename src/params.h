/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: checks of parameter values, ahead of nbdkit's parsers.
 *
 * nbdkit_parse_size, nbdkit_parse_bool and nbdkit_parse_unsigned print
 * an error line of their own when they refuse a value, and that line
 * does not always name the parameter.  The filter glue calls these
 * checks first and prints one line naming parameter and value itself;
 * a value that passes a check is one the nbdkit parser accepts without
 * a message (for nbdkit 1.32 and later), so every bad value gives
 * exactly one line.  They use no nbdkit function and take no lock.
 */

#ifndef CACHEEXTENTS_PARAMS_H
#define CACHEEXTENTS_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum param_size_check {
  PARAM_SIZE_OK,          /* nbdkit_parse_size accepts it silently */
  PARAM_SIZE_SYNTAX,      /* not a size at all */
  PARAM_SIZE_TOO_LARGE,   /* a size, but beyond INT64_MAX */
};

/* A size is a decimal number, optionally after blanks and a '+', with
 * at most one suffix of b, s (512), K, M, G, T, P or E (either case),
 * whose value fits in an int64_t.
 */
extern enum param_size_check param_check_size (const char *value);

/* One of 1, true, t, yes, y, on, 0, false, f, no, n, off (any case). */
extern bool param_is_bool (const char *value);

/* "0", or one to nine decimal digits without a leading zero (which
 * nbdkit_parse_unsigned would read as octal).
 */
extern bool param_is_small_unsigned (const char *value);

/* Write n in nbdkit's size syntax, with the largest suffix that divides
 * it exactly ("512", "4K", "1G", "4E") into buf.
 */
extern void param_format_size (uint64_t n, char *buf, size_t len);

#endif /* CACHEEXTENTS_PARAMS_H */
