#!/bin/sh
# test_hostile_inputs.sh: inputs that are not regular files, given to the
# built settrain (${BUILD:-build}/settrain) as a careless or hostile user
# would: a FIFO (opening one for reading waits for a writer forever), a
# character device and a directory as --data, prepare mat --in, --model of
# eval, predict and features, an IDX file of prepare fmnist, the checkpoint
# of train --resume and the run.json of a run folder given to score. Each
# command must end at once (a 20 s limit stands in for "forever") with exit
# code 1 and one line "settrain: error: PATH: is a FIFO (named pipe), ..."
# naming the file. Also train --resume of a real run whose metrics.csv or
# run.json is a FIFO (needs the shared lung_small.mat; skipped without it).
# Prints "test_hostile_inputs: N passed, N failed" and exits non-zero on failure.
set -u
BIN=${BUILD:-build}/settrain
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() { fail=$((fail + 1)); echo "  FAIL $1"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_hostile_inputs.XXXXXX") || {
    echo "test_hostile_inputs: 0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$BIN" ]; then
    echo "  FAIL $BIN not built"
    echo "test_hostile_inputs: 0 passed, 1 failed"
    exit 1
fi

# expect NAME WHAT_IN_STDERR COMMAND...: exit 1 within 20 s, one error line
# holding WHAT.
expect() {
    name=$1; what=$2; shift 2
    timeout 20 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; rc=$?
    lines=$(grep -c '^settrain: error: ' "$tmp/err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -qF -- "$what" "$tmp/err"; then
        ok "$name"
    elif [ "$rc" -eq 124 ]; then
        bad "$name: still blocked after 20 s (killed by timeout)"
    else
        bad "$name: exit $rc, stderr: $(head -c 400 "$tmp/err")"
    fi
}

fifo="$tmp/input.fifo"
mkfifo "$fifo"
FIFO_MSG="$fifo: is a FIFO (named pipe), not a regular file"

expect "train --data FIFO" "$FIFO_MSG" \
    "$BIN" train --data "$fifo" --epochs 1 --hidden 4 --out "$tmp/run1" --quiet
expect "train --data /dev/null" "/dev/null: is a character device, not a regular file" \
    "$BIN" train --data /dev/null --epochs 1 --hidden 4 --out "$tmp/run2" --quiet
expect "train --data DIR" "$tmp: is a directory, not a file" \
    "$BIN" train --data "$tmp" --epochs 1 --hidden 4 --out "$tmp/run3" --quiet
expect "prepare mat --in FIFO" "$FIFO_MSG" \
    "$BIN" prepare mat --in "$fifo" --out "$tmp/out.h5"
expect "eval --model FIFO" "$FIFO_MSG" "$BIN" eval --model "$fifo" --data "$fifo"
expect "predict --model FIFO" "$FIFO_MSG" \
    "$BIN" predict --model "$fifo" --input "$fifo" --out "$tmp/pred.csv"
expect "features --model FIFO" "$FIFO_MSG" "$BIN" features --model "$fifo"

# prepare fmnist: the first of the four IDX files is a FIFO.
mkdir "$tmp/fm"
mkfifo "$tmp/fm/train-images-idx3-ubyte.gz"
for f in train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    : >"$tmp/fm/$f"
done
expect "prepare fmnist with a FIFO IDX file" \
    "$tmp/fm/train-images-idx3-ubyte.gz: is a FIFO (named pipe)" \
    "$BIN" prepare fmnist --src "$tmp/fm" --out "$tmp/fm.h5"

# train --resume: the run folder's checkpoint is a FIFO.
mkdir "$tmp/resume"
mkfifo "$tmp/resume/checkpoint.h5"
expect "train --resume with a FIFO checkpoint" "is a FIFO (named pipe)" \
    "$BIN" train --resume "$tmp/resume" --quiet

# score: a run folder whose run.json is a FIFO.
mkdir "$tmp/scorerun"
mkfifo "$tmp/scorerun/run.json"
expect "score RUN_DIR with a FIFO run.json" "$tmp/scorerun/run.json: is a FIFO (named pipe)" \
    "$BIN" score --base 100:0.9 "$tmp/scorerun"

# train --resume of a real run whose metrics.csv, then run.json, is a FIFO
# (a 1-epoch run on lung_small from the shared data; skipped visibly when
# the data is absent).
shared=${ST_SHARED_DATA:-../shared/data}
if [ -f "$shared/lung_small.mat" ] &&
    "$BIN" prepare mat --in "$shared/lung_small.mat" --out "$tmp/lung.h5" >/dev/null 2>&1 &&
    timeout 120 "$BIN" train --data "$tmp/lung.h5" --hidden 8 --epochs 1 --threads 1 \
        --out "$tmp/run" --quiet >/dev/null 2>&1; then
    for f in metrics.csv run.json; do
        mv "$tmp/run/$f" "$tmp/$f.saved"
        mkfifo "$tmp/run/$f"
        expect "train --resume with a FIFO $f" "$tmp/run/$f: is a FIFO (named pipe)" \
            "$BIN" train --resume "$tmp/run" --threads 1 --quiet
        rm -f "$tmp/run/$f"
        mv "$tmp/$f.saved" "$tmp/run/$f"
    done
else
    echo "  SKIP train --resume with FIFO run files: no $shared/lung_small.mat (set ST_SHARED_DATA)"
    skipped=1
fi

echo "test_hostile_inputs: $pass passed, $fail failed${skipped:+, $skipped skipped}"
[ "$fail" -eq 0 ]
