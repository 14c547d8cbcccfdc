#!/bin/sh
# install_deps.sh: installs what settrain needs to build, test and run on
# Debian 12 (as root, or with sudo): a C compiler with OpenMP, HDF5, matio,
# zlib, the Fashion-MNIST package, gnuplot (plots), and clang with its
# libFuzzer runtime (make fuzz; make test checks that the fuzz targets
# build), Open MPI (the MPI build) and Slurm with munge (tests/test_slurm_real.sh
# runs a one-node cluster). Skips packages that are already installed. The CUDA toolkit is
# optional and not installed here.
set -eu
pkgs="build-essential pkg-config libhdf5-dev libmatio-dev zlib1g-dev dataset-fashion-mnist gnuplot-nox clang libclang-rt-14-dev"
# MPI (data-parallel training) and a one-node Slurm for tests/test_slurm_real.sh.
pkgs="$pkgs openmpi-bin libopenmpi-dev slurmctld slurmd slurm-client munge"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install_deps: all packages present"
    exit 0
fi
echo "install_deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install_deps: done"
