# SPDX-License-Identifier: MIT
# bench/plot.gp - draws OUT/bench.png from OUT/read.dat and OUT/startup.dat
# (written by bench/report.py): gnuplot -e "out='DIR'" bench/plot.gp
set terminal pngcairo size 1500,1000 font ",10" noenhanced
set output out."/bench.png"
set multiplot layout 2,2 title "erofs-nbd bench (".out.")"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set key top left
set xtics rotate by -20
set title "Sequential read, nbdcopy default, MB/s"
plot for [t in system("awk '!/^#/ { print $1 }' ".out."/read.dat | uniq")] \
	"< awk -v t=".t." '$1 == t' ".out."/read.dat" using 3:xtic(2) title t
set title "Sequential read, nbdcopy -C 1, MB/s"
plot for [t in system("awk '!/^#/ { print $1 }' ".out."/read.dat | uniq")] \
	"< awk -v t=".t." '$1 == t' ".out."/read.dat" using 4:xtic(2) title t
set title "4 KiB random read, fio nbd, 2 jobs x QD 32, IOPS"
plot for [t in system("awk '!/^#/ { print $1 }' ".out."/read.dat | uniq")] \
	"< awk -v t=".t." '$1 == t && $5 > 0' ".out."/read.dat" using 5:xtic(2) title t
set title "Start-up vs mkfs.erofs over tree size"
set style data linespoints
unset xtics
set xtics auto
set logscale xy
set yrange [*:*]
set xlabel "entries"
set ylabel "seconds"
plot out."/startup.dat" using 2:3 title "erofs-nbd (start to serving)" pt 7, \
     out."/startup.dat" using 2:4 title "mkfs.erofs (image written)" pt 5, \
     out."/startup.dat" using 2:5 title "floor: the walk's system calls over all CPUs" pt 2 dt 2
unset multiplot
