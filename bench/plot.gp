# SPDX-License-Identifier: BSD-3-Clause
# Copyright the cacheextents authors.
# Plot for bench/bench.sh: one panel per extents delay (and one for the
# fast backends), each a clustered bar chart of client wall time per cache
# stack, on a log scale.
#
# Variables, set with gnuplot -e by bench.sh:
#   datafile  blocks separated by two blank lines, one per panel; each
#             block starts with "client STACK..." and then one row per
#             client: label and one time in seconds per stack (NaN: none)
#   outfile   the PNG to write
#   term      pngcairo or png
#   npanels   number of blocks in datafile
#   nstacks   number of stacks (columns after the label)
#   titles    one quoted title per panel
#   colors    one colour per stack, e.g. '#8c8c8c #e69f00 #0072b2'
#   heading   the title over all panels
#   ymax      top of the (shared) y axis, seconds

if (term eq 'pngcairo') {
  set terminal pngcairo size 480 * npanels + 120, 620 font 'sans,10'
} else {
  set terminal png size 480 * npanels + 120, 620
}
set output outfile

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.01:ymax]
set format y '%g'
set grid ytics mytics
set ylabel 'client wall time, seconds (log)'
set xtics rotate by 30 right nomirror
set key outside bottom center horizontal
set bmargin 10

set multiplot layout 1, npanels title heading
do for [p = 0:npanels - 1] {
  set title word(titles, p + 1)
  if (p > 0) { unset key }
  plot for [i = 2:nstacks + 1] datafile index p using i:xtic(1) \
       lc rgb word(colors, i - 1) title columnheader(i)
}
unset multiplot
