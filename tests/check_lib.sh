# check_lib.sh: the result helpers shared by the shell tests of the cluster
# scripts (test_slurm.sh, test_slurm_real.sh, test_mpi.sh), sourced after
# SUITE is set. Counts in pass, fail, skip; summary prints the line that
# tests/run_all.sh adds up and returns non-zero when anything failed.
pass=0
fail=0
skip=0
# ok NAME
ok() {
    pass=$((pass + 1))
    echo "[  OK  ] $1"
}
# bad NAME [DETAIL LINE...]
bad() {
    fail=$((fail + 1))
    echo "[ FAIL ] $1"
    shift
    for line in "$@"; do echo "    $line"; done
}
# skipped NAME: a visible skip
skipped() {
    skip=$((skip + 1))
    echo "[ SKIP ] $1"
}
# expect NAME EXPECTED ACTUAL: exact comparison.
expect() {
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "expected: $2" "got:      $3"; fi
}
summary() {
    echo "$SUITE: $pass passed, $fail failed, $skip skipped"
    [ "$fail" -eq 0 ]
}
