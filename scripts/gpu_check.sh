#!/bin/sh
# gpu_check.sh: the first check on a machine with a GPU. It runs from the GPU
# bundle (make gpu-bundle copies it to gpubundle/run.sh beside bin/, lib/
# and data/; make gpu-check builds the bundle and runs it) and needs no
# make, compiler, -dev package or network there:
#   sh gpubundle/run.sh [OUTDIR]        (OUTDIR: default $OUT, else /tmp/gpu_check)
# Without a CUDA device it exits 1 at once, printing one line that says so.
# Otherwise it runs these steps in order, each under its own time limit
# (seconds; the limits add up to 530, and no step may run past a total of
# T_TOTAL = 540 s, so the whole check fits one device command of 600 s):
#   facts     40  card, driver, CPU, bundle, compute-sanitizer, what the
#                 loader resolves (a library not found fails the step);
#                 prepares Fashion-MNIST (data/fashion-mnist -> fmnist.h5)
#   test_gpu 120  bin/test_gpu: every GPU operator, epoch, evolution,
#                 override and stop/resume against the CPU oracle, with
#                 ST_GPU_SYNC_CHECK=1 (synchronise and check after every
#                 launch), ST_TEST_NO_SKIP=1 (a skipped test fails) and
#                 ST_GPU_NO_FALLBACK=1 (cuSPARSE refusing a configuration
#                 fails instead of falling back to the own kernels)
#   memcheck 120  the same, short (ST_GPU_TEST_SHORT=1), under
#                 compute-sanitizer --tool memcheck
#   racecheck 40  the tests of the kernels that share memory (batch gather
#                 tile, softmax reduction) under --tool racecheck
#   e2e       45  settrain train on the CPU and on the GPU, same seed:
#                 lung_small m = 1 (325-256-256-7, 3 epochs) and Fashion-
#                 MNIST m = 4 (12000 samples, 784-1000-1000-10, 2 epochs);
#                 epoch-1 train_loss must agree within 1e-3 relative + 1e-4
#                 (rounding moves it by ~1e-6, a wrong kernel by percents),
#                 and run.json must report 0 kernel fallbacks
#   resume    75  Fashion-MNIST m = 1, 784-3000-3000-3000-10, 5 epochs on
#                 the GPU: once uninterrupted; once stopped by SIGUSR1 after
#                 its second epoch (exit status 3, run.json "interrupted",
#                 fewer than 5 rows: really stopped mid-run), then --resume;
#                 every row within 1e-4 of the uninterrupted run (loss,
#                 accuracy) and the same connection counts
#   bench     90  bin/bench_gpu --short: seconds per epoch (train, evolve,
#                 eval; epoch 2 of 2) of 784-3000-3000-3000-10 on fmnist.h5
#                 for m = 1, 2, 4, 8 and the dense network, then the kernel
#                 harness (widths 3000, 20000, batch 128, m = 1, 4, each
#                 variant checked against the CPU)
# It writes two files to OUTDIR: gpu_check.tar.gz (every log, metrics.csv,
# run.json, bench_train.csv, bench_kernels.csv, BUILD_INFO) and summary.txt
# (the table), and prints the table last: each step ok / FAIL (exit N) /
# TIMEOUT with its seconds and key numbers (also for a step that timed
# out). Exit status 0 when every step is ok. T_<STEP> (e.g. T_MEMCHECK=200)
# and T_TOTAL change the limits; STEPS (e.g. STEPS="test_gpu e2e") runs only
# the steps it names (a rerun after a fix; the table lists the others as
# not run, and the data is prepared by whichever step needs it first).
set -u
# The binaries were built against this machine's HDF5 headers; the GPU
# machine's libhdf5_serial.so.103 (same ABI) may be another 1.10 release,
# and HDF5 aborts a program at its first call when the release differs
# unless this is set (2: no warning; the facts step prints both versions).
export HDF5_DISABLE_VERSION_CHECK=${HDF5_DISABLE_VERSION_CHECK:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
BIN=$HERE/bin
DATA=$HERE/data

# ---- steps (each runs as `sh run.sh --step NAME` under timeout) -----------

rows() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }

sanitizer() {
    command -v compute-sanitizer 2>/dev/null && return
    for p in /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/compute-sanitizer/compute-sanitizer; do
        [ -x "$p" ] && { echo "$p"; return; }
    done
}

step_facts() {
    rc=0
    echo "== bundle"; cat "$HERE/BUILD_INFO"
    echo "== host"; uname -a; echo "cores: $(nproc)"
    grep -m1 'model name' /proc/cpuinfo
    if grep -qw avx512f /proc/cpuinfo; then echo "cpu: has AVX-512 (not used: built for x86-64-v3)"
    else echo "cpu: no AVX-512"; fi
    grep -qw avx2 /proc/cpuinfo || { echo "FAIL: the CPU lacks AVX2 (x86-64-v3 is needed)"; rc=1; }
    grep -E 'MemTotal|MemAvailable' /proc/meminfo
    echo "== devices"; "$BIN/bench_gpu" --devices || rc=1
    echo "== nvidia-smi"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm,clocks.max.mem --format=csv
        nvidia-smi
    else
        echo "nvidia-smi not found"
    fi
    echo "== compute-sanitizer"; san=$(sanitizer)
    if [ -n "$san" ]; then echo "$san"; "$san" --version | tail -n 2; else echo "compute-sanitizer not found"; fi
    echo "== libraries"
    for b in "$BIN"/*; do echo "-- $b"; ldd "$b"; done
    h5=$(ldd "$BIN/settrain" | awk '$1 ~ /^libhdf5/ { print $3; exit }')
    echo "HDF5: built against $(awk '$1 == "hdf5:" { print $2; exit }' "$HERE/BUILD_INFO"), loaded" \
        "${h5:-?}: $( [ -n "$h5" ] && grep -ao 'HDF5 library version: [0-9.]*' "$h5" | head -n 1 | cut -c23-)" \
        "(HDF5_DISABLE_VERSION_CHECK=$HDF5_DISABLE_VERSION_CHECK)"
    missing=$(for b in "$BIN"/*; do ldd "$b"; done | grep 'not found' | sort -u)
    if [ -n "$missing" ]; then echo "FAIL: libraries not found:"; echo "$missing"; rc=1
    else echo "libraries: all found"; fi
    echo "== data"
    need_fmnist || rc=1
    return $rc
}

# Fashion-MNIST as HDF5 in $W (from the bundle's IDX files), once.
need_fmnist() {
    [ -f "$W/fmnist.h5" ] && return 0
    "$BIN/settrain" prepare fmnist --src "$DATA/fashion-mnist" --out "$W/fmnist.h5"
}

step_test_gpu() {
    env ST_TEST_NO_SKIP=1 ST_GPU_NO_FALLBACK=1 ST_GPU_SYNC_CHECK=1 "$BIN/test_gpu"
}

step_memcheck() {
    san=$(sanitizer)
    [ -n "$san" ] || { echo "FAIL: compute-sanitizer not found"; return 1; }
    env ST_GPU_TEST_SHORT=1 ST_TEST_NO_SKIP=1 ST_GPU_NO_FALLBACK=1 \
        "$san" --tool memcheck --print-limit 50 --error-exitcode 1 "$BIN/test_gpu"
}

step_racecheck() {
    san=$(sanitizer)
    [ -n "$san" ] || { echo "FAIL: compute-sanitizer not found"; return 1; }
    env ST_GPU_TEST_SHORT=1 ST_TEST_NO_SKIP=1 ST_GPU_TEST_FILTER=elementwise \
        "$san" --tool racecheck --print-limit 50 --error-exitcode 1 "$BIN/test_gpu"
}

# e2e_pair NAME ARGS...: the same run on both backends; epoch-1 train_loss.
e2e_pair() {
    name=$1; shift
    "$BIN/settrain" train "$@" --backend cpu --threads "$(nproc)" --quiet \
        --out "$W/runs/e2e_${name}_cpu" || { echo "FAIL: $name cpu run failed"; return 1; }
    "$BIN/settrain" train "$@" --backend gpu --quiet \
        --out "$W/runs/e2e_${name}_gpu" || { echo "FAIL: $name gpu run failed"; return 1; }
    c=$W/runs/e2e_${name}_cpu/metrics.csv g=$W/runs/e2e_${name}_gpu/metrics.csv
    echo "-- $name metrics.csv, cpu then gpu"; cat "$c" "$g"
    j=$W/runs/e2e_${name}_gpu/run.json
    grep -o '"gpu_kernels": "[^"]*", "gpu_fallbacks": [0-9]*' "$j" ||
        { echo "FAIL: $name: run.json names no GPU kernels"; return 1; }
    grep -q '"gpu_fallbacks": 0' "$j" ||
        { echo "FAIL: $name: the GPU run fell back from cuSPARSE to its own kernels (run.json)"; return 1; }
    awk -F, -v name="$name" 'FNR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        NR == FNR { if (FNR == 2) { cl = $col["train_loss"]; ca = $col["test_acc"] } next }
        FNR == 2 { gl = $col["train_loss"]; d = gl - cl; if (d < 0) d = -d
                   tol = 1e-3 * (cl < 0 ? -cl : cl) + 1e-4; seen = 1
                   printf "%s: epoch-1 train_loss cpu %s gpu %s |diff| %.2g (tolerance %.2g) %s; test_acc cpu %s gpu %s\n",
                          name, cl, gl, d, tol, d <= tol ? "ok" : "FAIL", ca, $col["test_acc"]
                   bad = d > tol }
        END { exit bad || !seen }' "$c" "$g"
}

step_e2e() {
    rc=0
    e2e_pair lung_m1 --data "$DATA/lung_small.h5" --hidden 256,256 --epochs 3 --batch 32 \
        --seed 3 || rc=1
    need_fmnist || return 1
    e2e_pair fmnist_m4 --data "$W/fmnist.h5" --train-limit 12000 --hidden 1000,1000 --motif 4 \
        --epochs 2 --batch 128 --seed 3 || rc=1
    return $rc
}

step_resume() {
    need_fmnist || { echo "FAIL: no fmnist.h5"; return 1; }
    set -- --data "$W/fmnist.h5" --epochs 5 --batch 128 --seed 7 --backend gpu --quiet
    ref=$W/runs/resume_ref int=$W/runs/resume_int
    "$BIN/settrain" train "$@" --out "$ref" || { echo "FAIL: uninterrupted run failed"; return 1; }
    "$BIN/settrain" train "$@" --out "$int" &
    pid=$!
    # Signal once two epochs are written, so the stop lands inside the run.
    while kill -0 "$pid" 2>/dev/null && [ "$(rows "$int/metrics.csv")" -lt 3 ]; do sleep 0.05; done
    at=$(($(rows "$int/metrics.csv") - 1))
    kill -USR1 "$pid" 2>/dev/null
    wait "$pid"
    st=$?
    echo "interrupted run: exit status $st (3 expected), $at epoch(s) written when signalled"
    rc=0
    [ "$st" -eq 3 ] || { echo "FAIL: exit status $st, not 3: the run was not interrupted"; rc=1; }
    [ "$at" -lt 5 ] || { echo "FAIL: all 5 epochs were done before the signal"; rc=1; }
    grep -q '"status": "interrupted"' "$int/run.json" ||
        { echo "FAIL: run.json does not say interrupted"; rc=1; }
    stopped=$(($(rows "$int/metrics.csv") - 1))
    echo "stopped after epoch $stopped"
    "$BIN/settrain" train --resume "$int" --quiet || { echo "FAIL: --resume failed"; return 1; }
    echo "-- metrics.csv, uninterrupted then resumed"; cat "$ref/metrics.csv" "$int/metrics.csv"
    awk -F, -v at="$stopped" 'FNR == 1 { for (i = 1; i <= NF; i++) col[$i] = i
                  split("train_loss train_acc test_loss test_acc", names, " "); next }
        NR == FNR { for (k = 1; k <= 4; k++) r[FNR, k] = $col[names[k]]; conn[FNR] = $col["connections"]; next }
        { n++; for (k = 1; k <= 4; k++) { d = $col[names[k]] - r[FNR, k]; if (d < 0) d = -d; if (d > worst) worst = d }
          if ($col["connections"] != conn[FNR]) cbad++ }
        END { ok = n == 5 && worst <= 1e-4 && cbad == 0
              printf "resume: stopped after epoch %d, resumed to %d rows; worst |diff| %.2g (tolerance 1e-4), %d connection mismatches: %s\n",
                     at, n, worst, cbad, ok ? "ok" : "FAIL"
              exit !ok }' "$ref/metrics.csv" "$int/metrics.csv" || rc=1
    return $rc
}

step_bench() {
    need_fmnist || { echo "FAIL: no fmnist.h5"; return 1; }
    # the epoch times first: they matter most if the step runs out of time
    rc=0
    "$BIN/bench_gpu" --train --short --motifs 1,2,4,8 --data "$W/fmnist.h5" \
        --out "$W/logs/bench_train.csv" || rc=1
    "$BIN/bench_gpu" --kernels --short --out "$W/logs/bench_kernels.csv" || rc=1
    return $rc
}

# ---- key numbers of a step, from its log (also a partial one) -------------

keys() {
    k=$(keys_raw "$1")
    case $k in *FAIL*) ;; *) k="$k $(grep -m1 -E '^FAIL|: error: |^bench_gpu: ' "$W/logs/$1.log")" ;; esac
    k=$(printf '%s\n' "$k" | tr '\n' ' ' | sed 's/  */ /g; s/^ *//; s/ *$//')
    # nothing recognised (a step cut short, say): its last line
    [ -n "$k" ] || k="last line: $(grep -v '^[[:space:]]*$' "$W/logs/$1.log" | tail -n 1)"
    printf '%s\n' "$k" | cut -c1-400
}

keys_raw() {
    log=$W/logs/$1.log
    case $1 in
    facts)
        gpu=$(grep -m1 'CUDA device(s):' "$log" | sed 's/^[0-9]* CUDA device(s): 0: //')
        drv=$(awk -F', ' '/^name, driver_version/ { getline; print $2; exit }' "$log")
        lib=$(grep -m1 -E '^libraries: all found|^FAIL: libraries' "$log")
        h5=$(grep -m1 '^HDF5: ' "$log" | sed 's/^HDF5: built against \([^,]*\), loaded [^:]*: \([0-9.]*\).*/HDF5 \1 built, \2 loaded/')
        dat=$(grep -m1 '^wrote .*fmnist.h5' "$log" | sed 's/^wrote [^:]*: //; s/; class.*//')
        echo "${gpu:-no device line}; driver ${drv:-?}; ${lib:-libraries: ?}; ${h5:-HDF5 ?}; fmnist: ${dat:-not prepared}" ;;
    test_gpu | memcheck | racecheck)
        line=$(grep -E '^test_gpu: [0-9]+ passed' "$log" | tail -n 1)
        [ -n "$line" ] || line="so far $(grep -c '^\[  OK  \]' "$log") ok, $(grep -c '^\[ FAIL \]' "$log") failed (last: $(grep '^\[ RUN  \]' "$log" | tail -n 1 | cut -c10-))"
        san=$(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -n 1 | sed 's/^=* *//')
        fails=$(grep -E '^\[ FAIL \]' "$log" | cut -c10- | sed 's/ (.*//' | tr '\n' ' ')
        echo "$line${san:+; $san}${fails:+; failed: $fails}" ;;
    e2e) grep -E '^[a-z0-9_]+: epoch-1 train_loss|^FAIL' "$log" | sed 's/; test_acc.*//' | tr '\n' ';' ;;
    resume) grep -E '^resume:|^FAIL|^interrupted run' "$log" | tail -n 2 | tr '\n' ';' ;;
    bench)
        awk '$1 ~ /^(m[0-9]+|dense)$/ && NF == 7 { printf "%s %ss/epoch; ", $1, $6 }' "$log"
        grep -E 'variant\(s\) disagree' "$log" ;;
    esac
}

# ---- main ----------------------------------------------------------------

if [ "${1:-}" = "--step" ]; then
    "step_$2"
    exit $?
fi

if [ ! -x "$BIN/test_gpu" ] || [ ! -f "$HERE/BUILD_INFO" ]; then
    echo "gpu_check: $HERE is not a GPU bundle; run make gpu-check (or make gpu-bundle, then sh gpubundle/run.sh)" >&2
    exit 2
fi
probe=$("$BIN/bench_gpu" --devices 2>&1)
prc=$?
if [ "$prc" -ne 0 ]; then
    case $probe in
    "no CUDA device is present"*) echo "gpu_check: $(printf '%s\n' "$probe" | head -n 1)" >&2 ;;
    *) echo "gpu_check: no CUDA device is present: the probe failed (exit $prc): $(printf '%s\n' "$probe" | head -n 1)" >&2 ;;
    esac
    exit 1
fi

OUTDIR=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$OUTDIR" || { echo "gpu_check: cannot create $OUTDIR" >&2; exit 1; }
OUTDIR=$(cd "$OUTDIR" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
export W BIN DATA HERE
mkdir -p "$W/logs" "$W/runs"
cp "$HERE/BUILD_INFO" "$W/logs/"
T_TOTAL=${T_TOTAL:-540}
RESERVE=10
start=$(date +%s)
table=$W/table.txt
: >"$table"
failed=0
echo "gpu_check: $probe"

run_step() {
    name=$1; limit=$2
    if [ -n "${STEPS:-}" ] && ! printf ' %s ' "$STEPS" | tr ',' ' ' | grep -q " $name "; then
        printf '%-10s %-15s %5s %6s  %s\n' "$name" "not run" - - "not in STEPS=$STEPS" >>"$table"
        return
    fi
    now=$(date +%s)
    left=$((T_TOTAL - RESERVE - (now - start)))
    if [ "$left" -lt 5 ]; then
        printf '%-10s %-15s %5s %6s  %s\n' "$name" TIMEOUT - - "not run: ${left}s left of T_TOTAL ${T_TOTAL}s" >>"$table"
        failed=$((failed + 1))
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit}s)"
    t0=$(date +%s)
    timeout -k 10 "$limit" sh "$SELF" --step "$name" >"$W/logs/$name.log" 2>&1
    rc=$?
    t1=$(date +%s)
    case $rc in
    0) status=ok ;;
    124 | 137) status=TIMEOUT; failed=$((failed + 1)) ;;
    *) status="FAIL (exit $rc)"; failed=$((failed + 1)) ;;
    esac
    tail -n 3 "$W/logs/$name.log"
    printf '%-10s %-15s %4ss %5ss  %s\n' "$name" "$status" $((t1 - t0)) "$limit" "$(keys "$name")" >>"$table"
}

run_step facts "${T_FACTS:-40}"
run_step test_gpu "${T_TEST_GPU:-120}"
run_step memcheck "${T_MEMCHECK:-120}"
run_step racecheck "${T_RACECHECK:-40}"
run_step e2e "${T_E2E:-45}"
run_step resume "${T_RESUME:-75}"
run_step bench "${T_BENCH:-90}"

# Archive: logs, and each run's metrics.csv and run.json (no checkpoints).
for d in "$W"/runs/*/; do
    [ -d "$d" ] || continue
    n=$(basename "$d")
    mkdir -p "$W/logs/runs/$n"
    for f in metrics.csv run.json; do [ -f "$d$f" ] && cp "$d$f" "$W/logs/runs/$n/"; done
done
end=$(date +%s)
gpu=$(printf '%s\n' "$probe" | sed 's/^[0-9]* CUDA device(s): 0: //; s/;.*//')
{
    echo "gpu_check: $gpu; $(sed -n 2p "$HERE/BUILD_INFO"); $((end - start))s of ${T_TOTAL}s"
    printf '%-10s %-15s %5s %6s  %s\n' step status time limit "key numbers"
    cat "$table"
    echo "archive: $OUTDIR/gpu_check.tar.gz; this table: $OUTDIR/summary.txt; $failed step(s) not ok"
} >"$W/logs/summary.txt"
cp "$W/logs/summary.txt" "$OUTDIR/summary.txt"
tar -czf "$OUTDIR/gpu_check.tar.gz" -C "$W" logs || echo "gpu_check: tar failed" >&2
rm -rf "$W"
echo
cat "$OUTDIR/summary.txt"
[ "$failed" -eq 0 ]
