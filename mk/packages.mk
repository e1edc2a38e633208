# Distribution packages: a Debian package and an RPM, each built from
# a copy of the tree (the make dist tarball), never in the tree itself.
#
#   make deb [DEB_DIR=dir]   dpkg-buildpackage -us -uc -b against the
#                            installed nbdkit-plugin-dev; the .deb files,
#                            .buildinfo and .changes go to DEB_DIR
#                            (default build/deb)
#   make rpm [RPM_DIR=dir]   rpmbuild -bb rpm/cacheextents.spec with the
#                            tarball as Source0, against the nbdkit
#                            pkg-config reports (set PKG_CONFIG_PATH);
#                            the RPMs go to RPM_DIR/RPMS/ARCH (default
#                            build/rpm).  Where rpm's database has no
#                            nbdkit-devel (Debian, or an nbdkit under its
#                            own prefix) it passes --nodeps.
#
# Both need a git checkout (make dist asks git for the files).

DEB_DIR ?= $(BUILD)/deb
RPM_DIR ?= $(BUILD)/rpm
RPMBUILD_FLAGS ?= $(if $(shell rpm -q --quiet nbdkit-devel 2>/dev/null \
	&& echo yes),,--nodeps)

.PHONY: deb rpm

# The package builds run make afresh, without this make's variables.
PKG_ENV = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u WERROR

# dpkg-buildpackage writes its results beside the source tree, so the
# tarball is unpacked in DEB_DIR and removed afterwards.
deb:
	rm -rf $(DEB_DIR)/$(DIST_NAME)
	mkdir -p $(DEB_DIR)
	$(MAKE) --no-print-directory dist DISTDIR=$(abspath $(DEB_DIR))
	tar -xzf $(DEB_DIR)/$(DIST_NAME).tar.gz -C $(DEB_DIR)
	cd $(DEB_DIR)/$(DIST_NAME) && $(PKG_ENV) dpkg-buildpackage -us -uc -b
	rm -rf $(DEB_DIR)/$(DIST_NAME) $(DEB_DIR)/$(DIST_NAME).tar.gz
	@ls $(DEB_DIR)/*.deb

# RPM_DIR is rpmbuild's _topdir (it may be one that holds other
# packages too: nothing in it is removed).
rpm:
	mkdir -p $(RPM_DIR)/SOURCES
	$(MAKE) --no-print-directory dist DISTDIR=$(abspath $(RPM_DIR))/SOURCES
	$(PKG_ENV) rpmbuild -bb $(RPMBUILD_FLAGS) \
	  --define '_topdir $(abspath $(RPM_DIR))' rpm/cacheextents.spec
	@ls $(RPM_DIR)/RPMS/*/nbdkit-cacheextents-filter-$(VERSION)-*.rpm

# tests/test-rpm.sh builds the RPM against nbdkit 1.38.5 (EL9's).  The
# checks build that nbdkit first (about 4 minutes, once; make check
# tests on it later anyway), so that the build is not counted in the
# test's time limit; without its tarball the test is skipped.
RPM_TEST_NBDKIT = 1.38.5
ifneq ($(filter tests/test-rpm.sh,$(or $(TESTS),$(SHELL_TESTS))),)
check check-shell: rpm-test-nbdkit
endif

.PHONY: rpm-test-nbdkit
rpm-test-nbdkit:
	@scripts/build-nbdkit.sh $(RPM_TEST_NBDKIT) >/dev/null || \
	  echo "nbdkit $(RPM_TEST_NBDKIT) not built: tests/test-rpm.sh will skip"
