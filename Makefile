# cacheextents: an exact, concurrent block-status cache filter for nbdkit.
#
#   make             build build/nbdkit-cacheextents-filter.so and its man page
#   make check       install missing Debian packages, build, run every test
#                    (plain and under ASan+UBSan) and a short fuzz run
#   make demo        install, build, show the filter against a slow backend
#   make bench       the side-by-side benchmark (long); bench-quick is short
#   make install     into nbdkit's filterdir and mandir (DESTDIR, prefix)

CC ?= gcc
PKG_CONFIG ?= pkg-config
BUILD ?= build

# Callbacks have fixed signatures, so unused parameters are normal.
WARN = -Wall -Wextra -Wshadow -Wvla -Werror -Wno-unused-parameter
CFLAGS ?= -O2 -g
NBDKIT_CFLAGS = $(shell $(PKG_CONFIG) --cflags nbdkit 2>/dev/null)
ALL_CFLAGS = -std=gnu11 $(WARN) -fPIC -pthread -D_GNU_SOURCE \
	-fvisibility=hidden $(NBDKIT_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS_SO = -shared -pthread $(LDFLAGS) $(EXTRA_LDFLAGS)

prefix ?= $(shell $(PKG_CONFIG) --variable=prefix nbdkit 2>/dev/null || echo /usr)
filterdir ?= $(shell $(PKG_CONFIG) --variable=filterdir nbdkit 2>/dev/null || \
	echo $(prefix)/lib/nbdkit/filters)
mandir ?= $(prefix)/share/man

FILTER = $(BUILD)/nbdkit-cacheextents-filter.so
MANPAGE = $(BUILD)/nbdkit-cacheextents-filter.1
SRCS = $(wildcard src/*.c)
OBJS = $(SRCS:src/%.c=$(BUILD)/%.o)
HDRS = $(wildcard src/*.h)

UNIT_TESTS = $(BUILD)/unit-map

.PHONY: all deps check-deps install check check-unit check-shell demo bench bench-quick \
	clean

all: $(FILTER) $(MANPAGE)

# Debian packages beyond the build's own (scripts/deps.sh) that the
# tests need: clang and its runtime for the fuzzer.
CHECK_PKGS = clang libclang-rt-14-dev

deps:
	@scripts/deps.sh

check-deps:
	@scripts/deps.sh $(CHECK_PKGS)

$(BUILD):
	mkdir -p $@

$(BUILD)/%.o: src/%.c $(HDRS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(FILTER): $(OBJS)
	$(CC) $(LDFLAGS_SO) -o $@ $(OBJS)

$(MANPAGE): src/nbdkit-cacheextents-filter.pod | $(BUILD)
	pod2man --section=1 --center=cacheextents --release=cacheextents \
	  --name=nbdkit-cacheextents-filter $< > $@.tmp
	mv $@.tmp $@

# Unit tests: the map compiled alone, without nbdkit.
$(BUILD)/unit-map: tests/unit-map.c src/map.c src/map.h | $(BUILD)
	$(CC) -std=gnu11 $(WARN) -D_GNU_SOURCE $(CFLAGS) $(EXTRA_CFLAGS) \
	  -Isrc -o $@ tests/unit-map.c src/map.c $(EXTRA_LDFLAGS)

install: $(FILTER) $(MANPAGE)
	install -d $(DESTDIR)$(filterdir) $(DESTDIR)$(mandir)/man1
	install -m 0755 $(FILTER) $(DESTDIR)$(filterdir)/
	install -m 0644 $(MANPAGE) $(DESTDIR)$(mandir)/man1/

# The ASan+UBSan run (mk/sanitizers.mk) comes first; the plain run's
# summary line is the last thing printed.
check: check-deps
	$(MAKE) all $(UNIT_TESTS)
	$(MAKE) fuzz-quick
	$(MAKE) check-asan
	tests/run-tests.sh $(UNIT_TESTS) tests/test-*.sh

demo: deps
	$(MAKE) all
	scripts/demo.sh

bench: deps
	$(MAKE) all
	bench/bench.sh full

bench-quick: deps
	$(MAKE) all
	bench/bench.sh quick

clean:
	rm -rf $(BUILD)

# Further targets (stress, sanitizers, fuzzing) live in mk/*.mk.
include $(wildcard mk/*.mk)
