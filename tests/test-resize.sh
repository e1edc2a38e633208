#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# A shared map outlives its connections, so it must not outlive the
# export it describes: when a later connection sees another size, the
# map is dropped.  The file is changed outside nbdkit between the two
# connections (data written where the map said hole, and extended);
# the second connection must see the data.
. "$(dirname "$0")/functions.sh"
requires nbdinfo
requires truncate

img=$tmp/disk.img
truncate -s 1M "$img"
cat > "$tmp/run.sh" <<EOS
set -e
nbdinfo --map "\$uri" > "$tmp/before"
printf 'data' | dd of="$img" bs=1 seek=0 conv=notrunc status=none
truncate -s 2M "$img"
nbdinfo --map "\$uri" > "$tmp/after"
EOS
timeout 60 nbdkit -U - --filter="$FILTER" file "$img" $CE_OPTS \
  --run 'uri="$uri" sh '"$tmp/run.sh"
cat "$tmp/before" "$tmp/after"
grep -q '^ *0 *1048576 *3 *hole,zero' "$tmp/before"
# After the change the first extent is data (type 0).
head -n 1 "$tmp/after" | grep -q '^ *0 *[0-9]* *0 *data'
echo "ok: the second connection sees the new data"
