# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# The copy between two exports of `file dir=` that
# tests/test-prefetch-bounds.sh counts and bench/costs.sh measures
# (sourced by both).

# copy_fixture DIR: export "a" in DIR, 1 GiB with 8 MiB of random data
# (1 MiB every 100 MiB).
copy_fixture () {
  local i
  mkdir "$1"
  truncate -s 1G "$1/a"
  for i in 0 1 2 3 4 5 6 7; do
    dd if=/dev/urandom of="$1/a" bs=1M count=1 seek=$((i * 100)) \
       conv=notrunc status=none
  done
}

# copy_client TOOL: the --run script that copies export a to export b
# of the server with TOOL, nbdcopy or convert (qemu-img convert -n -W).
copy_client () {
  # shellcheck disable=SC2016
  printf '%s\n' \
    'a="nbd+unix:///a?socket=$unixsocket"' \
    'b="nbd+unix:///b?socket=$unixsocket"'
  case $1 in
    nbdcopy) echo 'nbdcopy "$a" "$b"' ;;
    convert) echo 'qemu-img convert -n -W -O raw "$a" "$b"' ;;
    *) echo "copy_client: unknown tool '$1'" >&2; return 1 ;;
  esac
}
