#!/bin/sh
# test_cli.sh: the settrain command line end to end: --help and --version
# tell the truth (every train option appears in the help with its default);
# every bad input to `train` gives exactly one line "settrain: error: ..."
# naming the problem and a non-zero exit, and never a crash: missing file,
# non-HDF5 file, truncated HDF5 file, directory, motif size that does not
# divide a layer, hidden sizes that do not parse, out-of-range values,
# unknown options, --train-limit beyond the data, an existing run folder
# (which must be left untouched), and --backend gpu in a build without CUDA.
# Prints "test_cli: N passed, N failed" and exits non-zero on failure.
set -u
BIN=${BUILD:-build}/settrain
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() { fail=$((fail + 1)); echo "  FAIL $1"; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_cli.XXXXXX") || { echo "test_cli: 0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

# expect_error NAME PATTERN ARGS...: non-zero exit below 128 (no signal), one
# stderr line starting "settrain: error:" and matching PATTERN.
expect_error() {
    name=$1; pat=$2; shift 2
    "$BIN" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && [ "$lines" -eq 1 ] &&
       grep -q '^settrain: error: ' "$tmp/err" && grep -Eq "$pat" "$tmp/err"; then
        ok "$name (exit $rc): $(cat "$tmp/err")"
    else
        bad "$name: exit $rc, $lines stderr lines:"; cat "$tmp/err"
    fi
}

# The data-dependent cases need a valid data file: made with `prepare mat`
# from the shared lung_small.mat when present, else those cases are skipped.
shared=${ST_SHARED_DATA:-../shared/data}
good="$tmp/good.h5"
have_data=0
if [ -f "$shared/lung_small.mat" ] && "$BIN" prepare mat --in "$shared/lung_small.mat" --out "$good" >/dev/null 2>&1; then
    have_data=1
fi

"$BIN" --help >"$tmp/out" 2>&1 && grep -q 'train' "$tmp/out" && ok "--help" || bad "--help"
"$BIN" --version >"$tmp/out" 2>&1 && grep -q 'backends:' "$tmp/out" && ok "--version names backends" || bad "--version"
"$BIN" train --help >"$tmp/out" 2>&1 || bad "train --help exit"
missing=""
for o in data hidden motif epsilon zeta epochs batch lr momentum weight-decay dropout activation seed train-limit backend threads out; do
    grep -q -- "--$o" "$tmp/out" || missing="$missing $o"
done
for d in '\[3000,3000,3000\]' '\[300\]' '\[128\]' '\[0.01\]' '\[0.9\]' '\[2e-4\]' '\[0.3\]' '\[20\]' '\[relu\]' '\[auto\]'; do
    grep -q -- "$d" "$tmp/out" || missing="$missing default$d"
done
[ -z "$missing" ] && ok "train --help lists every option and default" || bad "train --help lacks:$missing"

expect_error "no command" 'unknown command' frobnicate
expect_error "missing --data" 'required' train
expect_error "missing file" 'nosuch.h5' train --data "$tmp/nosuch.h5"
echo "not hdf5" >"$tmp/text.h5"
expect_error "non-HDF5 file" 'text.h5' train --data "$tmp/text.h5"
expect_error "directory as data" "$tmp" train --data "$tmp"
expect_error "bad hidden" 'hidden' train --data "$tmp/x.h5" --hidden 100,,100
expect_error "hidden not a number" 'hidden' train --data "$tmp/x.h5" --hidden 1e3
expect_error "motif 0" 'motif' train --data "$tmp/x.h5" --motif 0
expect_error "zeta 1" 'zeta' train --data "$tmp/x.h5" --zeta 1
expect_error "dropout 1" 'dropout' train --data "$tmp/x.h5" --dropout 1
expect_error "batch 0" 'batch' train --data "$tmp/x.h5" --batch 0
expect_error "unknown activation" 'activation' train --data "$tmp/x.h5" --activation softplus
expect_error "unknown option" 'unknown option' train --data "$tmp/x.h5" --frob
expect_error "option without value" 'needs a value' train --data
expect_error "stray argument" 'unexpected argument' train --data "$tmp/x.h5" extra

if [ "$have_data" -eq 1 ]; then
    # lung_small has 325 features: motif 2 does not divide them.
    expect_error "motif does not divide the input" 'motif size 2 does not divide .*325' train --data "$good" --motif 2 --hidden 64 --out "$tmp/r1"
    expect_error "motif does not divide a hidden layer" 'motif size 5 does not divide hidden layer size 64' train --data "$good" --motif 5 --hidden 65,64 --out "$tmp/r2"
    expect_error "train-limit beyond data" 'train-limit' train --data "$good" --train-limit 100000 --out "$tmp/r3"
    head -c 3000 "$good" >"$tmp/trunc.h5"
    expect_error "truncated HDF5" 'trunc.h5' train --data "$tmp/trunc.h5" --out "$tmp/r4"
    if "$BIN" train --data "$good" --hidden 32 --epochs 2 --backend cpu --quiet --out "$tmp/run" >/dev/null 2>&1; then
        cp "$tmp/run/metrics.csv" "$tmp/before.csv"
        expect_error "existing run folder" 'already holds a run' train --data "$good" --hidden 32 --epochs 2 --quiet --out "$tmp/run"
        cmp -s "$tmp/run/metrics.csv" "$tmp/before.csv" && ok "existing run left untouched" || bad "existing run was modified"
    else
        bad "a valid small run failed"
    fi
    if "$BIN" --version | grep -q 'built without CUDA'; then
        expect_error "--backend gpu without CUDA" 'without CUDA' train --data "$good" --hidden 32 --epochs 1 --backend gpu --out "$tmp/r5"
    fi
else
    echo "  SKIP data-dependent cases: $shared/lung_small.mat absent"
fi
echo "test_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
