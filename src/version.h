/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* cacheextents: the release number, in one place.
 *
 * It is shown in --help (the filter's long name), in the summary line
 * logged at exit, and it names the make dist tarball (mk/dist.mk reads
 * it from this file, so keep the define on one line as it is).
 */

#ifndef CACHEEXTENTS_VERSION_H
#define CACHEEXTENTS_VERSION_H

#define CACHEEXTENTS_VERSION "1.1.0"

#endif /* CACHEEXTENTS_VERSION_H */
