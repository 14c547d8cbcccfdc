#!/bin/sh
# init_study.sh: does the initial weight scale explain why deep motif
# networks learn slowly? Trains, for each data set, a two- and a
# three-hidden-layer network with motif sizes 1, 2, 4, --init he (the dense
# fan-in, SET's) and --init he-sparse (each neuron's present inputs), 3 seeds,
# and, since the larger he-sparse weights diverge at lr 0.01 in the deep
# networks, he-sparse at lr 0.001 as well (arm he-sparse_lr0.001); one
# thread per run, then writes results/init-study/report.md (tables of
# mean ± std over seeds), summary.csv and plots of test accuracy against
# epoch (gnuplot).
#
#   scripts/init_study.sh [--sets "tox171 glioma lung_small fmnist"] [--seeds "1 2 3"]
#                         [--report-only] [--out results/init-study]
#
# Finished runs (run.json "finished") are kept; an interrupted one is resumed;
# so the study can be stopped and continued. Data files are made in data/
# with `settrain prepare` when missing. Every run uses --pad-input, which
# pads the input with zero features to a multiple of the motif size where it
# is not one already (GLIOMA's 4434 and lung_small's 325 features).
# Settings per set (batch 8 for the microarray sets, so an epoch is several
# SGD steps; Fashion-MNIST on its first 10000 training images):
#   tox171      5748 features, 114 train / 57 test, 100 epochs, batch 8
#   glioma      4434 features,  33 train / 17 test, 200 epochs, batch 8
#   lung_small   325 features,  49 train / 24 test, 200 epochs, batch 8
#   fmnist       784 features, 10000 train / 10000 test, 10 epochs, batch 128
# Networks: 1000,1000 and 3000,3000,3000 hidden; everything else the
# trainer's defaults (epsilon 20, lr 0.01, momentum 0.9, dropout 0.3, relu).
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${BIN:-build/settrain}
OUT=results/init-study
SETS="tox171 glioma lung_small fmnist"
SEEDS="1 2 3"
REPORT_ONLY=0
SHARED=${ST_SHARED_DATA:-../shared/data}
while [ $# -gt 0 ]; do
    case $1 in
        --sets) SETS=$2; shift 2 ;;
        --seeds) SEEDS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --report-only) REPORT_ONLY=1; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "init_study.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -x "$BIN" ] || { echo "init_study.sh: $BIN not built (run make)" >&2; exit 1; }
mkdir -p "$OUT" data

prep() { # set -> data file (made when missing)
    case $1 in
        tox171) f=data/tox171.h5; [ -f $f ] || "$BIN" prepare mat --in "$SHARED/TOX-171.mat" --out $f >/dev/null ;;
        glioma) f=data/glioma.h5; [ -f $f ] || "$BIN" prepare mat --in "$SHARED/GLIOMA.mat" --out $f >/dev/null ;;
        lung_small) f=data/lung_small.h5; [ -f $f ] || "$BIN" prepare mat --in "$SHARED/lung_small.mat" --out $f >/dev/null ;;
        fmnist) f=data/fmnist.h5; [ -f $f ] || "$BIN" prepare fmnist --out $f >/dev/null ;;
        *) echo "init_study.sh: unknown set '$1'" >&2; exit 2 ;;
    esac
    echo "$f"
}
args_of() { # set -> training options
    case $1 in
        tox171) echo "--epochs 100 --batch 8" ;;
        glioma|lung_small) echo "--epochs 200 --batch 8" ;;
        fmnist) echo "--epochs 10 --batch 128 --train-limit 10000" ;;
    esac
}

if [ "$REPORT_ONLY" -eq 0 ]; then
    total=0
    for s in $SETS; do total=$((total + 2 * 3 * 3 * $(echo $SEEDS | wc -w))); done
    i=0; t0=$(date +%s)
    for s in $SETS; do
        data=$(prep "$s") || exit 1
        for net in 1000,1000 3000,3000,3000; do
            depth=$(echo "$net" | tr ',' '\n' | wc -l)
            for arm in he he-sparse he-sparse_lr0.001; do
                init=${arm%%_*}
                lr=0.01
                [ "$arm" = "$init" ] || lr=${arm#*_lr}
                for m in 1 2 4; do
                    for seed in $SEEDS; do
                        i=$((i + 1))
                        dir=$OUT/$s-h$depth/$arm/m${m}_s$seed
                        if grep -Eq '"status": "(finished|diverged)"' "$dir/run.json" 2>/dev/null; then
                            continue
                        fi
                        now=$(date +%s)
                        eta=""
                        [ "$i" -gt 1 ] && eta=" (elapsed $((now - t0)) s)"
                        echo "[$i/$total] $s $net $init lr $lr m=$m seed $seed$eta"
                        if [ -f "$dir/checkpoint.h5" ]; then
                            "$BIN" train --resume "$dir" --threads 1 --quiet >"$OUT/.last.log" 2>&1
                        else
                            rm -rf "$dir"
                            "$BIN" train --data "$data" --hidden "$net" --motif "$m" --init "$init" \
                                --seed "$seed" --lr "$lr" --pad-input --backend cpu --threads 1 --quiet \
                                $(args_of "$s") --out "$dir" >"$OUT/.last.log" 2>&1
                        fi
                        rc=$?
                        if [ "$rc" -ne 0 ]; then
                            echo "  exit $rc: $(tail -n 1 "$OUT/.last.log")"
                        fi
                    done
                done
            done
        done
    done
    rm -f "$OUT/.last.log"
fi

# --- report ----------------------------------------------------------------------
# summary.csv: one row per run: set, depth, init, motif, seed, status, epochs,
# final test acc, mean test acc over the first quarter of the epochs (how fast
# it learns), final train loss, seconds of training per epoch.
sum=$OUT/summary.csv
echo "set,depth,init,motif,seed,status,epochs,final_test_acc,early_test_acc,final_train_loss,mean_epoch_s" >"$sum"
for d in "$OUT"/*-h*/*/m*_s*; do
    [ -f "$d/metrics.csv" ] || continue
    rel=${d#"$OUT"/}
    s=${rel%%-h*}; rest=${rel#*-h}; depth=${rest%%/*}; rest=${rest#*/}; init=${rest%%/*}
    ms=${rest#*/}; m=${ms#m}; m=${m%%_s*}; seed=${ms#*_s}
    st=$(sed -n 's/.*"status": "\([a-z]*\)".*/\1/p' "$d/run.json" | head -n 1)
    awk -F, -v OFS=, -v pre="$s,$depth,$init,$m,$seed,$st" 'NR > 1 { n++; acc[n] = $5; loss[n] = $2; t += $9 }
        END { if (!n) exit; q = int((n + 3) / 4); e = 0; for (i = 1; i <= q; i++) e += acc[i];
              printf "%s,%d,%.4f,%.4f,%.4f,%.4f\n", pre, n, acc[n], e / q, loss[n], t / n }' "$d/metrics.csv" >>"$sum"
done

# report.md: mean ± std (sample std over seeds) per set, depth, init and motif.
rep=$OUT/report.md
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
{
    echo "# Initial scale and deep motif networks (scripts/init_study.sh)"
    echo
    echo "Generated $(date -u +%Y-%m-%dT%H:%MZ) from the runs under \`$OUT\` (commit $commit, CPU backend,"
    echo "one thread per run; $(grep -c . "$sum" | awk '{ print $1 - 1 }') runs). Accuracy is the FINAL test accuracy"
    echo "(mean ± sample std over seeds, n = seeds finished); 'early' is the mean test accuracy over the"
    echo "first quarter of the epochs (how fast a network starts to learn). A difference between the two"
    echo "scales is called within seed noise when the means differ by less than the larger of the two stds."
    echo
    awk -F, 'NR > 1 {
            k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4; sets[$1 SUBSEP $2] = 1
            if ($6 == "diverged") { dv[k]++; next }
            if ($6 != "finished") next
            n[k]++; a[k] += $8; a2[k] += $8 * $8; e[k] += $9 }
        function sd(s, s2, c) { v = c > 1 ? (s2 - s * s / c) / (c - 1) : 0; return v > 0 ? sqrt(v) : 0 }
        function cell(k) { if (!n[k]) return (dv[k] ? "diverged (" dv[k] ")" : "-")
            return sprintf("%.3f ± %.3f (%d%s)", a[k] / n[k], sd(a[k], a2[k], n[k]), n[k], dv[k] ? ", " dv[k] " diverged" : "") }
        function verdict(kh, ks) { if (!n[kh] || !n[ks]) return "-"
            sh = sd(a[kh], a2[kh], n[kh]); ss = sd(a[ks], a2[ks], n[ks]); big = sh > ss ? sh : ss
            diff = a[ks] / n[ks] - a[kh] / n[kh]
            return diff > big ? "better" : (-diff > big ? "worse" : "noise") }
        END {
            ns = split("tox171 glioma lung_small fmnist", order, " ")
            print "| set | hidden layers | motif | he (lr 0.01) | he-sparse (lr 0.01) | he-sparse (lr 0.001) | early: he / sp / sp 0.001 | he-sparse vs he (lr 0.01 / 0.001) |"
            print "|---|---:|---:|---:|---:|---:|---:|---|"
            for (oi = 1; oi <= ns; oi++) for (dp = 2; dp <= 3; dp++) {
                if (!((order[oi] SUBSEP dp) in sets)) continue
                for (m = 1; m <= 4; m *= 2) {
                    p = order[oi] SUBSEP dp SUBSEP
                    kh = p "he" SUBSEP m; ks = p "he-sparse" SUBSEP m; kl = p "he-sparse_lr0.001" SUBSEP m
                    if (!n[kh] && !n[ks] && !n[kl] && !dv[kh] && !dv[ks] && !dv[kl]) continue
                    printf "| %s | %d | %d | %s | %s | %s | %s / %s / %s | %s / %s |\n", order[oi], dp, m, cell(kh), cell(ks), cell(kl),
                        n[kh] ? sprintf("%.3f", e[kh] / n[kh]) : "-", n[ks] ? sprintf("%.3f", e[ks] / n[ks]) : "-",
                        n[kl] ? sprintf("%.3f", e[kl] / n[kl]) : "-", verdict(kh, ks), verdict(kh, kl)
                }
            }
        }' "$sum"
    echo
    echo "Cells: final test accuracy, mean ± sample std over the seeds that finished (their number; runs"
    echo "that diverged, i.e. stopped on a NaN loss, are counted apart). 'better'/'worse': the he-sparse"
    echo "mean differs from he's by more than the larger std; 'noise': within seed noise."
    echo
    echo "Per-run values: \`summary.csv\`. Plots: \`plots/<set>-h<depth>.png\`, mean test accuracy over"
    echo "seeds against epoch, one curve per scale and motif size."
} >"$rep"

# plots (gnuplot): mean test accuracy over seeds against epoch
if command -v gnuplot >/dev/null 2>&1; then
    mkdir -p "$OUT/plots"
    for g in "$OUT"/*-h*; do
        [ -d "$g" ] || continue
        name=$(basename "$g")
        plot=""
        for init in he he-sparse he-sparse_lr0.001; do
            for m in 1 2 4; do
                set -- "$g/$init"/m${m}_s*/metrics.csv
                [ -f "$1" ] || continue
                awk -F, 'FNR > 1 { s[$1] += $5; c[$1]++; if ($1 > n) n = $1 } END { for (e = 1; e <= n; e++) if (c[e]) printf "%d %.5f\n", e, s[e] / c[e] }' "$@" >"$OUT/plots/.$name.$init.$m.dat"
                lt=$([ "$init" = he ] && echo 1 || { [ "$init" = he-sparse ] && echo 2 || echo 3; })
                plot="$plot${plot:+, }'$OUT/plots/.$name.$init.$m.dat' using 1:2 with lines dt $lt lw 2 title '$init m = $m' noenhanced"
            done
        done
        [ -n "$plot" ] || continue
        gnuplot -e "set terminal pngcairo size 800,500; set output '$OUT/plots/$name.png'; set title '$name: mean test accuracy over seeds' noenhanced; set xlabel 'epoch'; set ylabel 'test accuracy'; set key bottom right; plot $plot" 2>/dev/null ||
        gnuplot -e "set terminal png size 800,500; set output '$OUT/plots/$name.png'; set title '$name' noenhanced; set xlabel 'epoch'; set ylabel 'test accuracy'; set key bottom right; plot $plot"
        rm -f "$OUT"/plots/."$name".*.dat
    done
fi
echo "init_study.sh: $rep, $sum"
