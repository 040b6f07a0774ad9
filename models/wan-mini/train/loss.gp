# wan-mini loss curve. Run in the folder that holds loss.csv, e.g.
#   cd models/wan-mini/training && gnuplot ../train/loss.gp      (loss.csv -> loss.png)
# loss.csv is written by train.py: step, loss (flow-matching MSE, mean over the last 50 steps), lr, seconds.
set terminal pngcairo size 800,500 noenhanced
set output 'loss.png'
set datafile separator ','
set title 'wan-mini training loss (flow-matching MSE)'
set xlabel 'step'
set ylabel 'MSE'
set logscale y
set grid
set y2label 'learning rate'
set y2tics
set ytics nomirror
plot 'loss.csv' every ::1 using 1:2 with lines lw 1 title 'loss', \
     '' every ::1 using 1:3 axes x1y2 with lines lw 1 dt 2 title 'lr'
