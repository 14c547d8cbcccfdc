#!/bin/sh
# profile_nsys.sh: profiles a few epochs of a GPU training run with NVIDIA
# Nsight Systems and writes the timeline next to the run:
#   RUN_DIR/metrics.csv, run.json, checkpoint.h5   the (short) run itself
#   RUN_DIR/profile.nsys-rep                         the timeline (open in nsys-ui)
#   RUN_DIR/profile_stats.txt                        NVTX ranges, kernels and CUDA
#                                                    API calls summed (nsys stats)
# Traced: CUDA runtime and kernels, NVTX ranges (train_epoch, forward,
# backward, update, eval, evolve, sync_model), cuBLAS and cuSPARSE; CPU
# sampling and context-switch tracing are off to keep the overhead low.
# docs/clusters.md says how to read the timeline.
#
# Usage (from anywhere, after `make` with CUDA):
#   sh scripts/profile_nsys.sh RUN_DIR --data FILE.h5 [settrain train options]
#   e.g. EPOCHS=2 sh scripts/profile_nsys.sh results/profiles/fmnist_m2 \
#            --data data/fmnist.h5 --motif 2
#   On a cluster: srun --gres=gpu:1 sh scripts/profile_nsys.sh RUN_DIR ...
# Environment: EPOCHS (default 3; an --epochs option given after RUN_DIR
# wins), SETTRAIN (default build/settrain), NSYS (default nsys on PATH).
# RUN_DIR must not hold a run already. Exit code: settrain's (0 ok, 1 error,
# 2 usage, 3 interrupted), or 1 when nsys or settrain is missing.
set -eu

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 RUN_DIR --data FILE.h5 [settrain train options]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
dir=$1
shift
EPOCHS=${EPOCHS:-3}
SETTRAIN=${SETTRAIN:-build/settrain}
NSYS=${NSYS:-nsys}

if ! command -v "$NSYS" >/dev/null 2>&1; then
    echo "profile_nsys.sh: error: $NSYS (NVIDIA Nsight Systems) is not installed or not on PATH:" >&2
    echo "  install it with the CUDA toolkit or from developer.nvidia.com/nsight-systems" >&2
    echo "  (on a cluster often: module load nsight-systems), or set NSYS=/path/to/nsys" >&2
    exit 1
fi
if [ ! -x "$SETTRAIN" ]; then
    echo "profile_nsys.sh: error: $SETTRAIN is missing: run make first (or set SETTRAIN)" >&2
    exit 1
fi
if [ -e "$dir/metrics.csv" ]; then
    echo "profile_nsys.sh: error: $dir already holds a run: choose a new folder" >&2
    exit 1
fi
mkdir -p "$dir"

echo "profile_nsys.sh: profiling $EPOCHS epochs into $dir/profile.nsys-rep"
rc=0
"$NSYS" profile --trace=cuda,nvtx,cublas,cusparse --sample=none --cpuctxsw=none \
    --force-overwrite=true --output="$dir/profile" \
    "$SETTRAIN" train --backend gpu --epochs "$EPOCHS" --out "$dir" "$@" || rc=$?
if [ ! -f "$dir/profile.nsys-rep" ]; then
    echo "profile_nsys.sh: error: nsys wrote no $dir/profile.nsys-rep (settrain exit code $rc)" >&2
    exit "$((rc ? rc : 1))"
fi

# Report names changed in nsys 2023.1 (nvtxsum -> nvtx_sum, ...): try both.
if "$NSYS" stats --report nvtx_sum,cuda_gpu_kern_sum,cuda_api_sum \
    "$dir/profile.nsys-rep" >"$dir/profile_stats.txt" 2>&1 ||
    "$NSYS" stats --report nvtxsum,gpukernsum,cudaapisum \
        "$dir/profile.nsys-rep" >"$dir/profile_stats.txt" 2>&1; then
    echo "profile_nsys.sh: summary in $dir/profile_stats.txt"
else
    echo "profile_nsys.sh: warning: nsys stats failed (see $dir/profile_stats.txt); the timeline is fine" >&2
fi
echo "profile_nsys.sh: open $dir/profile.nsys-rep in Nsight Systems (nsys-ui); settrain exit code $rc"
exit "$rc"
