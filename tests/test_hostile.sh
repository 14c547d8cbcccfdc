#!/bin/sh
# test_hostile.sh: what a careless or hostile user can do to settrain's
# outputs, run folders and runs, end to end with the built binary on
# lung_small (from the shared data; skipped visibly when absent). Each case
# is one that once lost data, hung or reported a wrong result as success:
#  - outputs: a device, FIFO, directory or symlink to one as --out is refused
#    and left as it was; an output that is one of the command's inputs or a
#    run's file is refused; an existing output needs --force; a full disk
#    leaves the previous file intact (predict, features, prepare);
#  - run folders: a folder held by a live run is refused naming its pid and
#    host (a second train into it, a second --resume of it); a folder with a
#    checkpoint and run.json but no metrics.csv is a run; a checkpoint copied
#    from another run is refused; resuming on changed data is refused (unless
#    --allow-data-change); a relative --data resumes from another directory;
#  - runs: a diverged run (--lr 1e6) stops with exit 1 and run.json
#    "diverged"; a network without connections is refused; a run that does
#    not fit in memory is refused before allocating, naming the biggest
#    part; a stop signal while the run is being set up exits 3 at once and
#    writes nothing; SIGHUP checkpoints like SIGTERM; a fatal error leaves
#    run.json "failed" with the message; a first checkpoint that does not
#    fit says that nothing was written;
#  - eval, features and score on a full stdout (/dev/full) fail.
# Prints "test_hostile: N passed, N failed, N skipped" and exits non-zero on failure.
set -u
BIN=${BUILD:-build}/settrain
pass=0; fail=0; skip=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() { fail=$((fail + 1)); echo "  FAIL $1"; }
skp() { skip=$((skip + 1)); echo "  SKIP $1"; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_hostile.XXXXXX") || { echo "test_hostile: 0 passed, 1 failed"; exit 1; }
cleanup() {
    for p in $bgpids; do kill -9 "$p" 2>/dev/null; done
    umount "$tmp/full" 2>/dev/null
    rm -rf "$tmp"
}
bgpids=""
trap cleanup EXIT
shared=${ST_SHARED_DATA:-../shared/data}
if [ ! -f "$shared/lung_small.mat" ]; then
    echo "  SKIP: $shared/lung_small.mat absent"
    echo "test_hostile: 0 passed, 0 failed, 1 skipped"
    exit 0
fi

# one_error NAME PATTERN: the last command ($rc, $tmp/err) failed with exit 1
# and exactly one stderr line "settrain: error: ..." matching PATTERN.
one_error() {
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q '^settrain: error: ' "$tmp/err" &&
       grep -Eq "$2" "$tmp/err"; then
        ok "$1: $(cat "$tmp/err")"
    else
        bad "$1: exit $rc: $(head -c 400 "$tmp/err")"
    fi
}

"$BIN" prepare mat --in "$shared/lung_small.mat" --out "$tmp/d.h5" >/dev/null 2>&1 || bad "prepare"
"$BIN" prepare mat --in "$shared/lung_small.mat" --seed 2 --out "$tmp/d2.h5" >/dev/null 2>&1 || bad "prepare seed 2"
SMALL="--hidden 32 --batch 8 --threads 1 --quiet"
"$BIN" train --data "$tmp/d.h5" $SMALL --epochs 2 --out "$tmp/run" >/dev/null 2>&1 || bad "a small run"

# --- outputs ---------------------------------------------------------------
mkfifo "$tmp/fifo"
"$BIN" prepare mat --in "$shared/lung_small.mat" --out "$tmp/fifo" >/dev/null 2>"$tmp/err"; rc=$?
one_error "prepare --out FIFO refused" 'FIFO'
[ -p "$tmp/fifo" ] && ok "the FIFO is still a FIFO" || bad "the FIFO was replaced"
if mknod "$tmp/nulldev" c 1 3 2>/dev/null; then
    "$BIN" prepare mat --in "$shared/lung_small.mat" --out "$tmp/nulldev" --force >/dev/null 2>"$tmp/err"; rc=$?
    one_error "prepare --out character device refused (with --force too)" 'character device'
    [ -c "$tmp/nulldev" ] && ok "the device is still a device" || bad "the device node was replaced by a file"
else
    skp "device node case: mknod not permitted here"
fi
mkdir "$tmp/adir"
"$BIN" predict --model "$tmp/run/checkpoint.h5" --input "$tmp/d.h5" --out "$tmp/adir" --force >/dev/null 2>"$tmp/err"; rc=$?
one_error "predict --out directory refused" 'directory'
ln -s "$tmp/fifo" "$tmp/link2fifo"
"$BIN" features --model "$tmp/run/checkpoint.h5" --out "$tmp/link2fifo" --force >/dev/null 2>"$tmp/err"; rc=$?
one_error "features --out symlink to a FIFO refused" 'symbolic link'
echo old >"$tmp/target.csv"
ln -s "$tmp/target.csv" "$tmp/link.csv"
if "$BIN" features --model "$tmp/run/checkpoint.h5" --out "$tmp/link.csv" --force >/dev/null 2>&1 &&
   [ -L "$tmp/link.csv" ] && head -n 1 "$tmp/target.csv" | grep -q '^rank,feature'; then
    ok "--force through a symlink replaces its regular target and keeps the link"
else
    bad "symlink output: link or target wrong"
fi
cp "$tmp/d.h5" "$tmp/d.bak"
"$BIN" predict --model "$tmp/run/checkpoint.h5" --input "$tmp/d.h5" --out "$tmp/d.h5" --force >/dev/null 2>"$tmp/err"; rc=$?
one_error "predict --out equal to --input refused" 'also an input'
cmp -s "$tmp/d.h5" "$tmp/d.bak" && ok "the input is intact" || bad "the input was modified"
cp "$tmp/run/checkpoint.h5" "$tmp/ck.bak"
"$BIN" predict --model "$tmp/run/checkpoint.h5" --input "$tmp/d.h5" --out "$tmp/run/checkpoint.h5" --force >/dev/null 2>"$tmp/err"; rc=$?
one_error "predict --out equal to --model refused" 'also an input'
"$BIN" prepare mat --in "$shared/lung_small.mat" --out "$tmp/run/checkpoint.h5" --force >/dev/null 2>"$tmp/err"; rc=$?
one_error "prepare --out onto a run's checkpoint refused (with --force too)" 'file of the training run'
cmp -s "$tmp/run/checkpoint.h5" "$tmp/ck.bak" && ok "the checkpoint is intact" || bad "the checkpoint was modified"
cp "$shared/lung_small.mat" "$tmp/in.mat"
"$BIN" prepare mat --in "$tmp/in.mat" --out "$tmp/in.mat" --force >/dev/null 2>"$tmp/err"; rc=$?
one_error "prepare --out equal to --in refused" 'also an input'
cmp -s "$tmp/in.mat" "$shared/lung_small.mat" && ok "the MAT input is intact" || bad "the MAT input was modified"
echo "keep me" >"$tmp/exists.csv"
"$BIN" predict --model "$tmp/run/checkpoint.h5" --input "$tmp/d.h5" --out "$tmp/exists.csv" >/dev/null 2>"$tmp/err"; rc=$?
one_error "predict onto an existing file refused without --force" 'exists; add --force'
grep -q '^keep me$' "$tmp/exists.csv" && ok "the existing file is intact" || bad "the existing file was overwritten"
"$BIN" prepare mat --in "$shared/lung_small.mat" --out "$tmp/d2.h5" >/dev/null 2>"$tmp/err"; rc=$?
one_error "prepare onto an existing file refused without --force" 'exists; add --force'
if "$BIN" predict --model "$tmp/run/checkpoint.h5" --input "$tmp/d.h5" --out "$tmp/exists.csv" --force >/dev/null 2>&1 &&
   head -n 1 "$tmp/exists.csv" | grep -q '^row,class'; then
    ok "--force replaces an existing output"
else
    bad "--force did not replace the output"
fi
mkdir -p "$tmp/full"
if mount -t tmpfs -o size=64k tmpfs "$tmp/full" 2>/dev/null; then
    "$BIN" train --data "$tmp/d.h5" $SMALL --epochs 1 --out "$tmp/wide" --hidden 2048 >/dev/null 2>&1
    echo "old predictions" >"$tmp/full/p.csv"
    cat /dev/zero >"$tmp/full/filler" 2>/dev/null
    "$BIN" features --model "$tmp/wide/checkpoint.h5" --out "$tmp/full/p.csv" --force >/dev/null 2>"$tmp/err"; rc=$?
    one_error "features on a full disk fails" 'No space left|cannot write'
    if grep -q '^old predictions$' "$tmp/full/p.csv" && [ "$(ls "$tmp/full" | wc -l)" -eq 2 ]; then
        ok "full disk: the previous output is intact, no temporary file left"
    else
        bad "full disk: previous output lost or temporary left: $(ls "$tmp/full")"
    fi
    umount "$tmp/full"
else
    skp "full-disk output case: cannot mount a tmpfs here"
fi

# --- run folders -------------------------------------------------------------
mkdir -p "$tmp/partial"
cp "$tmp/run/checkpoint.h5" "$tmp/run/run.json" "$tmp/partial/"
"$BIN" train --data "$tmp/d.h5" $SMALL --epochs 1 --out "$tmp/partial" >/dev/null 2>"$tmp/err"; rc=$?
one_error "a folder with checkpoint.h5 and run.json but no metrics.csv holds a run" 'already holds a run'
cmp -s "$tmp/partial/checkpoint.h5" "$tmp/run/checkpoint.h5" && ok "its checkpoint is intact" || bad "its checkpoint was replaced"

# A long run holds its folder: a second train into it and a second resume
# of it are refused, naming the holder's pid.
LONG="--data $tmp/d.h5 --hidden 256,256 --batch 1 --lr 0.001 --threads 1 --quiet --epochs 400"
"$BIN" train $LONG --out "$tmp/live" >"$tmp/live.log" 2>&1 &
live=$!; bgpids="$bgpids $live"
n=0; while [ "$n" -lt 600 ] && [ ! -s "$tmp/live/run.json" ]; do sleep 0.05; n=$((n + 1)); done
"$BIN" train $LONG --out "$tmp/live" >/dev/null 2>"$tmp/err"; rc=$?
one_error "a second train into a live run's folder is refused naming the holder" "in use now by another settrain process \\(pid $live host "
"$BIN" train $LONG --epochs 2 --out "$tmp/rsm" >/dev/null 2>&1
"$BIN" train --resume "$tmp/rsm" --quiet >/dev/null 2>&1   # finished: nothing left to do, exits 0
kill -TERM "$live" 2>/dev/null; wait "$live"; rc=$?
[ "$rc" -eq 3 ] && ok "the live run stopped on SIGTERM with a checkpoint (exit 3)" || bad "live run: exit $rc"
"$BIN" train --resume "$tmp/live" --quiet >"$tmp/r1.log" 2>&1 &
r1=$!; bgpids="$bgpids $r1"
n=0; while [ "$n" -lt 600 ] && ! grep -q "pid $r1 " "$tmp/live/run.lock" 2>/dev/null; do sleep 0.05; n=$((n + 1)); done
sleep 0.2
"$BIN" train --resume "$tmp/live" --quiet >/dev/null 2>"$tmp/err"; rc=$?
one_error "a second --resume of a folder in use is refused naming the holder" "in use by another settrain process \\(pid $r1 host "
kill -TERM "$r1" 2>/dev/null; wait "$r1"; rc=$?
[ "$rc" -eq 3 ] && ok "the first resume was not disturbed (stopped by SIGTERM, exit 3)" || bad "first resume: exit $rc: $(tail -2 "$tmp/r1.log")"

# A checkpoint copied from another run is refused; the folder's metrics stay.
"$BIN" train --data "$tmp/d.h5" $SMALL --epochs 3 --out "$tmp/other" >/dev/null 2>&1
cp "$tmp/live/metrics.csv" "$tmp/live.metrics"
cp "$tmp/other/checkpoint.h5" "$tmp/live/checkpoint.h5"
"$BIN" train --resume "$tmp/live" --quiet >/dev/null 2>"$tmp/err"; rc=$?
one_error "a checkpoint copied from another run is refused" 'belongs to run'
cmp -s "$tmp/live/metrics.csv" "$tmp/live.metrics" && ok "the folder's metrics.csv is intact" || bad "metrics.csv was truncated"

# Changed data, relative --data.
"$BIN" train --data "$tmp/d.h5" $SMALL --epochs 4 --out "$tmp/dc" >/dev/null 2>&1 &
p=$!; bgpids="$bgpids $p"
n=0; while [ "$n" -lt 600 ] && [ "$(cat "$tmp/dc/metrics.csv" 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.02; n=$((n + 1)); done
kill -TERM "$p" 2>/dev/null; wait "$p"
cp "$tmp/d.h5" "$tmp/d.orig"
"$BIN" prepare mat --in "$shared/lung_small.mat" --seed 3 --out "$tmp/d.h5" --force >/dev/null 2>&1
"$BIN" train --resume "$tmp/dc" --quiet >/dev/null 2>"$tmp/err"; rc=$?
one_error "resume on changed data is refused" 'data differs from what the run started on'
"$BIN" train --resume "$tmp/dc" --quiet --allow-data-change >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 0 ] && ok "--allow-data-change resumes anyway" || bad "--allow-data-change: exit $rc: $(cat "$tmp/err")"
cp "$tmp/d.orig" "$tmp/d.h5"
mkdir -p "$tmp/cwd1/sub" "$tmp/cwd2"
cp "$tmp/d.h5" "$tmp/cwd1/sub/rel.h5"
abs_bin=$(cd "$(dirname "$BIN")" && pwd)/settrain
(cd "$tmp/cwd1" && "$abs_bin" train --data sub/rel.h5 $SMALL --epochs 3 --out "$tmp/rel" >/dev/null 2>&1 &
 p=$!; n=0; while [ "$n" -lt 600 ] && [ "$(cat "$tmp/rel/metrics.csv" 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.02; n=$((n + 1)); done
 kill -TERM "$p" 2>/dev/null; wait "$p")
(cd "$tmp/cwd2" && "$abs_bin" train --resume "$tmp/rel" --quiet >/dev/null 2>"$tmp/err"); rc=$?
[ "$rc" -eq 0 ] && ok "a run started with a relative --data resumes from another directory" ||
    bad "relative --data resume: exit $rc: $(cat "$tmp/err")"

# --- runs ------------------------------------------------------------------------
"$BIN" train --data "$tmp/d.h5" $SMALL --epochs 5 --lr 1e6 --out "$tmp/nan" >/dev/null 2>"$tmp/err"; rc=$?
one_error "a diverged run (--lr 1e6) stops with an error" 'diverged'
grep -q '"status": "diverged"' "$tmp/nan/run.json" 2>/dev/null && ok "run.json says diverged" || bad "run.json: $(grep status "$tmp/nan/run.json" 2>/dev/null)"
[ ! -e "$tmp/nan/checkpoint.h5" ] && ok "no non-finite checkpoint was written" || bad "a checkpoint of the diverged model exists"
"$BIN" train --data "$tmp/d.h5" $SMALL --epochs 1 --epsilon 1e-9 --out "$tmp/eps" >/dev/null 2>"$tmp/err"; rc=$?
one_error "a layer without connections is refused" 'no connection'
( ulimit -v 8000000 2>/dev/null; "$BIN" train --data "$tmp/d.h5" --hidden 1000000 --batch 4096 --epochs 1 --quiet --out "$tmp/mem" >/dev/null 2>"$tmp/err" ); rc=$?
one_error "784-1000000-10 at batch 4096 is refused before allocating" 'needs about .* of memory .* biggest part is activations .*--batch'
( ulimit -v 8000000 2>/dev/null; "$BIN" train --data "$tmp/d.h5" --hidden 100000000 --epochs 1 --quiet --out "$tmp/mem2" >/dev/null 2>"$tmp/err" ); rc=$?
one_error "--hidden 100000000 is refused before allocating" 'needs about .* of memory'
( ulimit -v 8000000 2>/dev/null; SETTRAIN_MEMORY_LIMIT=100G "$BIN" train --data "$tmp/d.h5" --hidden 2000000,2000000 --batch 8 --epochs 2 --quiet --out "$tmp/evo" >/dev/null 2>"$tmp/err" ); rc=$?
one_error "a layer too large for evolution's position keys (2M -> 2M) is refused before training" 'layer 2 .2000000 -> 2000000. is too large to evolve: .* candidate draws'
[ ! -e "$tmp/mem" ] && [ ! -e "$tmp/mem2" ] && [ ! -e "$tmp/evo" ] && ok "the refused runs created no folder" || bad "a refused run left a folder"
# The estimate printed before allocating against what the run really used (run.json's
# peak_rss_bytes), on a network big enough that the model and its buffers dominate.
"$BIN" train --data "$tmp/d.h5" --hidden 50000,50000 --batch 64 --epochs 2 --threads 1 --quiet --out "$tmp/rss" >/dev/null 2>"$tmp/err" || bad "the 2 x 50000 run: $(cat "$tmp/err")"
rss=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("%.3f %d %d" % (d["peak_rss_bytes"] / d["memory_estimate_bytes"]["total"], d["peak_rss_bytes"], d["memory_estimate_bytes"]["total"]))' "$tmp/rss/run.json" 2>&1)
case $rss in
    0.9[0-9]*|1.0[0-9]*) ok "2 x 50000: peak resident memory within 10% of the estimate (peak/estimate, peak, estimate: $rss)" ;;
    *) bad "2 x 50000: peak resident memory against the estimate (peak/estimate, peak, estimate): $rss" ;;
esac

# A stop signal while a large network is being set up: exit 3 at once, nothing written.
"$BIN" train --data "$tmp/d.h5" --hidden 200000,200000 --batch 8 --threads 1 --epochs 1 --quiet --out "$tmp/setup" >/dev/null 2>"$tmp/err" &
p=$!; bgpids="$bgpids $p"
sleep 1
if [ ! -e "$tmp/setup" ]; then
    kill -TERM "$p" 2>/dev/null; wait "$p"; rc=$?
    [ "$rc" -eq 3 ] && [ ! -e "$tmp/setup" ] && ok "SIGTERM during set-up: exit 3, nothing written" ||
        bad "SIGTERM during set-up: exit $rc, folder: $(ls "$tmp/setup" 2>&1 | tr '\n' ' ')"
else
    kill -9 "$p" 2>/dev/null; wait "$p"
    skp "set-up finished within 1 s here: the set-up signal case is inconclusive"
fi
"$BIN" train --data "$tmp/d.h5" --hidden 256,256 --batch 1 --lr 0.001 --threads 1 --quiet --epochs 100 --out "$tmp/hup" >/dev/null 2>&1 &
p=$!; bgpids="$bgpids $p"
n=0; while [ "$n" -lt 600 ] && [ "$(cat "$tmp/hup/metrics.csv" 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.02; n=$((n + 1)); done
kill -HUP "$p" 2>/dev/null; wait "$p"; rc=$?
[ "$rc" -eq 3 ] && [ -f "$tmp/hup/checkpoint.h5" ] && grep -q '"status": "interrupted"' "$tmp/hup/run.json" &&
    ok "SIGHUP checkpoints and exits 3 like SIGTERM" || bad "SIGHUP: exit $rc"

mkdir -p "$tmp/full"
if mount -t tmpfs -o size=300k tmpfs "$tmp/full" 2>/dev/null; then
    "$BIN" train --data "$tmp/d.h5" --hidden 4096 --batch 8 --threads 1 --epochs 2 --quiet --out "$tmp/full/run" >/dev/null 2>"$tmp/err"; rc=$?
    one_error "a first checkpoint that does not fit says nothing was written" 'nothing was written'
    grep -q '"status": "failed"' "$tmp/full/run/run.json" && grep -q '"error": ".*nothing was written' "$tmp/full/run/run.json" &&
        ok "run.json says failed, with the message" || bad "run.json after the failure: $(grep -E '"(status|error)"' "$tmp/full/run/run.json" | tr '\n' ' ')"
    umount "$tmp/full"
else
    skp "first-checkpoint case: cannot mount a tmpfs here"
fi

: >"$tmp/empty.h5"
"$BIN" eval --model "$tmp/empty.h5" --data "$tmp/d.h5" >/dev/null 2>"$tmp/err"; rc=$?
one_error "an empty checkpoint is called empty" 'is empty'

# --- full standard output ------------------------------------------------------
if [ -w /dev/full ]; then
    "$BIN" eval --model "$tmp/run/checkpoint.h5" --data "$tmp/d.h5" >/dev/full 2>"$tmp/err"; rc=$?
    one_error "eval > /dev/full fails" 'standard output'
    "$BIN" features --model "$tmp/run/checkpoint.h5" >/dev/full 2>"$tmp/err"; rc=$?
    one_error "features > /dev/full fails" 'standard output'
    "$BIN" score --base 10:0.9 5:0.8 >/dev/full 2>"$tmp/err"; rc=$?
    one_error "score > /dev/full fails" 'standard output'
else
    skp "/dev/full absent"
fi

echo "test_hostile: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
