#!/bin/sh
# run_fuzz.sh: runs each fuzz target built by `make fuzz` for a bounded time,
# one after another (one fuzzing process at a time), prints the executions,
# coverage, corpus size and findings of each, and triages every new crash,
# leak, timeout or out-of-memory input by running it again: when the first
# stack frame past the sanitizer, libFuzzer and libc is the project's code
# the input goes to tests/fuzz_regressions/<target>/ (which `make test`
# replays) and the run exits 1 (a timeout whose stacks, taken after 3, 7 and
# 10 s, stop at different places of the project's code is the project's
# loop, even when each stack ends inside the library it keeps calling);
# when it is inside a system library (libhdf5,
# matio, zlib) it goes to tests/fuzz_regressions/library/<target>/ (a hang:
# library-hangs/<target>/, kept but not replayed) and is reported without
# failing the run (the library has to be fixed or upgraded), once per library
# bug: library/SIGNATURES lists the bugs kept (module, function, kind).
#
# Usage: sh tests/fuzz/run_fuzz.sh FUZZ_BUILD SECONDS TARGET...
#   (normally through `make fuzz [FUZZ_SECONDS=60] [FUZZ_ARGS=...]`)
# Layout under FUZZ_BUILD: fuzz_<target> (binaries), seeds/<target>/ (from
# make_seeds), corpus/<target>/ (what the fuzzer kept; grows across runs),
# artifacts/<target>/ (findings), logs/<target>.log (the full output).
# libFuzzer runs in fork mode with one job (-fork=1), so that a finding does
# not end the target's run; FUZZ_ARGS (environment) adds libFuzzer options.
set -eu

if [ $# -lt 3 ]; then
    echo "usage: $0 FUZZ_BUILD SECONDS TARGET..." >&2
    exit 2
fi
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
regress="$here/../fuzz_regressions"
# Library bugs already kept, one line each: TARGET<tab>SIGNATURE<tab>FILE.
sigs="$regress/library/SIGNATURES"

# Leaks inside libhdf5 on its own error paths are the library's (see the
# file); every allocation of the project's code is still checked.
LSAN_OPTIONS="suppressions=$here/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS

# app_frames REPORT: the stack frames of a sanitizer or libFuzzer report,
# innermost first, without the sanitizer's, libFuzzer's and libc's own (a
# frame in the fuzz binary without a source line is a sanitizer interceptor
# such as strdup: the project's code is always built with -g).
app_frames() {
    grep -E '^ *#[0-9]+ 0x' "$1" |
        grep -v -E '__interceptor_|__asan|__sanitizer|__lsan|__ubsan|asan::|fuzzer::| in (malloc|calloc|realloc|free|abort|raise|exit) | in __(mem|str|GI_)|sysdeps/|libc\.so|ld-linux| [a-z_-]+/\.\.?/|\(/[^)]*/fuzz_[a-z0-9_]+\+0x' || true
}

# project_frame REPORT: "function file:line" of the innermost frame in the
# project's code (not a system library), or nothing.
project_frame() {
    app_frames "$1" | grep -E ' in [^ ]+ (/[^ ]*/)?(src|tests)/[^ ]+\.[ch]:[0-9]' | head -n 1 |
        sed -n 's/.* in \([^ ]*\) \([^ ]*\).*/\1 \2/p'
}

# triage BIN INPUT REPORT: runs the input again, keeps the report and prints
# "library <module> <headline>", "project <frame> <headline>" or
# "unreproduced: ..." for an input that does not fail when run alone.
triage() {
    "$1" -runs=1 -timeout=10 "$2" >"$3" 2>&1 || true
    # An out-of-memory on resident memory has no allocation stack (and one
    # run alone may stay under the limit): run it again with a low malloc
    # limit to catch the large allocation behind it.
    if case "$2" in */oom-*) true ;; *) false ;; esac && ! grep -q 'out-of-memory (malloc' "$3"; then
        "$1" -runs=1 -timeout=10 -malloc_limit_mb=256 "$2" >"$3" 2>&1 || true
    fi
    # Inputs that crashed only after others (libhdf5's heap corruption can
    # strike later) may not fail alone: three more tries.
    tries=0
    while ! grep -q -E 'ERROR: |runtime error|contract broken' "$3" && [ "$tries" -lt 3 ]; do
        "$1" -runs=1 -timeout=10 "$2" >"$3" 2>&1 || true
        tries=$((tries + 1))
    done
    if ! grep -q -E 'ERROR: |runtime error|contract broken' "$3"; then
        echo "unreproduced: no failure when run alone"
        return 0
    fi
    headline=$(grep -m 1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|contract broken' "$3" |
        sed -e 's/^==[0-9]*==[ ]*//' -e 's/ on address.*//' -e 's/ (pc .*//' | cut -c 1-120)
    frames=$(app_frames "$3")
    frame=$(printf '%s\n' "$frames" | head -n 1)
    # A timeout stops wherever the process happens to be: inside libhdf5
    # also when settrain's own code loops and calls the library again and
    # again. Two more stacks, taken after other times, tell them apart: a
    # loop in the project is caught at different places of its code; a
    # library that never returns, at the same call.
    if case "$2" in */timeout-*) true ;; *) false ;; esac; then
        first=$(project_frame "$3")
        for secs in 3 7; do
            "$1" -runs=1 -timeout=$secs "$2" >"$3.$secs" 2>&1 || true
            again=$(project_frame "$3.$secs")
            if [ -n "$first" ] && [ -n "$again" ] && [ "$again" != "$first" ]; then
                where=$(printf '%s\n' "$first" | sed -n 's/^\([^ ]*\) \([^ ]*\).*/\1 \2/p')
                echo "project ${where:-unknown} loop: the project's code is caught at $first, then at $again (it keeps calling the library) ${headline:-timeout}"
                rm -f "$3.3" "$3.7"
                return 0
            fi
        done
        rm -f "$3.3" "$3.7"
    fi
    case "$frame" in
    *'(/lib/'* | *'(/usr/lib/'*)
        module=$(printf '%s\n' "$frame" | sed -n 's|.*(/[^)]*/\([^/+)]*\).*|\1|p')
        # The first frame of that library with a symbol name.
        func=$(printf '%s\n' "$frames" | grep -F "$module" |
            sed -n 's/.* in \([^ ]*\) (.*/\1/p' | head -n 1)
        echo "library $module (${func:-?}) ${headline:-unknown}" ;;
    *)
        where=$(printf '%s\n' "$frame" | sed -n 's/.* in \([^ ]*\) \([^ ]*\).*/\1 \2/p')
        echo "project ${where:-unknown} ${headline:-unknown}" ;;
    esac
}

# Triage reads function names and source lines from the reports.
if ! command -v llvm-symbolizer >/dev/null 2>&1 && [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
    echo "run_fuzz: llvm-symbolizer not found (apt-get install llvm-14): findings could not be" \
        "told apart (project or library)" >&2
    exit 1
fi

total_execs=0
total_found=0
total_library=0
summary=""
for t in "$@"; do
    bin="$build/fuzz_$t"
    if [ ! -x "$bin" ]; then
        echo "run_fuzz: $bin is missing: build it with make fuzz" >&2
        exit 1
    fi
    mkdir -p "$build/corpus/$t" "$build/artifacts/$t" "$build/logs" "$build/seeds/$t"
    log="$build/logs/$t.log"
    echo "=== fuzz $t: $seconds s (log: $log)"
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
    "$bin" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$build/artifacts/$t/" ${FUZZ_ARGS:-} \
        "$build/corpus/$t" "$build/seeds/$t" >"$log" 2>&1 || rc=$?
    # Fork mode exits non-zero after ignored findings too; a run that never
    # got going printed no status line.
    if ! grep -q -E '^#[0-9]+: cov:' "$log"; then
        echo "run_fuzz: $bin failed (exit ${rc:-0}) before fuzzing; the end of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    elapsed=$(($(date +%s) - start))
    # Fork mode's status lines: "#EXECS: cov: C ft: F corp: N exec/s E
    # oom/timeout/crash: O/T/K time: Ss job: J dft_time: D".
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
    execs=$(printf '%s\n' "$last" | sed -n 's/^#\([0-9]*\):.*/\1/p')
    cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\) .*/\1/p')
    corp=$(find "$build/corpus/$t" -type f | wc -l)
    otc=$(printf '%s\n' "$last" | sed -n 's|.*oom/timeout/crash: \([0-9/]*\) .*|\1|p')
    execs=${execs:-0}

    ours=0
    library=0
    known=0
    unrepro=0
    for f in "$build/artifacts/$t"/*; do
        [ -f "$f" ] || continue
        name=$(basename "$f")
        report="$build/logs/$t-$name.txt"
        # Triaged by an earlier run (the report is the mark), or already kept.
        if [ -f "$report" ] || [ -e "$regress/$t/$name" ] ||
            [ -e "$regress/library/$t/$name" ] || [ -e "$regress/library-hangs/$t/$name" ]; then
            continue
        fi
        verdict=$(triage "$bin" "$f" "$report")
        case "$verdict" in
        library*)
            # One input per library bug: its module, function and kind, with
            # addresses and sizes left out.
            sig=$(printf '%s\n' "$verdict" | sed -E -e 's/^library //' -e 's/0x[0-9a-fA-F]*//g' \
                -e 's/(^|[^A-Za-z0-9_])[0-9]+/\1N/g' | cut -c 1-100)
            if awk -F '\t' -v t="$t" -v s="$sig" '$1 == t && $2 == s { found = 1 }
                END { exit !found }' "$sigs" 2>/dev/null; then
                known=$((known + 1))
                continue
            fi
            case "$verdict" in
            *timeout*) dest="$regress/library-hangs/$t" ;;
            *) dest="$regress/library/$t" ;;
            esac
            printf '%s\t%s\t%s\n' "$t" "$sig" "${dest#"$regress/"}/$name" >>"$sigs"
            library=$((library + 1))
            ;;
        unreproduced*)
            unrepro=$((unrepro + 1))
            echo "    not kept: $f: $verdict"
            continue
            ;;
        *) dest="$regress/$t"; ours=$((ours + 1)) ;;
        esac
        mkdir -p "$dest"
        cp "$f" "$dest/$name"
        echo "    new finding: ${dest#"$here/../"}/$name: $verdict"
        echo "      report: $report"
    done
    rate=$((execs / (elapsed > 0 ? elapsed : 1)))
    line="$t: ${elapsed} s, $execs executions ($rate/s), cov $cov, corpus $corp, oom/timeout/crash ${otc:-0/0/0}, new findings: $ours in the project, $library in libraries ($known more of known library bugs, $unrepro not reproducible alone)"
    echo "    $line"
    summary="$summary    $line
"
    total_execs=$((total_execs + execs))
    total_found=$((total_found + ours))
    total_library=$((total_library + library))
done
echo "=== fuzz summary"
printf '%s' "$summary"
echo "fuzz: $# targets, $total_execs executions, $total_found new findings in the project, $total_library in libraries"
if [ "$total_found" -gt 0 ]; then
    echo "fuzz: fix the reader, then make test replays the inputs (tests/test_fuzz_replay.c)" >&2
    exit 1
fi
