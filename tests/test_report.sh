#!/bin/sh
# test_report.sh: scripts/report.sh and scripts/study.sh end to end.
#  1. report.sh on hand-written run folders (run.json + metrics.csv, no
#     training): times 100/50/25 s and accuracies 0.8/0.8/0.4 must give
#     R_r 0/0.5/0.75, A_r 0/0/0.5 and S 0.9000/0.9500/0.5250; the average time
#     per epoch is the mean over epochs 2..N; a GPU group gives the CPU-to-GPU
#     speed-up; an unfinished run is listed but not tabulated; the paper's
#     FMNIST numbers give S 0.9000/0.9102/0.8819 beside the printed 0.9100 and
#     0.8864; the S-against-w_R data is 1 - A_r at w_R = 0, the table's S at
#     0.1 and R_r at 1; summary.csv has a row per run; without gnuplot the report says so.
#  2. study.sh on a tiny preset (TOX-171 from ${ST_SHARED_DATA:-../shared/data},
#     hidden 64,64, 3 epochs, motifs 1 2 4; skipped visibly when absent):
#     --dry-run prints the commands and runs nothing; the study finishes three
#     runs; report.md has a row per motif, S = 0.9000 for m = 1 and the S that
#     `settrain score` prints for the same runs; three valid PNG files; a second
#     invocation skips the finished runs; an interrupted run is resumed and one
#     without a checkpoint moved aside; other settings in the same folder and a
#     bad preset are refused.
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

# --- 2. study.sh on a tiny TOX-171 preset ------------------------------------------------
shared=${ST_SHARED_DATA:-../shared/data}
if [ ! -f "$shared/TOX-171.mat" ]; then
    skipped "study.sh: $shared/TOX-171.mat absent"
    finish
fi
shared=$(cd "$shared" && pwd -P)
s=$tmp/study
cat >"$tmp/tiny.preset" <<EOF
# a tiny study for the test
name=tiny
data=$tmp/tox.h5
prepare=prepare mat --in $shared/TOX-171.mat --out $tmp/tox.h5
motifs=1 2 4
hidden=64,64
epochs=3   # three epochs
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
if [ "$(printf '%s\n' "$rows" | awk -F'|' '{ gsub(/ /, "", $2); printf "%s ", $2 }')" = "1 2 4 " ]; then
    ok "report.md: a row per motif"
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
    ok "a second study.sh skips the finished runs and changes none"
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
finish
