# Is this LeakSanitizer log nothing but leaks of nbdkit's own?
#
#   awk -v nbdkit=/usr/bin/nbdkit -f nbdkit-leaks.awk LOG
#
# Exit 0 if so (run-one.sh then ignores the log), 1 if the log has
# anything else.
#
# This plays the part of an LSan suppression file.  LSan suppressions
# cannot be precise enough here: they match a module or function name
# in any frame of a stack, and nbdkit and its modules have no symbols,
# so a suppression could only name a module, and every allocation of
# ours has nbdkit frames below it.  Instead: a *direct* leak is
# accepted only when its complete stack (the runs use
# fast_unwind_on_malloc=0) consists of the allocator, then frames of
# nbdkit's binary and of one module listed below, then libc's thread
# start.  An allocation by our code always has a frame of ours
# ('in FUNCTION src/FILE.c:LINE'); one made by nbdkit on our behalf
# (nbdkit_extents_new, say) has our caller's frame.  Indirect leaks
# (blocks reachable only from leaked blocks) follow their direct leak.
# Any other report (an ASan error, a direct leak with another frame,
# an incomplete stack) is not matched.
#
# The known leaks, each reproduced without our filter:
#
# 1. nbdkit's binary alone: the connection's chain of backend contexts
#    (280 bytes each, malloc in backend_open) and every layer's handle,
#    when a connection finishes after nbdkit was told to quit: nbdkit
#    1.32 then skips backend_close on purpose ("Don't call the plugin
#    again if quit has been set because the main thread will be in the
#    process of unloading it", server/connections.c).  The nbdkit
#    wrapper (bin/nbdkit) waits for the server to go idle before the
#    --run command exits, so this is rare now; it stays accepted for a
#    client that outlives its command.  Seen with 'nbdkit file dir=D
#    --run ...' and no filter at all.
#
# 2. nbdkit-multi-conn-filter.so: 8 bytes per connection, realloc'd in
#    the filter's .prepare and never freed, whatever the timing:
#      nbdkit -U - --filter=multi-conn memory 1M multi-conn-mode=disable \
#        --run 'nbdinfo --size $uri; nbdinfo --size $uri'
#    with the ASan runtime preloaded reports "Direct leak of 16 byte(s)
#    in 2 object(s)" from nbdkit-multi-conn-filter.so+0x2a4a.  The test
#    that uses it puts it below our filter, so none of our frames can
#    be above it on a stack.

function known_module(frame) {
  return index(frame, "(" nbdkit "+0x") ||
    frame ~ /\(\/usr\/lib\/[^ ]*\/nbdkit\/filters\/nbdkit-multi-conn-filter\.so\+0x[0-9a-f]+\)$/
}

function endrecord() {
  if (inrecord && !base)
    bad = 1                         # an incomplete stack proves nothing
  inrecord = 0
}

BEGIN {
  if (nbdkit == "")
    nbdkit = "/usr/bin/nbdkit"
  direct = 0; bad = 0; leakreport = 0; inrecord = 0
}

/ERROR: LeakSanitizer: detected memory leaks/ { leakreport = 1; next }
/ERROR: / { bad = 1 }
/runtime error:/ { bad = 1 }

/^Direct leak of / { endrecord(); direct++; inrecord = 1; base = 0; next }
/^Indirect leak of / { endrecord(); next }
/^ *$/ { endrecord(); next }

inrecord && /^ *#[0-9]+ / {
  if ($1 == "#0")
    next                            # the allocator interceptor
  if ($0 ~ / in (start_thread|clone3?|__libc_start_call_main|__libc_start_main_impl) /) {
    base = 1
    next
  }
  if (known_module($0))
    next
  bad = 1
}

END {
  endrecord()
  exit (leakreport && direct > 0 && !bad) ? 0 : 1
}
