# Distribution packages, built from a copy of the tree (the make dist
# tarball), never in the tree itself.
#
#   make deb [DEB_DIR=dir]   dpkg-buildpackage -us -uc -b against the
#                            installed nbdkit-plugin-dev; the .deb files,
#                            .buildinfo and .changes go to DEB_DIR
#                            (default build/deb)
#
# It needs a git checkout (make dist asks git for the files).

DEB_DIR ?= $(BUILD)/deb

.PHONY: deb

# The package build runs make afresh, without this make's variables.
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
