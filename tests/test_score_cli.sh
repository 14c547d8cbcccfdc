#!/bin/sh
# test_score_cli.sh: runs the built `settrain score` (${BUILD:-build}/settrain)
# end to end: the paper's FMNIST and Lung times and accuracies must print
# S 0.9000 0.9102 0.8819 and 0.9000 0.9198 0.9089; --csv; a temporary run
# folder with a hand-written run.json; bad input must exit non-zero with one
# line "settrain: error: ..." on stderr; --help exits 0.
# Prints "test_score_cli: N passed, N failed" and exits non-zero on failure.
set -u
BIN=${BUILD:-build}/settrain
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() { fail=$((fail + 1)); echo "  FAIL $1"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_score_cli.XXXXXX") || { echo "test_score_cli: 0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

if [ ! -x "$BIN" ]; then
    echo "  FAIL $BIN not built"
    echo "test_score_cli: 0 passed, 1 failed"
    exit 1
fi

# S column (the last field) of each data row, space-separated
s_col() { awk 'NR > 1 { printf "%s%s", sep, $NF; sep = " " } END { print "" }' "$1"; }

# The paper's FMNIST runs: the table prints the three S values in order.
"$BIN" score --base 25236.2:0.761 14307.5:0.733 9209.3:0.692 >"$tmp/out" 2>"$tmp/err"; rc=$?
got=$(s_col "$tmp/out")
if [ "$rc" -eq 0 ] && [ "$got" = "0.9000 0.9102 0.8819" ] && [ ! -s "$tmp/err" ] &&
   head -n 1 "$tmp/out" | grep -Eq '^run +time_s +accuracy +R_r +A_r +S$'; then
    ok "FMNIST table S = $got"
else
    bad "FMNIST table: rc $rc, S '$got'"; cat "$tmp/out" "$tmp/err"
fi

# The paper's Lung runs.
"$BIN" score --base 4953.2:0.937 3448.7:0.926 3417.3:0.914 >"$tmp/out" 2>"$tmp/err"; rc=$?
got=$(s_col "$tmp/out")
if [ "$rc" -eq 0 ] && [ "$got" = "0.9000 0.9198 0.9089" ]; then
    ok "Lung table S = $got"
else
    bad "Lung table: rc $rc, S '$got'"; cat "$tmp/out" "$tmp/err"
fi

# --csv with custom weights: columns run,time_s,accuracy,R_r,A_r,S.
"$BIN" score --csv --weights 0.5,0.5 --base 100:0.8 60:0.7 >"$tmp/out" 2>"$tmp/err"; rc=$?
printf 'run,time_s,accuracy,R_r,A_r,S\n100:0.8,100,0.8,0.0000,0.0000,0.5000\n60:0.7,60,0.7,0.4000,0.1250,0.6375\n' >"$tmp/want"
if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/want"; then
    ok "--csv --weights 0.5,0.5"
else
    bad "--csv --weights: rc $rc"; cat "$tmp/out" "$tmp/err"
fi

# A run folder with a hand-written run.json as the baseline, mixed with pairs;
# its row is labelled with the folder's base name.
mkdir -p "$tmp/lung_m1"
cat >"$tmp/lung_m1/run.json" <<'EOF'
{
  "status": "finished",
  "config": {"data": "data/lung.h5", "motif": 1},
  "total_wall_s" :  4953.200000,
  "final_test_acc":0.937000,
  "best_epoch": 10
}
EOF
"$BIN" score --base "$tmp/lung_m1/" 3448.7:0.926 3417.3:0.914 >"$tmp/out" 2>"$tmp/err"; rc=$?
got=$(s_col "$tmp/out")
if [ "$rc" -eq 0 ] && [ "$got" = "0.9000 0.9198 0.9089" ] && sed -n 2p "$tmp/out" | grep -q '^lung_m1 '; then
    ok "run folder baseline S = $got"
else
    bad "run folder: rc $rc, S '$got'"; cat "$tmp/out" "$tmp/err"
fi

# Bad input: exit non-zero (1 for runs, 2 for options), exactly one line on
# stderr starting "settrain: error:", nothing on stdout.
mkdir -p "$tmp/no_json" "$tmp/no_acc"
echo '{"total_wall_s": 5.0}' >"$tmp/no_acc/run.json"
check_err() {  # want_rc description args...
    want=$1; what=$2; shift 2
    "$BIN" score "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    n=$(wc -l <"$tmp/err" | tr -d ' ')
    if [ "$rc" -eq "$want" ] && [ "$n" -eq 1 ] && grep -q '^settrain: error: ' "$tmp/err" && [ ! -s "$tmp/out" ]; then
        ok "$what -> exit $rc: $(cat "$tmp/err")"
    else
        bad "$what: rc $rc (want $want), $n stderr lines"; cat "$tmp/out" "$tmp/err"
    fi
}
check_err 1 "no run"
check_err 1 "malformed pair" --base 25236.2:0.761 14307.5
check_err 1 "non-positive time" --base 25236.2:0.761 0:0.733
check_err 1 "accuracy outside [0,1]" --base 25236.2:0.761 14307.5:73.3
check_err 1 "baseline accuracy 0" --base 25236.2:0 14307.5:0.733
check_err 1 "folder without run.json" --base 25236.2:0.761 "$tmp/no_json"
check_err 1 "run.json without final_test_acc" --base 25236.2:0.761 "$tmp/no_acc"
check_err 2 "bad --weights" --weights 0.1 --base 25236.2:0.761
check_err 2 "unknown option" --frob --base 25236.2:0.761

# --help documents the command and exits 0.
"$BIN" score --help >"$tmp/out" 2>"$tmp/err"; rc=$?
if [ "$rc" -eq 0 ] && grep -q 'usage: settrain score' "$tmp/out" && grep -q -- '--weights' "$tmp/out"; then
    ok "--help"
else
    bad "--help: rc $rc"; cat "$tmp/out" "$tmp/err"
fi

echo "test_score_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
