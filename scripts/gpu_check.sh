#!/bin/sh
# gpu_check.sh: everything a session with a GPU should run first, in about
# 8 minutes on an H100 including the build (make gpu-check runs it).
#   1. device facts (nvidia-smi, nvcc);
#   2. build for one architecture (GPU_ARCH, default sm_90, plus its PTX) into
#      build/gpucheck (the default build is left alone);
#   3. tests/test_gpu (every operator, epoch and evolution against the CPU);
#   4. the same, short (ST_GPU_TEST_SHORT=1), under compute-sanitizer
#      --tool memcheck; then under --tool racecheck the tests of the two
#      kernels that use shared memory (batch gather, softmax reduction; CUB's
#      own kernels are left to NVIDIA, racecheck is slow on them);
#   5. the GPU benchmark, short (bench_gpu --short);
#   6. an end-to-end run of `settrain train --backend gpu` beside the CPU
#      backend when a small data file is at hand (data/lung_small.h5,
#      data/tox171.h5), comparing their metrics.csv; then a GPU run stopped
#      by SIGUSR1 and resumed, against the same run uninterrupted.
# Logs go to ${OUT:-/tmp/gpu_check}; the last lines are a summary table.
# Exit status: 0 when no step failed (skipped steps do not fail).
# Environment: OUT, GPU_ARCH (sm_90), JOBS (nproc), and per-step time limits
# T_BUILD T_TEST T_MEMCHECK T_RACECHECK T_BENCH T_E2E (seconds).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/gpu_check}
GPU_ARCH=${GPU_ARCH:-sm_90}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
B=build/gpucheck
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: >"$summary"
failed=0
start_all=$(date +%s)

# step NAME LIMIT_S LOG CMD...: run CMD with a time limit, log its output,
# record status and seconds.
step() {
    name=$1; limit=$2; log=$3; shift 3
    echo "=== $name (limit ${limit}s): $*"
    t0=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$log" 2>&1
    rc=$?
    t1=$(date +%s)
    case $rc in
        0) status=ok ;;
        124) status="TIMEOUT"; failed=$((failed + 1)) ;;
        *) status="FAIL (exit $rc)"; failed=$((failed + 1)) ;;
    esac
    tail -n 5 "$OUT/$log"
    printf '%-22s %-16s %6ss  %s\n' "$name" "$status" $((t1 - t0)) "$OUT/$log" >>"$summary"
}

skip() {
    printf '%-22s %-16s %6s   %s\n' "$1" "skipped" "-" "$2" >>"$summary"
    echo "=== $1: skipped ($2)"
}

# 1. Device facts.
{
    if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; else echo "nvidia-smi not found"; fi
    if command -v nvcc >/dev/null 2>&1; then nvcc --version; else /usr/local/cuda/bin/nvcc --version; fi
    git rev-parse --short=12 HEAD 2>/dev/null
} >"$OUT/device.txt" 2>&1
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
gpu_name=${gpu_name:-no GPU found by nvidia-smi}
echo "GPU: $gpu_name"

# 2. Build (one architecture + PTX).
step build "${T_BUILD:-300}" build.log \
    make -j"$JOBS" BUILD="$B" CUDA_ARCH="$GPU_ARCH" "$B/settrain" "$B/tests/test_gpu" "$B/bench_gpu"
if [ ! -x "$B/tests/test_gpu" ]; then
    echo "build failed; see $OUT/build.log"
    cat "$summary"
    exit 1
fi
grep -q 'GPU backend built' "$OUT/build.log" || make BUILD="$B" CUDA_ARCH="$GPU_ARCH" deps-report

# 3. The GPU tests.
step test_gpu "${T_TEST:-120}" test_gpu.log "$B/tests/test_gpu"

# 4. compute-sanitizer.
SAN=$(command -v compute-sanitizer 2>/dev/null || true)
[ -z "$SAN" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && SAN=/usr/local/cuda/bin/compute-sanitizer
if [ -n "$SAN" ]; then
    step memcheck "${T_MEMCHECK:-120}" memcheck.log env ST_GPU_TEST_SHORT=1 \
        "$SAN" --tool memcheck --error-exitcode 1 "$B/tests/test_gpu"
    step racecheck "${T_RACECHECK:-90}" racecheck.log \
        env ST_GPU_TEST_SHORT=1 ST_GPU_TEST_FILTER=elementwise \
        "$SAN" --tool racecheck --error-exitcode 1 "$B/tests/test_gpu"
else
    skip memcheck "compute-sanitizer not found"
    skip racecheck "compute-sanitizer not found"
fi

# 5. Benchmark (short): kernel harness and FMNIST training.
step bench "${T_BENCH:-150}" bench.log "$B/bench_gpu" --short --out "$OUT/bench.csv"
[ -f "$OUT/bench.csv" ] && mkdir -p results/bench && cp "$OUT/bench.csv" \
    "results/bench/gpu-$(printf '%s' "$gpu_name" | tr -c 'A-Za-z0-9' '-')-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)-short.csv" 2>/dev/null

# 6. End to end: the trainer on the GPU beside the CPU (same seed).
data=""
for f in data/lung_small.h5 data/tox171.h5; do [ -f "$f" ] && { data=$f; break; }; done
if [ -n "$data" ]; then
    rm -rf "$OUT/e2e_cpu" "$OUT/e2e_gpu"
    step e2e_cpu "${T_E2E:-60}" e2e_cpu.log "$B/settrain" train --data "$data" --hidden 256,256 \
        --epochs 4 --batch 32 --backend cpu --quiet --out "$OUT/e2e_cpu"
    step e2e_gpu "${T_E2E:-60}" e2e_gpu.log "$B/settrain" train --data "$data" --hidden 256,256 \
        --epochs 4 --batch 32 --backend gpu --quiet --out "$OUT/e2e_gpu"
    if [ -f "$OUT/e2e_cpu/metrics.csv" ] && [ -f "$OUT/e2e_gpu/metrics.csv" ]; then
        {
            echo "e2e metrics.csv rows, cpu then gpu (loss and accuracy should agree closely):"
            paste -d'\n' "$OUT/e2e_cpu/metrics.csv" "$OUT/e2e_gpu/metrics.csv"
            grep -o '"gpu_name": "[^"]*"' "$OUT/e2e_gpu/run.json" 2>/dev/null
        } >"$OUT/e2e.txt"
        cat "$OUT/e2e.txt"
    fi
    # 7. Resume on the GPU: SIGUSR1 after two epochs, exit 3, --resume; the
    # continued rows must match the uninterrupted run within 1e-3.
    rm -rf "$OUT/res_ref" "$OUT/res_int"
    rows() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
    step resume_ref "${T_E2E:-60}" resume_ref.log "$B/settrain" train --data "$data" \
        --hidden 256,256 --epochs 8 --batch 32 --backend gpu --quiet --out "$OUT/res_ref"
    "$B/settrain" train --data "$data" --hidden 256,256 --epochs 8 --batch 32 --backend gpu \
        --quiet --out "$OUT/res_int" >"$OUT/resume_int.log" 2>&1 &
    pid=$!
    n=0
    while [ "$n" -lt 600 ] && [ "$(rows "$OUT/res_int/metrics.csv")" -lt 3 ]; do
        sleep 0.1; n=$((n + 1))
    done
    kill -USR1 "$pid" 2>/dev/null
    wait "$pid"
    echo "interrupted run exit status: $? (3 expected)" >>"$OUT/resume_int.log"
    step resume_gpu "${T_E2E:-60}" resume_gpu.log "$B/settrain" train --resume "$OUT/res_int" --quiet
    if awk -F, 'NR == FNR { if (FNR > 1) for (c = 2; c <= 5; c++) ref[FNR, c] = $c; next }
                FNR > 1 { rows++; for (c = 2; c <= 5; c++) { d = $c - ref[FNR, c]; if (d < 0) d = -d; if (d > 1e-3) bad++ } }
                END { exit !(rows == 8 && bad == 0) }' "$OUT/res_ref/metrics.csv" "$OUT/res_int/metrics.csv" 2>/dev/null; then
        printf '%-22s %-16s %6s   %s\n' resume_matches ok - "8 rows within 1e-3 of the uninterrupted run" >>"$summary"
    else
        printf '%-22s %-16s %6s   %s\n' resume_matches FAIL - "$OUT/res_int/metrics.csv vs $OUT/res_ref/metrics.csv" >>"$summary"
        failed=$((failed + 1))
    fi
else
    skip e2e "no data/lung_small.h5 or data/tox171.h5 (carry one)"
fi

# Summary.
end_all=$(date +%s)
{
    echo
    echo "gpu_check summary ($gpu_name, $((end_all - start_all))s; logs in $OUT)"
    printf '%-22s %-16s %7s  %s\n' step status time log
    cat "$summary"
    grep -E 'test_gpu: [0-9]+ passed' "$OUT/test_gpu.log" 2>/dev/null
    grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/memcheck.log" "$OUT/racecheck.log" 2>/dev/null
} | tee "$OUT/summary_table.txt"
[ "$failed" -eq 0 ]
