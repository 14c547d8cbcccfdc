#!/bin/sh
# test_resume.sh: runs that survive interruption, end to end with the built
# binary on lung_small (from the shared data; skipped visibly when absent):
#  - SIGTERM inside a run: exit status 3, a checkpoint, run.json "interrupted";
#    --resume continues and the final metrics.csv equals an uninterrupted
#    run's in every non-timing column (same seed, same threads);
#  - the kill test (short form): kill -9 at random moments several times,
#    resume each time; no checkpoint is ever partial (each one loads), the
#    epochs in metrics.csv continue without gaps or duplicates and match the
#    uninterrupted run;
#  - the trained model's checkpoint serves eval, predict and features;
#  - --resume refuses options that would change the run, and a folder
#    without a checkpoint.
# KILLS (default 6) sets the number of kill -9 rounds.
# Prints "test_resume: N passed, N failed" and exits non-zero on failure.
set -u
BIN=${BUILD:-build}/settrain
KILLS=${KILLS:-6}
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() { fail=$((fail + 1)); echo "  FAIL $1"; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_resume.XXXXXX") || { echo "test_resume: 0 passed, 1 failed"; exit 1; }
trap 'umount "$tmp/full" 2>/dev/null; rm -rf "$tmp"' EXIT
shared=${ST_SHARED_DATA:-../shared/data}
if [ ! -f "$shared/lung_small.mat" ]; then
    echo "  SKIP: $shared/lung_small.mat absent"
    echo "test_resume: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
"$BIN" prepare mat --in "$shared/lung_small.mat" --out "$tmp/d.h5" >/dev/null || { bad "prepare"; }
# Non-timing columns of metrics.csv: epoch, losses, accuracies, connections.
cols() { cut -d, -f1-5,10 "$1"; }
# EP epochs: long enough (about 2 s with a checkpoint each epoch) that the kill test's kills,
# 0.05-0.5 s after each start, land before the run ends (40 epochs took 0.26 s once
# checkpoints stopped building an image in memory, and no kill landed)
EP=400
ARGS="--data $tmp/d.h5 --hidden 768,768 --epochs $EP --batch 8 --threads 2 --quiet"

"$BIN" train $ARGS --out "$tmp/ref" >/dev/null 2>&1 && ok "uninterrupted reference run" || bad "reference run"

# SIGTERM inside the run.
"$BIN" train $ARGS --out "$tmp/sig" >"$tmp/sig.log" 2>&1 &
pid=$!
# signal once a few epochs are done, so the run is surely in progress
n=0
while [ "$n" -lt 500 ] && [ "$(cat "$tmp/sig/metrics.csv" 2>/dev/null | wc -l)" -lt 5 ]; do
    sleep 0.01; n=$((n + 1))
done
kill -TERM "$pid" 2>/dev/null
wait "$pid"; rc=$?
if [ "$rc" -eq 3 ] && [ -f "$tmp/sig/checkpoint.h5" ] && grep -q '"status": "interrupted"' "$tmp/sig/run.json"; then
    ok "SIGTERM: exit 3, checkpoint, run.json interrupted ($(grep -o 'after epoch [0-9]*' "$tmp/sig.log"))"
else
    bad "SIGTERM: exit $rc (the run may have finished before the signal)"; tail -3 "$tmp/sig.log"
fi
"$BIN" train --resume "$tmp/sig" --threads 2 --quiet >/dev/null 2>&1; rc=$?
cols "$tmp/sig/metrics.csv" >"$tmp/sig.cols"
if [ "$rc" -eq 0 ] && cols "$tmp/ref/metrics.csv" | cmp -s - "$tmp/sig.cols"; then
    ok "resumed after SIGTERM: metrics identical to the uninterrupted run"
else
    bad "resume after SIGTERM (exit $rc) differs:"; cols "$tmp/ref/metrics.csv" | diff - "$tmp/sig.cols" | head -5
fi

# The kill test: kill -9 at random moments, resume each time.
kills=0; resumes=0; restarts=0; partial=0; round=0
run="$tmp/kill"
while [ "$round" -lt 100 ]; do
    round=$((round + 1))
    if [ -f "$run/checkpoint.h5" ]; then
        "$BIN" train --resume "$run" --threads 2 --quiet >/dev/null 2>&1 &
        resumes=$((resumes + 1))
    else
        rm -rf "$run"
        "$BIN" train $ARGS --checkpoint-every 1 --out "$run" >/dev/null 2>&1 &
        restarts=$((restarts + 1))
    fi
    pid=$!
    if [ "$kills" -lt "$KILLS" ]; then
        # a random moment between 0.05 and 0.5 s
        sleep "0.$(awk -v s="$round$$" 'BEGIN { srand(s); printf "%02d", 5 + int(rand() * 45) }')"
        if kill -9 "$pid" 2>/dev/null; then
            kills=$((kills + 1))
        fi
        wait "$pid" 2>/dev/null
        if [ -f "$run/checkpoint.h5" ] && ! "$BIN" features --model "$run/checkpoint.h5" --top 1 >/dev/null 2>&1; then
            partial=$((partial + 1))
        fi
    else
        wait "$pid"; rc=$?
        [ "$rc" -eq 0 ] && break
        bad "final resume exited $rc"; break
    fi
done
cols "$run/metrics.csv" >"$tmp/kill.cols" 2>/dev/null
epochs=$(cut -d, -f1 "$run/metrics.csv" | tail -n +2 | tr '\n' ' ')
expect=$(seq 1 "$EP" | tr '\n' ' ')
echo "  kill test: $kills kills, $resumes resumes, $restarts fresh starts, $partial unreadable checkpoints"
[ "$kills" -ge 3 ] && ok "killed $kills times with kill -9" || bad "only $kills kills landed"
[ "$partial" -eq 0 ] && ok "every checkpoint left behind loads" || bad "$partial checkpoints did not load"
[ "$epochs" = "$expect" ] && ok "metrics.csv epochs 1..$EP without gaps or duplicates" || bad "epochs: $epochs"
cols "$tmp/ref/metrics.csv" | cmp -s - "$tmp/kill.cols" && ok "killed-and-resumed run equals the uninterrupted run" || bad "killed run differs from the reference"
ls "$run" | grep -q 'tmp' && bad "temporary files left in the run folder: $(ls "$run")" || ok "no temporary files left in the run folder"

# The trained model in use.
"$BIN" eval --model "$tmp/ref/checkpoint.h5" --data "$tmp/d.h5" >"$tmp/eval.out" 2>&1
acc=$(awk '/^accuracy/ { print $2 }' "$tmp/eval.out")
final=$(tail -n 1 "$tmp/ref/metrics.csv" | cut -d, -f5)
awk -v a="$acc" -v f="$final" 'BEGIN { exit !(a != "" && a + 0 == f + 0) }' && ok "eval accuracy $acc equals the run's final test accuracy" || bad "eval accuracy '$acc' vs final '$final'"
grep -q 'confusion matrix' "$tmp/eval.out" && ok "eval prints the confusion matrix" || bad "no confusion matrix"
"$BIN" predict --model "$tmp/ref/checkpoint.h5" --input "$tmp/d.h5" --out "$tmp/pred.csv" 2>/dev/null
rows=$(tail -n +2 "$tmp/pred.csv" | wc -l)
[ "$rows" -eq 24 ] && head -n 1 "$tmp/pred.csv" | grep -q '^row,class,label,probability$' && ok "predict wrote 24 rows" || bad "predict wrote $rows rows"
"$BIN" features --model "$tmp/ref/checkpoint.h5" --top 5 >"$tmp/feat.csv" 2>&1
[ "$(wc -l <"$tmp/feat.csv")" -eq 6 ] && ok "features --top 5" || bad "features: $(head -3 "$tmp/feat.csv")"

# A full disk: a tmpfs with room for one checkpoint but not for the next.
# (Needs mount, i.e. root; skipped visibly otherwise.)
mkdir -p "$tmp/full"
if mount -t tmpfs -o size=700k tmpfs "$tmp/full" 2>/dev/null; then
    "$BIN" train --data "$tmp/d.h5" --hidden 512,512 --epochs 30 --batch 8 --threads 2 --quiet \
        --checkpoint-every 1 --out "$tmp/full/run" >/dev/null 2>"$tmp/err"; rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q 'No space left on device' "$tmp/err" &&
       "$BIN" features --model "$tmp/full/run/checkpoint.h5" --top 1 >/dev/null 2>&1 &&
       ! ls "$tmp/full/run" | grep -q tmp; then
        ok "disk full: one-line error, exit 1, previous checkpoint intact, no temporary left"
    else
        bad "disk full: exit $rc: $(cat "$tmp/err")"
    fi
    umount "$tmp/full"
else
    echo "  SKIP disk-full case: cannot mount a tmpfs here"
fi

# Refusals.
"$BIN" train --resume "$tmp/ref" --lr 0.5 >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q 'cannot be combined with --resume' "$tmp/err" && ok "--resume with --lr refused" || bad "--resume --lr: exit $rc"
mkdir -p "$tmp/empty"
"$BIN" train --resume "$tmp/empty" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 1 ] && grep -q 'no checkpoint.h5' "$tmp/err" && ok "--resume of a folder without a checkpoint refused" || bad "--resume empty: exit $rc"
head -c 2000 "$tmp/ref/checkpoint.h5" >"$tmp/trunc.h5"
"$BIN" eval --model "$tmp/trunc.h5" --data "$tmp/d.h5" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && ok "truncated checkpoint: one-line error" || bad "truncated checkpoint: exit $rc"
echo "test_resume: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
