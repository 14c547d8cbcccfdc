# made by scripts/report.sh: seconds per epoch (t_epoch_s) over the first 30 epochs per motif size.
# Run from the report folder: gnuplot plots/tox-171-5748-3000-3000-3000-4-cpu-epoch-time.gp
set terminal pngcairo size 900,560 font 'sans,10'
set output 'plots/tox-171-5748-3000-3000-3000-4-cpu-epoch-time.png'
set datafile separator comma
set datafile columnheaders
set title 'Time per epoch, first 30 epochs, TOX-171 5748-3000-3000-3000-4, cpu' noenhanced
set xlabel 'epoch'
set ylabel 'seconds per epoch'
set xtics 5
set yrange [0:*]
set key outside right top
set grid
plot 'cpu/m1_s1/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 1 dashtype 1 title 'm = 1 (seed 1)' noenhanced, \
     'cpu/m1_s2/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 1 dashtype 2 title 'm = 1 (seed 2)' noenhanced, \
     'cpu/m1_s3/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 1 dashtype 3 title 'm = 1 (seed 3)' noenhanced, \
     'cpu/m2_s1/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 2 dashtype 1 title 'm = 2 (seed 1)' noenhanced, \
     'cpu/m2_s2/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 2 dashtype 2 title 'm = 2 (seed 2)' noenhanced, \
     'cpu/m2_s3/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 2 dashtype 3 title 'm = 2 (seed 3)' noenhanced, \
     'cpu/m4_s1/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 3 dashtype 1 title 'm = 4 (seed 1)' noenhanced, \
     'cpu/m4_s2/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 3 dashtype 2 title 'm = 4 (seed 2)' noenhanced, \
     'cpu/m4_s3/metrics.csv' using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor 3 dashtype 3 title 'm = 4 (seed 3)' noenhanced
