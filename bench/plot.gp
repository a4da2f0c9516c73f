# Renders bench/compare.sh's data (bench/summarize.py --plot-data) to a PNG:
#   gnuplot -e "datafile='plot.dat'; outfile='docs/benchmark.png'" bench/plot.gp
set terminal pngcairo size 1200,480 font "Liberation Sans,11"
set output outfile
set multiplot layout 1,2 title "raftkv vs memcached -t 1 and etcd 3.4 (100-byte values, one run, same machine)"

set title "set throughput vs connections (closed loop, memcached door)"
set logscale xy
set xlabel "connections"
set ylabel "sets per second"
set key top left
set grid
plot datafile index 0 using 1:2 with linespoints lw 2 title "memcached -t 1 (no replication)", \
     ''       index 0 using 1:3 with linespoints lw 2 title "raftkv, 3 nodes, fsync", \
     ''       index 2 using 1:2 with points pt 7 ps 1.5 title "etcd 3.4, 3 members (HTTP put)"

unset logscale
set title "single client: set latency percentiles"
set ylabel "ms"
set xlabel ""
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set logscale y
set key top left
plot datafile index 1 using 2:xtic(1) title "p50", '' index 1 using 3 title "p90", '' index 1 using 4 title "p99"
unset multiplot
