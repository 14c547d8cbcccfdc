#!/bin/sh
# test_fuzz_build.sh: `make fuzz` must build as shipped. Builds every fuzz
# target and the seed generator (make fuzz-build) with clang into a folder
# of its own (${BUILD:-build}/fuzzcheck: the main build's objects and
# configuration stamp are not touched), writes the seeds and runs each
# target once over its seeds (-runs=0: the seeds only, no fuzzing), which
# must end without a finding. Skipped, visibly, where clang or its libFuzzer
# runtime (libclang-rt-14-dev) is missing; scripts/install_deps.sh installs
# both. Prints "test_fuzz_build: N passed, N failed, N skipped".
set -u
BUILD=${BUILD:-build}
pass=0; fail=0; skip=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() { fail=$((fail + 1)); echo "  FAIL $1"; }
summary() { echo "test_fuzz_build: $pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_fuzz_build.XXXXXX") || { echo "test_fuzz_build: 0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

FUZZ_CC=${FUZZ_CC:-clang}
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$tmp/probe.c"
if ! command -v "$FUZZ_CC" >/dev/null 2>&1 ||
    ! "$FUZZ_CC" -fsanitize=fuzzer,address -o "$tmp/probe" "$tmp/probe.c" >/dev/null 2>&1; then
    skip=1
    echo "  SKIP $FUZZ_CC with -fsanitize=fuzzer is not available (apt-get install clang libclang-rt-14-dev)"
    summary
fi

sub="$BUILD/fuzzcheck"
fb="$sub/fuzz"
if nice make -s BUILD="$sub" NVCC= FUZZ_BUILD="$fb" fuzz-build >"$tmp/make.log" 2>&1; then
    ok "make fuzz-build"
else
    bad "make fuzz-build failed; the end of its output:"
    tail -n 15 "$tmp/make.log"
    summary
fi

targets="h5 idx_gz idx_images idx_labels mat checkpoint"
if "$fb/make_seeds" "$tmp/seeds" >"$tmp/seeds.log" 2>&1; then
    ok "make_seeds wrote $(find "$tmp/seeds" -type f | wc -l) seeds"
else
    bad "make_seeds failed:"
    tail -n 5 "$tmp/seeds.log"
fi
LSAN_OPTIONS="suppressions=$(pwd)/tests/fuzz/lsan.supp"
export LSAN_OPTIONS
for t in $targets; do
    if [ ! -x "$fb/fuzz_$t" ]; then
        bad "fuzz_$t was not built"
        continue
    fi
    mkdir -p "$tmp/seeds/$t"
    if timeout 120 "$fb/fuzz_$t" -runs=0 -timeout=20 "$tmp/seeds/$t" >"$tmp/$t.log" 2>&1 &&
        grep -q 'INITED' "$tmp/$t.log"; then
        ok "fuzz_$t runs its $(find "$tmp/seeds/$t" -type f | wc -l) seeds"
    else
        bad "fuzz_$t on its seeds:"
        tail -n 10 "$tmp/$t.log"
    fi
done
summary
