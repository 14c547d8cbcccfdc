# made by scripts/report.sh: mean test accuracy over the seeds against epoch per motif size,
# the band one sample standard deviation either side. Run from the report folder: gnuplot plots/tox-171-5748-3000-3000-3000-4-cpu-accuracy-mean.gp
set terminal pngcairo size 900,560 font 'sans,10'
set output 'plots/tox-171-5748-3000-3000-3000-4-cpu-accuracy-mean.png'
set datafile separator comma
set datafile columnheaders
set title 'Test accuracy, mean over 3 seeds (band: 1 std), TOX-171 5748-3000-3000-3000-4, cpu' noenhanced
set xlabel 'epoch'
set ylabel 'test accuracy'
set xtics
set key outside right top
set grid
plot 'plots/tox-171-5748-3000-3000-3000-4-cpu-accuracy-mean.csv' using 1:($2 - $3):($2 + $3) with filledcurves fillstyle transparent solid 0.2 noborder linecolor 1 notitle, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-accuracy-mean.csv' using 1:2 with lines linewidth 2 linecolor 1 title 'm = 1: mean' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-accuracy-mean.csv' using 1:($5 - $6):($5 + $6) with filledcurves fillstyle transparent solid 0.2 noborder linecolor 2 notitle, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-accuracy-mean.csv' using 1:5 with lines linewidth 2 linecolor 2 title 'm = 2: mean' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-accuracy-mean.csv' using 1:($8 - $9):($8 + $9) with filledcurves fillstyle transparent solid 0.2 noborder linecolor 3 notitle, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-accuracy-mean.csv' using 1:8 with lines linewidth 2 linecolor 3 title 'm = 4: mean' noenhanced
