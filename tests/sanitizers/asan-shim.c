/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright the cacheextents authors.
 */
/* A preload shim for the ASan runs of nbdkit (tests/sanitizers/run.sh
 * puts it after the ASan and UBSan runtimes in LD_PRELOAD).  It has
 * two jobs, both about running an uninstrumented nbdkit under ASan;
 * neither changes what the filter does.
 *
 * 1. dlclose does nothing.  LeakSanitizer checks for leaks when nbdkit
 *    exits, after nbdkit has called dlclose on every filter and plugin.
 *    A block allocated by an unloaded module then has "<unknown
 *    module>" frames and nobody can tell whether it is ours, and a
 *    block still pointed to by the static data of an unloaded module
 *    counts as leaked.  Keeping every module mapped lets the report
 *    name the function and source line.  nbdkit still calls each
 *    module's .unload first.
 *
 * 2. swift_demangle exists.  With the runtime preloaded (rather than
 *    linked into an instrumented executable), ASan initialises on the
 *    first malloc.  In nbdkit that malloc happens inside newlocale,
 *    called by the ELF constructor of libp11-kit (pulled in by
 *    GnuTLS), while newlocale holds glibc's internal locale lock for
 *    writing.  Part of ASan's start-up looks up the optional symbol
 *    swift_demangle with dlsym and then calls dlerror to clear the
 *    failure; dlerror translates the message with dcgettext, which
 *    takes and releases the same lock as a reader.  glibc refuses the
 *    read lock (the thread already holds it as writer) but releases it
 *    anyway, so the lock ends up with -1 readers.  Nothing shows until
 *    a later dcgettext (any strerror or %m) flips it into a read phase:
 *    then the freelocale in libp11-kit's destructor waits for ever at
 *    exit, and nbdkit hangs after serving.  Seen with gdb: the lock
 *    word is 0xfffffff9 before main.  When the lookup succeeds,
 *    dlerror has nothing to translate and the lock stays intact.
 *    ASan calls this only to demangle Swift names ("_T..."); returning
 *    NULL means "not a Swift name".
 */

#include <stddef.h>
#include <stdint.h>

int
dlclose (void *handle)
{
  (void) handle;
  return 0;
}

char *
swift_demangle (const char *mangled, size_t len, char *out, size_t *outlen,
                uint32_t flags)
{
  (void) mangled; (void) len; (void) out; (void) outlen; (void) flags;
  return NULL;
}
