#!/bin/sh
# main_job.sh: the project's main job on a fresh Debian 12 machine, as root:
# installs what is missing, builds, converts Fashion-MNIST to HDF5 and trains
# the default network (784-3000-3000-3000-10, motif 1, epsilon 20, batch 128,
# lr 0.01, momentum 0.9, weight decay 2e-4, dropout 0.3) for EPOCHS epochs
# (default 20, sized to finish in under 10 minutes on 2 cores without a GPU),
# printing progress and the final test accuracy.
# Usage: sh scripts/main_job.sh [extra settrain train options, e.g. --motif 2]
set -eu
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-20}
sh scripts/install_deps.sh
# The GPU backend is only worth its compile time where a GPU is present.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    make
else
    make NVCC=
fi
[ -f data/fmnist.h5 ] || build/settrain prepare fmnist --out data/fmnist.h5
build/settrain train --data data/fmnist.h5 --epochs "$EPOCHS" "$@"
