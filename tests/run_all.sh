#!/bin/sh
# run_all.sh: runs each test binary given as an argument, then each
# tests/test_*.sh script, adds up their "N passed, N failed, N skipped"
# lines and prints the total. Exits non-zero when anything failed or a
# test binary crashed.
set -u
pass=0; fail=0; skip=0; crashed=0
for t in "$@" tests/test_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.sh) cmd="sh $t" ;; *) cmd="$t" ;; esac
    echo "=== $t"
    out=$($cmd 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        echo "!!! $t printed no summary (exit $rc)"; crashed=$((crashed + 1)); continue
    fi
    p=$(echo "$line" | grep -oE '[0-9]+ passed' | cut -d' ' -f1)
    f=$(echo "$line" | grep -oE '[0-9]+ failed' | cut -d' ' -f1)
    s=$(echo "$line" | grep -oE '[0-9]+ skipped' | cut -d' ' -f1)
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "!!! $t exited $rc"; crashed=$((crashed + 1))
    fi
done
fail=$((fail + crashed))
echo "total: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
