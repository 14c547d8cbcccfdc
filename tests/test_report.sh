#!/bin/sh
# test_report.sh: scripts/report.sh and scripts/study.sh end to end.
#  1. report.sh on hand-written run folders (run.json + metrics.csv, no
#     training): times 100/50/25 s and accuracies 0.8/0.8/0.4 must give
#     R_r 0/0.5/0.75, A_r 0/0/0.5 and S 0.9000/0.9500/0.5250; the average time
#     per epoch is the mean over epochs 2..N; a GPU group gives the CPU-to-GPU
#     speed-up; an unfinished run is listed but not tabulated; the paper's
#     FMNIST numbers give S 0.9000/0.9102/0.8819 beside the printed 0.9100 and
#     0.8864; the S-against-w_R data is 1 - A_r at w_R = 0, the table's S at
#     0.1 and R_r at 1; summary.csv has a row per run; without gnuplot the report
#     says so; with one seed the report gives no std and says it cannot tell seed
#     noise; one SGD step per epoch is flagged.
# 1b. three seeds of hand-written runs (seed 1 in the old run.json layout, 2 and
#     3 in the new one, every best accuracy above the final one): the mean ± std
#     table per motif size (hand-computed numbers), the per-seed table against
#     each seed's own m = 1 run and settrain score, the seed-noise rule and its
#     within/beyond sentences, the final accuracy as the result and the best only
#     labelled, the paper's arithmetic and the seed means against the paper,
#     summary-by-motif.csv, the mean-accuracy plot, a diverged run with its error.
#  2. study.sh on a tiny preset (TOX-171 from ${ST_SHARED_DATA:-../shared/data},
#     its data path relative to the repository root, hidden 64,64, 3 epochs,
#     batch 8, motifs 1 2 4; skipped visibly when absent):
#     --dry-run prints the commands and runs nothing; the study finishes three
#     runs; report.md has a row per motif and 15 SGD steps per epoch, S = 0.9000
#     for m = 1 and the S that `settrain score` prints for the same runs; three
#     valid PNG files; a second invocation skips the finished runs; an
#     interrupted run is resumed and one without a checkpoint moved aside; other
#     settings in the same folder and a bad preset are refused; --seeds 2 adds
#     seed 2 to the folder and a malformed --seeds is refused; runs that diverge
#     are kept, reported and not retrained, and the study exits 1.
# The PNG checks are skipped visibly when gnuplot is absent.
# Prints "test_report: N passed, N failed, N skipped"; exits non-zero on failure.
set -u
BIN=${BUILD:-build}/settrain
pass=0; fail=0; skip=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() { fail=$((fail + 1)); echo "  FAIL $1"; }
skipped() { skip=$((skip + 1)); echo "  SKIP $1"; }
finish() { echo "test_report: $pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_report.XXXXXX") || { echo "test_report: 0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$BIN" ]; then
    bad "$BIN not built"
    finish
fi
have_gnuplot=0
if command -v gnuplot >/dev/null 2>&1; then have_gnuplot=1; fi

# is_png FILE: the 8-byte PNG signature
is_png() { [ -s "$1" ] && [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = 89504e470d0a1a0a ]; }
# the rows of one table of report.md under one group heading: the table whose
# header line starts with PREFIX, between "### HEADING" and the next heading
# table_rows MD HEADING PREFIX
table_rows() {
    awk -v h="### $2" -v p="$3" '$0 == h { on = 1; next } on && /^##/ { exit }
        on && index($0, p) == 1 { t = 1; getline; next } t && /^\|/ { print; next } t { exit }' "$1"
}
# the per-seed table (the paper's Table 2 layout) and the mean ± std table
group_rows() { table_rows "$1" "$2" "| motif | seed | time (s) |"; }
mean_rows() { table_rows "$1" "$2" "| motif | seeds | final accuracy | time (s) |"; }
# field N (1-based, between the pipes) of a markdown row
cell() { printf '%s\n' "$1" | awk -F'|' -v n="$2" '{ v = $(n + 1); gsub(/^ +| +$/, "", v); print v }'; }

# --- 1. report.sh on hand-written run folders -------------------------------------------
# mkrun DIR BACKEND MOTIF STATUS TIME ACC "T1 T2 T3 T4" [SEED [BEST [FORMAT [ERROR]]]]
#   SEED [1]; BEST, the best test accuracy over epochs (at epoch 2) [ACC, at the
#   last epoch]; FORMAT old (run.json and metrics.csv as settrain wrote them before
#   run ids, --init and --pad-input) or new [old]; ERROR, run.json's error member
mkrun() {
    seed=${8:-1}; best=${9:-$6}; fmt=${10:-old}
    bep=4; [ -z "${9:-}" ] || bep=2
    mkdir -p "$1"
    if [ "$2" = gpu ]; then
        dev='"gpu_name": "Test GPU", "driver_version": "1.0", "cuda_runtime_version": "1.0", "cusparse_version": "1.0.0"'
    else
        dev='"cpu_model": "Test CPU", "threads": 2, "cores_online": 2'
    fi
    rid=""; cfgnew=""; datanew=""; memnew=""; errj=""; rcol=""; rval=""
    if [ "$fmt" = new ]; then
        rid='"run_id": "00000000000000a'$3'",'
        cfgnew='"init": "he", "pad_input": false,'
        datanew='"n_inputs": 16, "fingerprint": "0123456789abcdef",'
        memnew='"memory_estimate_bytes": {"data": 1000, "model": 2000, "total": 3000},'
        rcol=",run_id"; rval=",00000000000000a$3"
    fi
    [ -z "${11:-}" ] || errj='"error": "'"${11}"'",'
    cat >"$1/run.json" <<EOF
{
  "settrain_version": "0.1.0",
  "git_commit": "abc123",
  $rid
  "status": "$4",
  $errj
  "config": {
    "data": "data/hand.h5",
    "dataset_name": "Hand",
    "hidden": [8, 8],
    "motif": $3,
    "epsilon": 20,
    "zeta": 0.29999999999999999,
    "epochs": 4,
    "batch": 128,
    "lr": 0.01,
    "momentum": 0.90000000000000002,
    "weight_decay": 0.00020000000000000001,
    "dropout": 0.29999999999999999,
    "activation": "relu",
    $cfgnew
    "seed": $seed,
    "train_limit": 0,
    "standardize": true,
    "checkpoint_every": 0,
    "threads": 2
  },
  "backend": "$2",
  "device": {$dev},
  "data": {"n_train": 10, "n_test": 5, "n_features": 16, $datanew "n_classes": 2},
  $memnew
  "layers": [
    {"layer": 1, "n_in": 16, "n_out": 8, "connections": 50},
    {"layer": 2, "n_in": 8, "n_out": 8, "connections": 34},
    {"layer": 3, "n_in": 8, "n_out": 2, "connections": 16}
  ],
  "connections": 100,
  "epochs_done": 4,
  "total_wall_s": $5,
  "mean_epoch_s_excluding_first": 0,
  "final_test_acc": $6,
  "best_test_acc": $best,
  "best_epoch": $bep
}
EOF
    echo "epoch,train_loss,train_acc,test_loss,test_acc,t_train_s,t_evolve_s,t_eval_s,t_epoch_s,connections$rcol" >"$1/metrics.csv"
    e=0
    for t in $7; do
        e=$((e + 1))
        a=$6; [ "$e" -ne "$bep" ] || a=$best
        echo "$e,1.0,0.5,1.0,$a,0,0,0,$t,100$rval" >>"$1/metrics.csv"
    done
}
h=$tmp/hand
mkrun "$h/cpu/m1_s1" cpu 1 finished 100 0.8 "40 20 20 20"
mkrun "$h/cpu/m2_s1" cpu 2 finished 50 0.8 "20 10 10 10"
mkrun "$h/cpu/m4_s1" cpu 4 finished 25 0.4 "5 5 5 10"
mkrun "$h/cpu/m8_s1" cpu 8 running 7 0.5 "7 7"
mkrun "$h/gpu/m1_s1" gpu 1 finished 10 0.8 "2 2 2 2"
mkrun "$h/gpu/m2_s1" gpu 2 finished 5 0.8 "1 1 1 1"
cat >"$h/study.preset" <<'EOF'
name=hand
description=Hand-written runs.
paper_source=The paper's Table 2, FMNIST
paper_epochs=300
paper=1:25236.2:0.761 2:14307.5:0.733 4:9209.3:0.692
paper_s=1:0.9000 2:0.9100 4:0.8864
EOF
if BIN=$BIN sh scripts/report.sh "$h" >"$tmp/r.out" 2>&1 && [ -s "$h/report.md" ]; then
    ok "report.sh on hand-written runs"
else
    bad "report.sh on hand-written runs"; cat "$tmp/r.out"
fi
md=$h/report.md
rows=$(group_rows "$md" "Hand, 16-8-8-2, cpu")
want="1 1 100.0 0.8000 20.000 0.0000 0.0000 0.9000
2 1 50.000 0.8000 10.000 0.5000 0.0000 0.9500
4 1 25.000 0.4000 6.667 0.7500 0.5000 0.5250"
got=$(printf '%s\n' "$rows" | awk -F'|' '{ for (i = 2; i <= 9; i++) { gsub(/^ +| +$/, "", $i) } print $2, $3, $4, $5, $6, $7, $8, $9 }')
if [ "$got" = "$want" ]; then
    ok "cpu table: time, accuracy, mean epoch (epochs 2..N), R_r, A_r, S"
else
    bad "cpu table"; printf 'got:\n%s\nwant:\n%s\n' "$got" "$want"
fi
got=$(group_rows "$md" "Hand, 16-8-8-2, gpu" | awk -F'|' '{ gsub(/ /, "", $9); printf "%s ", $9 }')
if [ "$got" = "0.9000 0.9500 " ]; then ok "gpu table S"; else bad "gpu table S: '$got'"; fi
# shellcheck disable=SC2016  # the backquotes are markdown
m8row='^| `cpu/m8_s1` | cpu | 8 | 1 | running | 4 of 4 | `cpu/m8_s1/metrics.csv`'
if printf '%s\n' "$rows" | grep -q '^| 8 |'; then
    bad "the unfinished run is in the table"
elif grep -q "$m8row" "$md"; then
    ok "the unfinished run is listed under Runs only"
else
    bad "the unfinished run is not listed"
fi
if grep -q '^| Hand | 16-8-8-2 | 1 | 1 | 20.000 | 2.000 | 10.00x | 100.0 | 10.000 | 10.00x |$' "$md" &&
   grep -q '^| Hand | 16-8-8-2 | 2 | 1 | 10.000 | 1.000 | 10.00x | 50.000 | 5.000 | 10.00x |$' "$md"; then
    ok "CPU-to-GPU speed-up per motif (epoch and total)"
else
    bad "speed-up table"; sed -n '/speed-up/,/^## Runs/p' "$md"
fi
if grep -q '^| 1 | 25236.2 | 0.761 | 84.121 | 0.0000 | 0.0000 | 0.9000 | 0.9000 |$' "$md" &&
   grep -q '^| 2 | 14307.5 | 0.733 | 47.692 | 0.4331 | 0.0368 | 0.9102 | 0.9100 |$' "$md" &&
   grep -q '^| 4 | 9209.3 | 0.692 | 30.698 | 0.6351 | 0.0907 | 0.8819 | 0.8864 |$' "$md" &&
   grep -q 'm = 2: the paper prints S = 0.9100; its own time and accuracy give 0.9102' "$md" &&
   grep -q 'm = 4: the paper prints S = 0.8864; its own time and accuracy give 0.8819' "$md"; then
    ok "the paper's numbers: computed S 0.9000 0.9102 0.8819 beside the printed ones"
else
    bad "the paper's numbers"; sed -n "/## The paper's numbers/,/## CPU/p" "$md"
fi
if grep -q '^| 4 | 1 | 0.4000 | 0.6920 | -0.2920 | 0.7500 | 0.6351 | 0.5000 | 0.0907 | 0.5250 | 0.8819 |$' "$md"; then
    ok "ours against the paper, motif by motif"
else
    bad "ours against the paper"; grep -A6 'Against the paper' "$md"
fi
csv=$h/plots/hand-16-8-8-2-cpu-score-vs-weight.csv
if [ -f "$csv" ] && [ "$(head -n 1 "$csv")" = "w_R,m = 1,m = 2,m = 4,paper m = 1,paper m = 2,paper m = 4" ] &&
   grep -q '^0\.0,1\.0000,1\.0000,0\.5000,1\.0000,0\.9632,0\.9093$' "$csv" &&
   grep -q '^1\.0,0\.0000,0\.5000,0\.7500,0\.0000,0\.4331,0\.6351$' "$csv" &&
   grep -q '^0\.1,0\.9000,0\.9500,0\.5250,0\.9000,0\.9102,0\.8819$' "$csv" &&
   [ "$(wc -l <"$csv")" -eq 4 ]; then
    ok "S against w_R: 1 - A_r at w_R = 0, the table's S at 0.1, R_r at 1"
else
    bad "S against w_R data"; cat "$csv" 2>/dev/null
fi
if [ "$(wc -l <"$h/summary.csv")" -eq 7 ] &&
   grep -q '^hand,Hand,16-8-8-2,cpu,"Test CPU, 2 threads of 2 cores",4,1,finished,4,4,25,0.4,0.4,4,6.666667,0.7500,0.5000,0.5250,100,abc123,' "$h/summary.csv"; then
    ok "summary.csv: a row per run"
else
    bad "summary.csv"; cat "$h/summary.csv"
fi
if [ "$have_gnuplot" -eq 1 ]; then
    n=0
    for p in "$h"/plots/*.png; do is_png "$p" && n=$((n + 1)); done
    if [ "$n" -eq 6 ]; then ok "6 PNG plots (3 per backend)"; else bad "PNG plots: $n of 6 valid"; ls "$h/plots"; fi
else
    skipped "PNG plots of the hand-written runs: gnuplot absent"
fi
if GNUPLOT=/nonexistent/gnuplot BIN=$BIN sh scripts/report.sh --out "$tmp/noplot" "$h" >"$tmp/r.out" 2>&1 &&
   grep -q '^No plots: gnuplot' "$tmp/noplot/report.md" && ! ls "$tmp/noplot/plots/"*.png >/dev/null 2>&1 &&
   grep -q '^| `'"$(cd "$h" && pwd -P)"'/cpu/m1_s1` |' "$tmp/noplot/report.md"; then
    ok "without gnuplot: the report, no plots, and it says so (--out elsewhere: absolute run paths)"
else
    bad "report without gnuplot"; cat "$tmp/r.out"
fi
if BIN=$BIN sh scripts/report.sh "$tmp/noplot/plots" >"$tmp/r.out" 2>&1; then
    bad "a folder without runs was accepted"
elif grep -q '^report: error: no run folders' "$tmp/r.out"; then
    ok "a folder without runs: one error line"
else
    bad "a folder without runs: wrong message"; cat "$tmp/r.out"
fi

# --- 1b. three seeds: mean ± std, the seed-noise sentences, final accuracy as the result --
# Seed 1's runs are in the old run.json/metrics.csv layout, seeds 2 and 3 in the new one
# (run_id, config.init, config.pad_input, data.n_inputs, memory_estimate_bytes): they
# must form one group. Every run's best accuracy over epochs (0.9 at epoch 2) is above
# its final one: the means must be of the final ones. The expected numbers below were
# computed by hand from these times and accuracies (sample standard deviation, n - 1;
# the R_r, A_r and S means are of the per-seed values settrain score prints).
h3=$tmp/hand3
mkrun "$h3/cpu/m1_s1" cpu 1 finished 100 0.80 "40 20 20 20" 1 0.90 old
mkrun "$h3/cpu/m2_s1" cpu 2 finished 50 0.812 "20 10 10 10" 1 0.90 old
mkrun "$h3/cpu/m4_s1" cpu 4 finished 25 0.60 "5 10 10 10" 1 0.90 old
mkrun "$h3/cpu/m1_s2" cpu 1 finished 120 0.84 "40 24 24 24" 2 0.90 new
mkrun "$h3/cpu/m2_s2" cpu 2 finished 60 0.79 "20 12 12 12" 2 0.90 new
mkrun "$h3/cpu/m4_s2" cpu 4 finished 30 0.64 "6 12 12 12" 2 0.90 new
mkrun "$h3/cpu/m1_s3" cpu 1 finished 110 0.82 "40 22 22 22" 3 0.90 new
mkrun "$h3/cpu/m2_s3" cpu 2 finished 77 0.83 "20 11 11 11" 3 0.90 new
mkrun "$h3/cpu/m4_s3" cpu 4 finished 22 0.62 "5 9 9 9" 3 0.90 new
mkrun "$h3/cpu/m8_s2" cpu 8 diverged 3 0.25 "1 1 1 1" 2 0.25 new "training diverged in epoch 3: the training loss is NaN (lower --lr)"
sed 's/^name=hand$/name=hand3/' "$h/study.preset" >"$h3/study.preset"
if BIN=$BIN sh scripts/report.sh "$h3" >"$tmp/r.out" 2>&1 && [ -s "$h3/report.md" ]; then
    ok "report.sh on three seeds of hand-written runs"
else
    bad "report.sh on three seeds"; cat "$tmp/r.out"
fi
md=$h3/report.md
g3="Hand, 16-8-8-2, cpu"
want='| 1 | 3 | 0.8200 ± 0.0200 | 110.0 ± 10.0 | 22.000 ± 2.000 | 0.0000 ± 0.0000 | 0.0000 ± 0.0000 | 0.9000 ± 0.0000 |
| 2 | 3 | 0.8107 ± 0.0200 | 62.333 ± 13.650 | 11.000 ± 1.000 | 0.4333 ± 0.1155 | 0.0108 ± 0.0422 | 0.9336 ± 0.0342 |
| 4 | 3 | 0.6200 ± 0.0200 | 25.667 ± 4.041 | 10.333 ± 1.528 | 0.7667 ± 0.0289 | 0.2440 ± 0.0060 | 0.7571 ± 0.0061 |'
got=$(mean_rows "$md" "$g3")
if [ "$got" = "$want" ] && grep -q '^Seeds 1, 2, 3 (3 seeds)\.$' "$md"; then
    ok "mean ± std over 3 seeds per motif size (old and new run.json in one group; final accuracy, not the best)"
else
    bad "mean ± std table"; printf 'got:\n%s\nwant:\n%s\n' "$got" "$want"
fi
want='| 1 | 1 | 100.0 | 0.8000 | 20.000 | 0.0000 | 0.0000 | 0.9000 | 0.9000 (2) |
| 1 | 2 | 120.0 | 0.8400 | 24.000 | 0.0000 | 0.0000 | 0.9000 | 0.9000 (2) |
| 1 | 3 | 110.0 | 0.8200 | 22.000 | 0.0000 | 0.0000 | 0.9000 | 0.9000 (2) |
| 2 | 1 | 50.000 | 0.8120 | 10.000 | 0.5000 | -0.0150 | 0.9635 | 0.9000 (2) |
| 2 | 2 | 60.000 | 0.7900 | 12.000 | 0.5000 | 0.0595 | 0.8964 | 0.9000 (2) |
| 2 | 3 | 77.000 | 0.8300 | 11.000 | 0.3000 | -0.0122 | 0.9410 | 0.9000 (2) |
| 4 | 1 | 25.000 | 0.6000 | 10.000 | 0.7500 | 0.2500 | 0.7500 | 0.9000 (2) |
| 4 | 2 | 30.000 | 0.6400 | 12.000 | 0.7500 | 0.2381 | 0.7607 | 0.9000 (2) |
| 4 | 3 | 22.000 | 0.6200 | 9.000 | 0.8000 | 0.2439 | 0.7605 | 0.9000 (2) |'
got=$(group_rows "$md" "$g3")
if [ "$got" = "$want" ]; then
    ok "per-seed table: each seed against its own m = 1 run; the best over epochs last"
else
    bad "per-seed table"; printf 'got:\n%s\nwant:\n%s\n' "$got" "$want"
fi
"$BIN" score --csv --base "$h3/cpu/m1_s3" "$h3/cpu/m2_s3" "$h3/cpu/m4_s3" >"$tmp/score3.csv" 2>&1
want=$(awk -F, 'NR > 1 { printf "%s %s %s ", $(NF-2), $(NF-1), $NF }' "$tmp/score3.csv")
got=$(group_rows "$md" "$g3" | awk -F'|' '$3 + 0 == 3 { for (i = 7; i <= 9; i++) gsub(/ /, "", $i); printf "%s %s %s ", $7, $8, $9 }')
if [ -n "$want" ] && [ "$got" = "$want" ]; then
    ok "seed 3's R_r, A_r, S equal settrain score's for seed 3's runs"
else
    bad "seed 3 against settrain score: got '$got', want '$want'"
fi
if grep -qF '**Seed noise rule:** a difference between two' "$md" && grep -q '^motif sizes is called \*within seed noise\* when |difference of their means| < the larger of$' "$md" &&
   grep -qF -- '- m = 2 against m = 1: final accuracy 0.8107 against 0.8200, difference -0.0093, within seed noise (larger std 0.0200); time per epoch 11.000 s against 22.000 s, difference -11.000 s, beyond seed noise (larger std 2.000 s).' "$md" &&
   grep -qF -- '- m = 4 against m = 1: final accuracy 0.6200 against 0.8200, difference -0.2000, beyond seed noise (larger std 0.0200);' "$md" &&
   grep -qF -- '- m = 4 against m = 2: final accuracy 0.6200 against 0.8107, difference -0.1907, beyond seed noise (larger std 0.0200); time per epoch 10.333 s against 11.000 s, difference -0.667 s, within seed noise (larger std 1.528 s).' "$md"; then
    ok "the seed-noise rule is stated and a sentence per pair says within or beyond seed noise"
else
    bad "seed-noise sentences"; sed -n '/Seed noise/,/^Per seed/p' "$md"
fi
if grep -qF '| motif | seed | time (s) | final accuracy | avg time per epoch (s) | R_r | A_r | S | best over epochs (epoch), selected on the test set: optimistic |' "$md" &&
   ! grep -q 'best accuracy (epoch)\|accuracy (best)' "$md" && [ "$(mean_rows "$md" "$g3" | awk -F'|' '$4 ~ /0\.9000/' | wc -l)" -eq 0 ]; then
    ok "the final accuracy is the result; the best over epochs appears only labelled as selected on the test set"
else
    bad "best accuracy labelling"; grep -n 'best' "$md"
fi
# a report from 3 seeds still reproduces the paper's arithmetic
if grep -q '^| 2 | 14307.5 | 0.733 | 47.692 | 0.4331 | 0.0368 | 0.9102 | 0.9100 |$' "$md" &&
   grep -q '^| 4 | 9209.3 | 0.692 | 30.698 | 0.6351 | 0.0907 | 0.8819 | 0.8864 |$' "$md" &&
   grep -q '^| 4 | 3 | 0.6200 | 0.6920 | -0.0720 | 0.7667 | 0.6351 | 0.2440 | 0.0907 | 0.7571 | 0.8819 |$' "$md" &&
   grep -q '^| 2 | 3 | 0.8107 | 0.7330 | +0.0777 | 0.4333 | 0.4331 | 0.0108 | 0.0368 | 0.9336 | 0.9102 |$' "$md"; then
    ok "3 seeds: the paper's S 0.9102 and 0.8819, and the seed means against the paper"
else
    bad "3 seeds against the paper"; sed -n '/Against the paper/,/^## Runs/p' "$md"
fi
csv=$h3/summary-by-motif.csv
if [ "$(wc -l <"$csv" 2>/dev/null)" -eq 4 ] &&
   head -n 1 "$csv" | grep -q '^study,dataset,network,backend,settings,motif,n_seeds,seeds,final_test_acc_mean,final_test_acc_std,time_s_mean,time_s_std,mean_epoch_s_mean,mean_epoch_s_std,R_r_mean,R_r_std,A_r_mean,A_r_std,S_mean,S_std,n_scored$' &&
   awk -F, 'function near(a, b) { return (a - b < 1e-6 && b - a < 1e-6) }
        $6 == 2 && $7 == 3 && $8 == "1 2 3" && near($9, 0.8106667) && near($10, 0.0200333) && near($11, 62.333333) && near($12, 13.650397) &&
        near($13, 11) && near($14, 1) && near($15, 0.4333333) && near($16, 0.1154701) && near($19, 0.9336333) && near($20, 0.0341512) && $21 == 3 { f = 1 }
        END { exit !f }' "$csv"; then
    ok "summary-by-motif.csv: mean and std per motif size"
else
    bad "summary-by-motif.csv"; cat "$csv"
fi
# shellcheck disable=SC2016  # the backquotes are markdown
if grep -qF -- '- `cpu/m8_s2` (diverged): training diverged in epoch 3: the training loss is NaN (lower --lr)' "$md" &&
   ! group_rows "$md" "$g3" | grep -q '^| 8 |' && ! mean_rows "$md" "$g3" | grep -q '^| 8 |'; then
    ok "a diverged run: listed with run.json's error, in no table"
else
    bad "diverged run"; sed -n '/^## Runs/,$p' "$md"
fi
if grep -q '^3,0.820000,0.020000,3,0.810667,0.020033,3,0.620000,0.020000,3$' "$h3/plots/hand-16-8-8-2-cpu-accuracy-mean.csv" 2>/dev/null; then
    ok "mean test accuracy per epoch over the seeds (plot data)"
else
    bad "accuracy-mean plot data"; cat "$h3/plots/hand-16-8-8-2-cpu-accuracy-mean.csv"
fi
if [ "$have_gnuplot" -eq 1 ]; then
    if is_png "$h3/plots/hand-16-8-8-2-cpu-accuracy-mean.png" && grep -q 'plots/hand-16-8-8-2-cpu-accuracy-mean.png' "$md"; then
        ok "mean accuracy plot"
    else
        bad "mean accuracy plot"; ls "$h3/plots"
    fi
else
    skipped "mean accuracy plot: gnuplot absent"
fi
# one seed: no std, and the report says so
md=$h/report.md
if grep -q '^Seed 1: one seed, so no standard deviation; this report cannot tell a difference between motif sizes from seed noise\.$' "$md" &&
   [ "$(mean_rows "$md" "Hand, 16-8-8-2, cpu")" = '| 1 | 1 | 0.8000 | 100.0 | 20.000 | 0.0000 | 0.0000 | 0.9000 |
| 2 | 1 | 0.8000 | 50.000 | 10.000 | 0.5000 | 0.0000 | 0.9500 |
| 4 | 1 | 0.4000 | 25.000 | 6.667 | 0.7500 | 0.5000 | 0.5250 |' ] &&
   ! grep -q 'seed noise (larger std' "$md" &&
   grep -q '^\*\*SGD steps per epoch: 1\*\* (10 training samples, batch 128: the whole training set is one batch), so 4 epochs are 4 SGD steps\.$' "$md"; then
    ok "one seed: values without std, the report says it cannot tell seed noise; one SGD step per epoch flagged"
else
    bad "one-seed report"; sed -n '/^### Hand, 16-8-8-2, cpu/,/^Per seed/p' "$md"
fi
# two settings of one network in one folder (--init he and he-sparse): two groups,
# their headings tell them apart
h4=$tmp/hand4
mkrun "$h4/he/m1_s1" cpu 1 finished 100 0.80 "40 20 20 20" 1 "" new
mkrun "$h4/he/m2_s1" cpu 2 finished 50 0.70 "20 10 10 10" 1 "" new
mkrun "$h4/sparse/m1_s1" cpu 1 finished 100 0.90 "40 20 20 20" 1 "" new
mkrun "$h4/sparse/m2_s1" cpu 2 finished 50 0.85 "20 10 10 10" 1 "" new
for f in "$h4"/sparse/*/run.json; do sed 's/"init": "he"/"init": "he-sparse"/' "$f" >"$tmp/rj" && cat "$tmp/rj" >"$f"; done
if BIN=$BIN GNUPLOT=/nonexistent/gnuplot sh scripts/report.sh "$h4" >"$tmp/r.out" 2>&1 &&
   [ "$(mean_rows "$h4/report.md" "Hand, 16-8-8-2, cpu (init he)" | cut -d'|' -f2,4 | tr -d ' ' | tr '\n' ' ')" = "1|0.8000 2|0.7000 " ] &&
   [ "$(mean_rows "$h4/report.md" "Hand, 16-8-8-2, cpu (init he-sparse)" | cut -d'|' -f2,4 | tr -d ' ' | tr '\n' ' ')" = "1|0.9000 2|0.8500 " ]; then
    ok "groups of one network with other settings: headings name the setting that differs"
else
    bad "groups with other settings"; cat "$tmp/r.out"; grep '^###' "$h4/report.md"
fi

# --- 2. study.sh on a tiny TOX-171 preset ------------------------------------------------
shared=${ST_SHARED_DATA:-../shared/data}
if [ ! -f "$shared/TOX-171.mat" ]; then
    skipped "study.sh: $shared/TOX-171.mat absent"
    finish
fi
shared=$(cd "$shared" && pwd -P)
s=$tmp/study
# the data path relative to the repository root, as the presets write it (newer
# run.json files record it resolved to an absolute path)
reldata=$(realpath --relative-to="$(pwd -P)" "$tmp")/tox.h5
cat >"$tmp/tiny.preset" <<EOF
# a tiny study for the test
name=tiny
data=$reldata
prepare=prepare mat --in $shared/TOX-171.mat --out $reldata
motifs=1 2 4
hidden=64,64
epochs=3   # three epochs
batch=8
EOF

BIN=$BIN sh scripts/study.sh "$tmp/tiny.preset" --backend cpu --out "$s" --threads 1 --dry-run >"$tmp/dry.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && [ "$(grep -c ' train --data .* --motif [124] ' "$tmp/dry.out")" -eq 3 ] &&
   grep -q ' prepare mat --in ' "$tmp/dry.out" && grep -q 'report.sh' "$tmp/dry.out" &&
   [ ! -e "$s" ] && [ ! -e "$tmp/tox.h5" ]; then
    ok "--dry-run prints prepare, three trainings and the report, and runs nothing"
else
    bad "--dry-run (rc $rc)"; cat "$tmp/dry.out"
fi

BIN=$BIN sh scripts/study.sh "$tmp/tiny.preset" --backend cpu --out "$s" --threads 1 --quiet >"$tmp/study.out" 2>&1; rc=$?
n=0
for m in 1 2 4; do
    grep -q '"status": "finished"' "$s/cpu/m${m}_s1/run.json" 2>/dev/null && n=$((n + 1))
done
if [ "$rc" -eq 0 ] && [ "$n" -eq 3 ]; then
    ok "study: three runs finished"
else
    bad "study (rc $rc, $n finished)"; cat "$tmp/study.out"
fi
md=$s/report.md
rows=$(group_rows "$md" "TOX-171, 5748-64-64-4, cpu" 2>/dev/null)
if [ "$(printf '%s\n' "$rows" | awk -F'|' '{ gsub(/ /, "", $2); printf "%s ", $2 }')" = "1 2 4 " ] &&
   grep -q '^SGD steps per epoch: 15 (114 training samples in batches of 8, the last of 2), 45 in 3 epochs\.$' "$md"; then
    ok "report.md: a row per motif, 15 SGD steps per epoch"
else
    bad "report.md rows"; cat "$md" 2>/dev/null
fi
s1=$(printf '%s\n' "$rows" | head -n 1)
if [ "$(cell "$s1" 8)" = 0.9000 ]; then ok "S for m = 1 is w_A = 0.9000"; else bad "S for m = 1: '$(cell "$s1" 8)'"; fi
"$BIN" score --csv --base "$s/cpu/m1_s1" "$s/cpu/m2_s1" "$s/cpu/m4_s1" >"$tmp/score.csv" 2>&1
want=$(awk -F, 'NR > 1 { printf "%s %s %s ", $(NF-2), $(NF-1), $NF }' "$tmp/score.csv")
got=$(printf '%s\n' "$rows" | awk -F'|' '{ for (i = 7; i <= 9; i++) gsub(/ /, "", $i); printf "%s %s %s ", $7, $8, $9 }')
if [ -n "$want" ] && [ "$got" = "$want" ]; then
    ok "R_r, A_r, S equal settrain score's for the same runs"
else
    bad "S against settrain score: got '$got', want '$want'"
fi
if [ -f "$s/study.preset" ] && [ -f "$s/cpu/study.env" ] && grep -q '^command=scripts/study.sh ' "$s/cpu/study.env"; then
    ok "study.preset and cpu/study.env recorded"
else
    bad "study records"
fi
if [ "$have_gnuplot" -eq 1 ]; then
    n=0
    for p in accuracy epoch-time score-vs-weight; do
        is_png "$s/plots/tox-171-5748-64-64-4-cpu-$p.png" && n=$((n + 1))
    done
    if [ "$n" -eq 3 ]; then ok "three valid PNG plots"; else bad "PNG plots: $n of 3 valid"; ls "$s/plots"; fi
else
    skipped "PNG plots of the study: gnuplot absent"
fi

cksum "$s"/cpu/m*_s1/run.json "$s"/cpu/m*_s1/metrics.csv >"$tmp/before"
BIN=$BIN sh scripts/study.sh "$tmp/tiny.preset" --backend cpu --out "$s" --threads 1 --quiet >"$tmp/again.out" 2>&1; rc=$?
cksum "$s"/cpu/m*_s1/run.json "$s"/cpu/m*_s1/metrics.csv >"$tmp/after"
if [ "$rc" -eq 0 ] && [ "$(grep -c ': skip .* (finished)$' "$tmp/again.out")" -eq 3 ] &&
   ! grep -q ' train --' "$tmp/again.out" && cmp -s "$tmp/before" "$tmp/after"; then
    ok "a second study.sh skips the finished runs and changes none (data path relative in the preset, absolute in run.json)"
else
    bad "second invocation (rc $rc)"; cat "$tmp/again.out"
fi

# an interrupted run with a checkpoint is resumed; one without is moved aside
sed 's/"status": "finished"/"status": "interrupted"/' "$s/cpu/m2_s1/run.json" >"$tmp/rj" && cat "$tmp/rj" >"$s/cpu/m2_s1/run.json"
sed 's/"status": "finished"/"status": "running"/' "$s/cpu/m4_s1/run.json" >"$tmp/rj" && cat "$tmp/rj" >"$s/cpu/m4_s1/run.json"
rm -f "$s/cpu/m4_s1/checkpoint.h5"
BIN=$BIN sh scripts/study.sh "$tmp/tiny.preset" --backend cpu --out "$s" --threads 1 --quiet >"$tmp/resume.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && grep -q 'train --resume .*/cpu/m2_s1 ' "$tmp/resume.out" &&
   grep -q 'stopped before its first checkpoint; moving it to .*/cpu/m4_s1\.stale-' "$tmp/resume.out" &&
   grep -q '"status": "finished"' "$s/cpu/m2_s1/run.json" && grep -q '"status": "finished"' "$s/cpu/m4_s1/run.json" &&
   grep -q '| running | 3 of 3 |' "$s/report.md"; then
    ok "an interrupted run is resumed, one without a checkpoint moved aside and retrained"
else
    bad "resume and stale runs (rc $rc)"; cat "$tmp/resume.out"
fi

BIN=$BIN sh scripts/study.sh "$tmp/tiny.preset" --backend cpu --out "$s" --epochs 4 --threads 1 --quiet >"$tmp/other.out" 2>&1; rc=$?
if [ "$rc" -eq 1 ] && grep -q 'holds a run with other settings: epochs 3 (this study: 4)' "$tmp/other.out" &&
   cmp -s "$tmp/before" "$tmp/after"; then
    ok "a run folder with other settings is refused"
else
    bad "other settings (rc $rc)"; cat "$tmp/other.out"
fi

printf 'name=x\ndata=%s/tox.h5\nmotifs=1\nhidden=8\nepochz=3\n' "$tmp" >"$tmp/bad.preset"
BIN=$BIN sh scripts/study.sh "$tmp/bad.preset" --out "$tmp/bad" >"$tmp/bad.out" 2>&1; rc=$?
if [ "$rc" -eq 1 ] && grep -q 'bad.preset:5: unknown key "epochz"' "$tmp/bad.out" && [ ! -e "$tmp/bad" ]; then
    ok "an unknown preset key is refused, naming file and line"
else
    bad "unknown preset key (rc $rc)"; cat "$tmp/bad.out"
fi

# --seeds: more seeds into the same folder; the report then has a std
BIN=$BIN sh scripts/study.sh "$tmp/tiny.preset" --backend cpu --out "$s" --threads 1 --quiet --seeds 2 >"$tmp/seeds.out" 2>&1; rc=$?
n=0
for m in 1 2 4; do
    grep -q '"status": "finished"' "$s/cpu/m${m}_s2/run.json" 2>/dev/null && n=$((n + 1))
done
if [ "$rc" -eq 0 ] && [ "$n" -eq 3 ] && grep -q 'seeds 2 (--seeds)' "$tmp/seeds.out" &&
   [ "$(grep -c ' train --data .* --seed 2 ' "$tmp/seeds.out")" -eq 3 ] && ! grep -q ' --seed 1 ' "$tmp/seeds.out" &&
   grep -q '^Seeds 1, 2 (2 seeds)\.$' "$s/report.md" &&
   [ "$(mean_rows "$s/report.md" "TOX-171, 5748-64-64-4, cpu" | grep -c '^| [124] | 2 | 0\.[0-9]* ± ')" -eq 3 ] &&
   grep -q '^# this invocation trained seeds 2 (--seeds)' "$s/study.preset"; then
    ok "--seeds 2 adds seed 2's runs to the folder; the report has 2 seeds with std"
else
    bad "--seeds (rc $rc, $n finished)"; cat "$tmp/seeds.out"
fi
BIN=$BIN sh scripts/study.sh "$tmp/tiny.preset" --out "$s" --seeds 'x' --dry-run >"$tmp/seeds.out" 2>&1; rc=$?
if [ "$rc" -eq 2 ] && grep -q "^study: error: --seeds 'x': expected seeds" "$tmp/seeds.out"; then
    ok "a malformed --seeds is refused (exit 2)"
else
    bad "malformed --seeds (rc $rc)"; cat "$tmp/seeds.out"
fi

# a run that diverges is kept as a result: the study goes on, reports it, exits 1,
# and a second invocation neither resumes nor retrains it
cat >"$tmp/div.preset" <<EOF
name=div
data=$reldata
motifs=1 2
hidden=16,16
epochs=2
batch=8
lr=1e6
EOF
BIN=$BIN sh scripts/study.sh "$tmp/div.preset" --backend cpu --out "$tmp/div" --threads 1 --quiet >"$tmp/div.out" 2>&1; rc=$?
# shellcheck disable=SC2016  # the backquotes are markdown
if [ "$rc" -eq 1 ] && [ "$(grep -c ': diverged (training diverged in epoch' "$tmp/div.out")" -eq 2 ] &&
   grep -q '^study: error: runs that diverged (listed in the report, not retrained): m1/s1 m2/s1$' "$tmp/div.out" &&
   grep -q '^- `cpu/m1_s1` (diverged): training diverged in epoch 1' "$tmp/div/report.md"; then
    ok "diverged runs: the study goes on, the report lists them with the error, exit 1"
else
    bad "diverged study (rc $rc)"; cat "$tmp/div.out"
fi
cksum "$tmp/div/cpu/m1_s1/run.json" >"$tmp/before"
BIN=$BIN sh scripts/study.sh "$tmp/div.preset" --backend cpu --out "$tmp/div" --threads 1 --quiet >"$tmp/div.out" 2>&1; rc=$?
cksum "$tmp/div/cpu/m1_s1/run.json" >"$tmp/after"
if [ "$rc" -eq 1 ] && [ "$(grep -c ': skip .* (diverged: training diverged' "$tmp/div.out")" -eq 2 ] &&
   ! grep -q ' train --' "$tmp/div.out" && ! ls -d "$tmp/div/cpu/"*.stale-* >/dev/null 2>&1 && cmp -s "$tmp/before" "$tmp/after"; then
    ok "a second invocation skips the diverged runs"
else
    bad "diverged runs again (rc $rc)"; cat "$tmp/div.out"
fi
finish
