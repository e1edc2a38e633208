# The release tarball.
#
#   make dist [DISTDIR=dir]   write DISTDIR/cacheextents-VERSION.tar.gz
#                             (default: the top of the tree)
#
# VERSION comes from src/version.h.  The tarball holds every file git
# tracks, as it is in the working tree (files deleted there are left
# out), under cacheextents-VERSION/.  It unpacks, builds and runs
# make check without git; make dist itself needs a git checkout (it
# asks git for the list of files).

VERSION := $(shell sed -n 's/^\#define CACHEEXTENTS_VERSION "\(.*\)"$$/\1/p' \
	src/version.h)
DIST_NAME = cacheextents-$(VERSION)
DISTDIR ?= .

.PHONY: dist

dist:
	@test -n "$(VERSION)" || \
	  { echo "dist: no CACHEEXTENTS_VERSION in src/version.h" >&2; exit 1; }
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || \
	  { echo "dist: needs a git checkout (for its list of files)" >&2; \
	    exit 1; }
	mkdir -p $(BUILD)
	git ls-files -z | xargs -0 sh -c \
	  'for f; do [ ! -e "$$f" ] || printf "%s\0" "$$f"; done' sh \
	  > $(BUILD)/dist-files
	tar --create --gzip --file=$(DISTDIR)/$(DIST_NAME).tar.gz.tmp \
	  --no-recursion --null --sort=name \
	  --transform='s,^,$(DIST_NAME)/,' \
	  --owner=0 --group=0 --numeric-owner \
	  --mtime=@$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
	  --files-from=$(BUILD)/dist-files
	mv $(DISTDIR)/$(DIST_NAME).tar.gz.tmp $(DISTDIR)/$(DIST_NAME).tar.gz
	@echo "dist: wrote $(DISTDIR)/$(DIST_NAME).tar.gz"
