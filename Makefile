# cacheextents: an exact, concurrent block-status cache filter for nbdkit.
#
#   make             build build/nbdkit-cacheextents-filter.so and its man page
#                    against the nbdkit that pkg-config reports (set
#                    PKG_CONFIG_PATH for an nbdkit under its own prefix)
#   make check       install missing Debian packages, build, run every test
#                    on Debian's nbdkit (plain and under ASan+UBSan), a
#                    short fuzz run, then the shell tests again on each
#                    nbdkit of $(NBDKIT_VERSIONS), built from ../shared
#   make check TESTS="tests/test-x.sh ..."   only those tests, on each
#   make check-unit  the C unit tests;  make check-shell  the shell tests
#   make check-nbdkit-VERSION   the shell tests on nbdkit VERSION alone
#                    (any version whose tarball is in ../shared/nbdkit)
#   make demo        install, build, show the filter against a slow backend
#   make bench       the side-by-side benchmark (long); bench-quick is short;
#                    bench-cdi only KubeVirt CDI's stack, on every nbdkit
#   make install     into nbdkit's filterdir and mandir (DESTDIR, prefix);
#                    refuses to replace a file it did not install unless
#                    DIVERT=yes (dpkg-divert); see scripts/install.sh
#   make uninstall   undo exactly what make install did
#   make deb         the Debian package, in build/deb (mk/packages.mk)
#   make rpm         the RPM (rpm/cacheextents.spec), in build/rpm

# make's built-in default for CC is cc; keep it only if nobody chose.
ifeq ($(origin CC),default)
CC = gcc
endif
PKG_CONFIG ?= pkg-config
BUILD ?= build

# Callbacks have fixed signatures, so unused parameters are normal.
# Warnings are fatal in the project's own checks (make check and the
# other check targets set WERROR), not in a packager's plain make.
WERROR ?=
WARN = -Wall -Wextra -Wshadow -Wvla $(WERROR) -Wno-unused-parameter
CFLAGS ?= -O2 -g
CPPFLAGS ?=
LDFLAGS ?=
# nbdkit's headers are found in the includedir of the nbdkit pkg-config
# reports (its Cflags are empty) and included as system headers, so
# that a warning inside them cannot break the build.
NBDKIT_VERSION := $(shell $(PKG_CONFIG) --modversion nbdkit 2>/dev/null)
NBDKIT_INCLUDEDIR := $(shell $(PKG_CONFIG) --variable=includedir nbdkit \
	2>/dev/null)
NBDKIT_CFLAGS := $(patsubst -I%,-isystem %,\
	$(shell $(PKG_CONFIG) --cflags nbdkit 2>/dev/null)) \
	$(addprefix -isystem ,$(filter-out /usr/include,$(NBDKIT_INCLUDEDIR)))
ALL_CPPFLAGS = -D_GNU_SOURCE $(NBDKIT_CFLAGS) $(CPPFLAGS)
ALL_CFLAGS = -std=gnu11 $(WARN) -fPIC -pthread -fvisibility=hidden \
	$(CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS_SO = -shared -pthread $(LDFLAGS) $(EXTRA_LDFLAGS)

# Installation: nbdkit loads --filter=NAME from its filterdir, so that
# is where the filter goes; a prefix given on the command line moves
# filterdir along with it (pkg-config --define-variable).
prefix ?= $(or $(shell $(PKG_CONFIG) --variable=prefix nbdkit 2>/dev/null),\
	/usr/local)
filterdir ?= $(or $(shell $(PKG_CONFIG) --define-variable=prefix=$(prefix) \
	--variable=filterdir nbdkit 2>/dev/null),$(prefix)/lib/nbdkit/filters)
datadir ?= $(prefix)/share
mandir ?= $(datadir)/man
DIVERT ?= no

FILTER = $(BUILD)/nbdkit-cacheextents-filter.so
MANPAGE = $(BUILD)/nbdkit-cacheextents-filter.1
SRCS = $(wildcard src/*.c)
OBJS = $(SRCS:src/%.c=$(BUILD)/%.o)
HDRS = $(wildcard src/*.h)

UNIT_TESTS = $(BUILD)/unit-map
SHELL_TESTS = $(wildcard tests/test-*.sh)
# make check TESTS="tests/test-x.sh ...": run only these (on both
# nbdkits), without the fuzz and sanitizer runs.
TESTS ?=

# The other nbdkits the shell tests run on: those users run (1.38.5 on
# EL9 and in CDI, 1.44.1 on EL10, the last with a bundled cacheextents)
# and the newest reachable (1.45.2).  Each is built once by
# scripts/build-nbdkit.sh from ../shared/nbdkit/ into
# build/nbdkit-VERSION/prefix (about 4 minutes each); the filter built
# against its headers goes to build-VERSION/.  NBDKIT_VERSIONS= (empty)
# leaves them out of make check.
NBDKIT_VERSIONS ?= 1.38.5 1.44.1 1.45.2
nbdkit_prefix = $(CURDIR)/build/nbdkit-$(1)/prefix

.PHONY: all deps check-deps install uninstall check check-unit check-shell \
	demo bench bench-cdi bench-quick clean distclean FORCE

all: $(FILTER) $(MANPAGE)

# Debian packages beyond the build's own (scripts/deps.sh) that the
# tests need: clang and its runtime for the fuzzer; the package tools
# for tests/test-deb.sh and tests/test-rpm.sh.
CHECK_PKGS = clang libclang-rt-14-dev dpkg-dev debhelper fakeroot lintian \
	rpm

deps:
	@scripts/deps.sh

check-deps:
	@scripts/deps.sh $(CHECK_PKGS)

$(BUILD):
	mkdir -p $@

# What the objects were built with: the nbdkit and every flag.  A
# change (another PKG_CONFIG_PATH, CFLAGS, WERROR) rebuilds them.
BUILD_FLAGS = nbdkit $(NBDKIT_VERSION) $(NBDKIT_INCLUDEDIR); \
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS); $(LDFLAGS_SO)
$(BUILD)/flags: FORCE | $(BUILD)
	$(file >$@.tmp,$(BUILD_FLAGS))
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(BUILD)/%.o: src/%.c $(HDRS) $(BUILD)/flags
	@if [ -z '$(NBDKIT_VERSION)' ]; then \
	  echo "nbdkit not found by $(PKG_CONFIG): install nbdkit-plugin-dev" \
	    "(make deps) or set PKG_CONFIG_PATH to <nbdkit prefix>/lib/pkgconfig" >&2; \
	  exit 1; fi
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(FILTER): $(OBJS)
	$(CC) $(LDFLAGS_SO) -o $@ $(OBJS)

$(MANPAGE): src/nbdkit-cacheextents-filter.pod | $(BUILD)
	pod2man --section=1 --center=cacheextents --release=cacheextents \
	  --name=nbdkit-cacheextents-filter $< > $@.tmp
	mv $@.tmp $@

# Unit tests: the map compiled alone, without nbdkit.
$(BUILD)/unit-map: tests/unit-map.c src/map.c src/map.h $(BUILD)/flags
	$(CC) -std=gnu11 $(WARN) -D_GNU_SOURCE $(CPPFLAGS) $(CFLAGS) \
	  $(EXTRA_CFLAGS) -Isrc -o $@ tests/unit-map.c src/map.c $(LDFLAGS) \
	  $(EXTRA_LDFLAGS)

# Install and uninstall: scripts/install.sh keeps a manifest of what it
# did in $(datadir)/cacheextents/ and never replaces a file it did not
# install, unless DIVERT=yes (dpkg-divert, for a Debian package's file).
INSTALL_VARS = DESTDIR='$(DESTDIR)' filterdir='$(filterdir)' \
	mandir='$(mandir)' datadir='$(datadir)' DIVERT='$(DIVERT)'

install: $(FILTER) $(MANPAGE)
	@$(INSTALL_VARS) scripts/install.sh install $(FILTER) $(MANPAGE)

uninstall:
	@$(INSTALL_VARS) scripts/install.sh uninstall

# Warnings are fatal in the project's own checks.
CHECK_GOALS = check check-unit check-shell check-asan \
	check-tsan check-valgrind fuzz fuzz-quick stress \
	$(filter check-nbdkit-%,$(MAKECMDGOALS))
ifneq ($(filter $(CHECK_GOALS),$(MAKECMDGOALS)),)
WERROR = -Werror
export WERROR
endif

check-unit: $(UNIT_TESTS)
	tests/run-tests.sh $(UNIT_TESTS)

# The tests take the filter of this BUILD unless CACHEEXTENTS_FILTER
# names another.
TEST_FILTER = CACHEEXTENTS_FILTER="$${CACHEEXTENTS_FILTER:-$(abspath $(FILTER))}"

check-shell: all
	$(TEST_FILTER) tests/run-tests.sh $(or $(TESTS),$(SHELL_TESTS))

# nbdkit VERSION, built once (about 4 minutes), and the filter built
# against its headers, in build-VERSION/.
filter-for-%:
	scripts/build-nbdkit.sh $* >/dev/null
	PKG_CONFIG_PATH='$(call nbdkit_prefix,$*)/lib/pkgconfig' \
	  $(MAKE) --no-print-directory BUILD=build-$* all

# The shell tests on nbdkit VERSION: its server first on PATH (with its
# plugins and filters), the filter built against its headers.
check-nbdkit-%: filter-for-%
	@echo "== shell tests on nbdkit $* ($(call nbdkit_prefix,$*))"
	PATH='$(call nbdkit_prefix,$*)/sbin':"$$PATH" \
	PKG_CONFIG_PATH='$(call nbdkit_prefix,$*)/lib/pkgconfig' \
	CACHEEXTENTS_FILTER='$(CURDIR)/build-$*/nbdkit-cacheextents-filter.so' \
	TEST_LOGDIR='$(CURDIR)/build-$*/test-logs' \
	  tests/run-tests.sh $(or $(TESTS),$(SHELL_TESTS))

# make check: the ASan+UBSan run (mk/sanitizers.mk, on the nbdkit
# pkg-config reports only), the plain run on that nbdkit, and the run on
# each nbdkit of $(NBDKIT_VERSIONS).  All run even if one fails; each prints
# its summary, a failure in any fails make check, and the last line is
# the sum (scripts/check-suite.sh).
check: check-deps
	$(MAKE) all $(UNIT_TESTS)
ifeq ($(TESTS),)
	$(MAKE) fuzz-quick
endif
	@sum='$(CURDIR)/$(BUILD)/check-summary'; rm -f "$$sum"; rc=0; \
	$(if $(TESTS),,scripts/check-suite.sh "$$sum" \
	  'ASan+UBSan on nbdkit $(NBDKIT_VERSION)' \
	  $(MAKE) --no-print-directory check-asan || rc=1;) \
	echo "== tests on nbdkit $(NBDKIT_VERSION)"; \
	scripts/check-suite.sh "$$sum" 'nbdkit $(NBDKIT_VERSION)' \
	  env $(TEST_FILTER) tests/run-tests.sh \
	  $(or $(TESTS),$(UNIT_TESTS) $(SHELL_TESTS)) || rc=1; \
	$(foreach v,$(NBDKIT_VERSIONS),scripts/check-suite.sh "$$sum" \
	  'nbdkit $(v)' \
	  $(MAKE) --no-print-directory check-nbdkit-$(v) || rc=1;) \
	scripts/check-suite.sh "$$sum" --total || rc=1; \
	exit $$rc

demo: deps
	$(MAKE) all
	scripts/demo.sh

# The full benchmark also measures on each nbdkit of $(NBDKIT_VERSIONS).
bench: deps
	$(MAKE) all $(NBDKIT_VERSIONS:%=filter-for-%)
	NBDKIT_VERSIONS='$(NBDKIT_VERSIONS)' bench/bench.sh full

# KubeVirt CDI's stack alone, on Debian's nbdkit and each of $(NBDKIT_VERSIONS).
bench-cdi: deps
	$(MAKE) all $(NBDKIT_VERSIONS:%=filter-for-%)
	NBDKIT_VERSIONS='$(NBDKIT_VERSIONS)' bench/bench.sh cdi

bench-quick: deps
	$(MAKE) all
	bench/bench.sh quick

# The nbdkit built in build/nbdkit-VERSION/ is kept (it takes minutes);
# distclean removes it too.
clean:
	rm -rf $(filter-out $(BUILD)/nbdkit-%,$(wildcard $(BUILD)/*)) \
	  build-[0-9]*

distclean: clean
	rm -rf $(BUILD)

# Further targets (stress, sanitizers, fuzzing) live in mk/*.mk.
include $(wildcard mk/*.mk)
