# made by scripts/report.sh: S = w_R R_r + (1 - w_R)(1 - A_r) against w_R, from settrain score.
# Run from the report folder: gnuplot plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.gp
set terminal pngcairo size 900,560 font 'sans,10'
set output 'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.png'
set datafile separator comma
set datafile columnheaders
set title 'Comprehensive score S against the weight of efficiency, TOX-171 5748-3000-3000-3000-4, cpu' noenhanced
set arrow from 0.1, graph 0 to 0.1, graph 1 nohead dashtype 3
set label 'the paper: w_R = 0.1' at 0.11, graph 0.04
set xlabel 'w_R (weight of the time reduction rate; w_A = 1 - w_R)'
set ylabel 'S'
set xrange [0:1]
set key outside right
set grid
plot 'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:2 with lines linewidth 2 linecolor 1 title 'm = 1 (seed 1)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:3 with lines linewidth 2 linecolor 1 title 'm = 1 (seed 2)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:4 with lines linewidth 2 linecolor 1 title 'm = 1 (seed 3)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:5 with lines linewidth 2 linecolor 2 title 'm = 2 (seed 1)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:6 with lines linewidth 2 linecolor 2 title 'm = 2 (seed 2)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:7 with lines linewidth 2 linecolor 2 title 'm = 2 (seed 3)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:8 with lines linewidth 2 linecolor 3 title 'm = 4 (seed 1)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:9 with lines linewidth 2 linecolor 3 title 'm = 4 (seed 2)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:10 with lines linewidth 2 linecolor 3 title 'm = 4 (seed 3)' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:11 with lines linewidth 2 linecolor 1 dashtype 2 title 'paper m = 1' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:12 with lines linewidth 2 linecolor 2 dashtype 2 title 'paper m = 2' noenhanced, \
     'plots/tox-171-5748-3000-3000-3000-4-cpu-score-vs-weight.csv' using 1:13 with lines linewidth 2 linecolor 3 dashtype 2 title 'paper m = 4' noenhanced
