# Sanitizer and valgrind runs (the scripts are in tests/sanitizers/).
#
#   make check-asan      the filter built with ASan+UBSan (build-asan/),
#                        loaded into nbdkit with the runtimes preloaded,
#                        under the shell tests ($(ASAN_TESTS)); the map's
#                        unit test and tests/tsan-harness.c built with
#                        ASan+UBSan too.  A few minutes; `make check`
#                        runs it.
#   make check-tsan      tests/tsan-harness.c (all of src/ with stand-ins
#                        for nbdkit, many threads, a model backend) under
#                        ThreadSanitizer (build-tsan/), then nbdkit and the
#                        filter under valgrind's helgrind
#                        ($(HELGRIND_TESTS), build-valgrind/).
#   make check-valgrind  nbdkit and the filter (-O1 -g, build-valgrind/)
#                        under memcheck ($(VALGRIND_TESTS)).
#
# Every run ends with 'N passed, N failed, N skipped'.  A test fails if
# it fails or if any sanitizer or valgrind report was written (see
# tests/sanitizers/run-one.sh); reports stay in build-*/san-*/.
#
# Variables:
#   ASAN_TESTS, VALGRIND_TESTS, HELGRIND_TESTS   the scripts each runs
#   ASAN_EXCLUDE      patterns left out of ASAN_TESTS (slow ones)
#   HARNESS_SECONDS   how long the TSan harness runs (default 10)
#   ASAN_HARNESS_SECONDS  the same for the ASan build (default 5)
#   HARNESS_SEED      its seed (default 1; printed)
#   SAN_CC            compiler for the instrumented builds (gcc: the
#                     ASan runtime preloaded into nbdkit is gcc's)

SAN_CC ?= gcc
export SAN_CC
ASAN_BUILD = build-asan
TSAN_BUILD = build-tsan
VG_BUILD = build-valgrind

ASAN_CFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all
ASAN_LDFLAGS = -fsanitize=address,undefined

# test-stress.sh is long (make stress); test-memory-bound.sh,
# test-export-names.sh and test-private-memory.sh measure nbdkit's
# resident memory, which ASan's shadow memory, redzones and quarantine
# inflate.  The install tests run make and install, not the
# filter's code.
ASAN_EXCLUDE ?= %-stress.sh %-memory-bound.sh %-install-by-name.sh \
	%-install-foreign.sh %-install-uninstall.sh %-export-names.sh \
	%-private-memory.sh
ASAN_TESTS ?= $(filter-out $(ASAN_EXCLUDE),$(wildcard tests/test-*.sh)) \
	tests/sanitizers/scenario.sh
# Under valgrind nbdkit runs 20-100 times slower: a subset, without
# the tests that time what prefetch does (test-prefetch.sh) or run
# long; scenario.sh keeps prefetch on throughout.
VALGRIND_TESTS ?= tests/sanitizers/scenario.sh tests/test-errors.sh \
	tests/test-multi-export.sh tests/test-write-race.sh \
	tests/test-seed-map.sh tests/test-qemu-io.sh tests/test-scope.sh
HELGRIND_TESTS ?= tests/sanitizers/scenario.sh tests/test-write-race.sh
HARNESS_SECONDS ?= 10
ASAN_HARNESS_SECONDS ?= 5
HARNESS_SEED ?= 1
export HARNESS_SECONDS HARNESS_SEED

# The harness links every file of src/ with its own stand-ins for the
# nbdkit API.
HARNESS_CFLAGS = -std=gnu11 $(WARN) -pthread -D_GNU_SOURCE \
	$(NBDKIT_CFLAGS) -Isrc -O1 -g -fno-omit-frame-pointer

.PHONY: check-asan check-tsan check-valgrind asan-build valgrind-build

# The instrumented builds are the ordinary rules of the Makefile run
# with BUILD= another directory; their objects also depend on this file,
# so that a change of the flags here rebuilds them.
ifneq ($(filter $(ASAN_BUILD) $(VG_BUILD),$(BUILD)),)
$(OBJS) $(UNIT_TESTS): mk/sanitizers.mk
endif

asan-build: $(ASAN_BUILD)/asan-shim.so $(ASAN_BUILD)/asan-harness
	$(MAKE) BUILD=$(ASAN_BUILD) CC='$(SAN_CC)' CFLAGS='-O1 -g' \
	  EXTRA_CFLAGS='$(ASAN_CFLAGS)' EXTRA_LDFLAGS='$(ASAN_LDFLAGS)' \
	  $(ASAN_BUILD)/nbdkit-cacheextents-filter.so $(ASAN_BUILD)/unit-map

valgrind-build:
	$(MAKE) BUILD=$(VG_BUILD) CFLAGS='-O1 -g' \
	  $(VG_BUILD)/nbdkit-cacheextents-filter.so

$(ASAN_BUILD)/asan-shim.so: tests/sanitizers/asan-shim.c mk/sanitizers.mk
	mkdir -p $(@D)
	$(SAN_CC) -std=gnu11 $(WARN) -O2 -fPIC -shared -o $@ $<

$(ASAN_BUILD)/asan-harness: tests/tsan-harness.c $(SRCS) $(HDRS) \
		mk/sanitizers.mk
	mkdir -p $(@D)
	$(SAN_CC) $(HARNESS_CFLAGS) $(ASAN_CFLAGS) -o $@ tests/tsan-harness.c \
	  $(SRCS) $(ASAN_LDFLAGS)

$(TSAN_BUILD)/tsan-harness: tests/tsan-harness.c $(SRCS) $(HDRS) \
		mk/sanitizers.mk
	mkdir -p $(@D)
	$(SAN_CC) $(HARNESS_CFLAGS) -fsanitize=thread -o $@ \
	  tests/tsan-harness.c $(SRCS)

# The harnesses take HARNESS_SEED and HARNESS_SECONDS from the
# environment.
check-asan: asan-build
	HARNESS_SECONDS=$(ASAN_HARNESS_SECONDS) \
	tests/sanitizers/run.sh asan $(ASAN_BUILD)/nbdkit-cacheextents-filter.so \
	  $(ASAN_BUILD)/san $(ASAN_BUILD)/unit-map $(ASAN_BUILD)/asan-harness \
	  $(ASAN_TESTS)

# Both parts run even if the first fails.
check-tsan: $(TSAN_BUILD)/tsan-harness valgrind-build
	@rc=0; \
	tests/sanitizers/run.sh tsan - $(TSAN_BUILD)/san \
	  $(TSAN_BUILD)/tsan-harness || rc=1; \
	tests/sanitizers/run.sh helgrind \
	  $(VG_BUILD)/nbdkit-cacheextents-filter.so $(VG_BUILD)/san-helgrind \
	  $(HELGRIND_TESTS) || rc=1; \
	exit $$rc

check-valgrind: valgrind-build
	tests/sanitizers/run.sh memcheck \
	  $(VG_BUILD)/nbdkit-cacheextents-filter.so $(VG_BUILD)/san-memcheck \
	  $(VALGRIND_TESTS)

.PHONY: clean-sanitizers
clean-sanitizers:
	rm -rf $(ASAN_BUILD) $(TSAN_BUILD) $(VG_BUILD)
clean: clean-sanitizers
