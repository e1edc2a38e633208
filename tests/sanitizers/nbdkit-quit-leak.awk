# Is this LeakSanitizer log nothing but nbdkit's own leak at shutdown?
#
#   awk -f nbdkit-quit-leak.awk LOG && echo "known, ignore it"
#
# Exit 0 if so, 1 if the log has anything else.
#
# The leak.  When a client disconnects at about the time nbdkit is told
# to quit (with --run: the command has exited and nbdkit sends its
# server SIGTERM), the connection thread runs free_connection after
# 'quit' is set.  nbdkit 1.32 then deliberately skips backend_close
# ("Don't call the plugin again if quit has been set because the main
# thread will be in the process of unloading it", server/connections.c),
# so the connection's chain of backend contexts (280 bytes each, made
# by malloc in backend_open) is never freed, and neither is the handle
# each layer's .open returned, ours included: our .close is simply not
# called.  Which connection hits it depends on timing; it is more
# frequent on a loaded machine.  The same report comes with no filter
# of ours at all (plain 'nbdkit file dir=...' in scenario.sh), and the
# lost context is the top one, allocated before any filter runs.
#
# The rule, checked on the report rather than with an LSan suppression
# (a suppression matches any frame of a stack, and every allocation of
# ours has nbdkit frames further down, so none could say "only
# nbdkit"): every *direct* leak must have been allocated with nothing
# but nbdkit's own code and libc's thread start on its stack (the runs
# use fast_unwind_on_malloc=0, so stacks are complete).  An allocation
# of ours always has a frame of ours (symbolised as 'in FUNCTION
# src/FILE.c:LINE'); one made by nbdkit on our behalf (say
# nbdkit_extents_new) has our caller's frame too.  Indirect leaks are
# then blocks reachable only from those contexts: the handles of the
# layers and what they point to.  Any other kind of report (ASan
# error, UBSan, a direct leak with another frame) is not matched.

# -v nbdkit=PATH names the server binary (default /usr/bin/nbdkit).

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
  if (index($0, "(" nbdkit "+0x") && $NF ~ /\)$/)
    next
  if ($0 ~ / in (start_thread|clone3?|__libc_start_call_main|__libc_start_main_impl) /) {
    base = 1
    next
  }
  bad = 1
}

END {
  endrecord()
  exit (leakreport && direct > 0 && !bad) ? 0 : 1
}
