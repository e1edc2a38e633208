# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Helpers shared by bench.sh, costs.sh and serial.sh (sourced).

# stats N...: "median min max" of the arguments.
stats () {
  printf '%s\n' "$@" | sort -g | awk '
    { v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          print m, v[1], v[NR] }'
}

# median N...: the median of the arguments.
median () {
  stats "$@" | cut -d' ' -f1
}

# have_bundled: the nbdkit on PATH has its own cacheextents filter (and
# not this one installed under the name: that lists our parameters).
have_bundled () {
  local help
  help=$(nbdkit --filter=cacheextents null --help 2>/dev/null) &&
    ! grep -q '^cacheextents-window=' <<<"$help"
}

# section_init NAME CSV LABEL OURS-SO: the common start of serial.sh
# and cdi.sh, the sections bench.sh calls once per nbdkit: their
# arguments (csv, label, ours), runs and slow from the environment as
# bench.sh has them, log () for stderr, and $tmp, removed at exit.
section_init () {
  local name=$1
  csv=${2:?usage: $0 CSV LABEL OURS-SO}
  label=${3:?usage: $0 CSV LABEL OURS-SO}
  ours=${4:?usage: $0 CSV LABEL OURS-SO}
  runs=${BENCH_RUNS:-3}
  slow=${BENCH_SLOW_SECS:-60}
  eval "log () { printf '[$name %s] %s\n' \"\$(date +%T)\" \"\$*\" >&2; }"
  tmp=$(mktemp -d "/tmp/cacheextents-$name.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
}
