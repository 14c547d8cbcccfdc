#!/bin/sh
# gpu_bundle.sh BUILD_DIR BUNDLE_DIR SHARED_DATA FMNIST_SRC: assembles the GPU
# bundle (make gpu-bundle builds BUILD_DIR first and then runs this) from
# the binaries in BUILD_DIR, which were linked with BUNDLE=1 (an RPATH of
# $ORIGIN/../lib). BUNDLE_DIR is replaced as a whole:
#   bin/       settrain, test_gpu, bench_gpu
#   lib/       libmatio and libgomp (a GPU machine without a package
#              registry may lack them; libhdf5_serial, zlib, the C++ runtime
#              and the CUDA libraries are expected there, and run.sh's first
#              step lists what its loader cannot find)
#   data/      lung_small.h5 (settrain prepare mat from SHARED_DATA) and
#              fashion-mnist/ (the four IDX .gz files of FMNIST_SRC: the whole
#              set, 30 MB, so the benchmark times real 60000-sample epochs;
#              run.sh prepares the HDF5 file there)
#   run.sh     scripts/gpu_check.sh
#   BUILD_INFO commit, flags, date, file sizes
# Fails (exit 1, one line) when an input is missing or the bundle exceeds
# 60 MiB (the device tool carries at most 64 MiB with the working tree).
set -u
die() { echo "gpu_bundle: error: $*" >&2; exit 1; }
[ $# -eq 4 ] || die "usage: gpu_bundle.sh BUILD_DIR BUNDLE_DIR SHARED_DATA FMNIST_SRC"
build=$1; bundle=$2; shared=$3; fmnist=$4
cd "$(dirname "$0")/.." || exit 1
for b in settrain tests/test_gpu bench_gpu; do
    [ -x "$build/$b" ] || die "$build/$b is missing (make gpu-bundle builds it)"
done
[ -f "$shared/lung_small.mat" ] || die "$shared/lung_small.mat is missing (set SHARED_DATA)"
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
         t10k-labels-idx1-ubyte.gz; do
    [ -f "$fmnist/$f" ] || die "$fmnist/$f is missing (apt-get install dataset-fashion-mnist, or set FMNIST_SRC)"
done

tmp="$bundle.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/lib" "$tmp/data/fashion-mnist" || die "cannot create $tmp"
trap 'rm -rf "$tmp"' EXIT
cp "$build/settrain" "$build/tests/test_gpu" "$build/bench_gpu" "$tmp/bin/" || die "copy failed"

# Libraries: the resolved path of each bundled soname, from ldd.
for so in libmatio.so libgomp.so; do
    path=$(ldd "$tmp/bin/settrain" | awk -v so="$so" 'index($1, so) == 1 && $3 ~ /^\// { print $3; exit }')
    name=$(ldd "$tmp/bin/settrain" | awk -v so="$so" 'index($1, so) == 1 { print $1; exit }')
    [ -n "$path" ] && [ -f "$path" ] || die "settrain does not resolve $so (ldd)"
    cp -L "$path" "$tmp/lib/$name" || die "copy of $path failed"
done
# The RPATH must point into the bundle, so the copies are what is loaded.
for b in "$tmp"/bin/*; do
    readelf -d "$b" | grep -q 'RPATH.*\$ORIGIN/\.\./lib' ||
        die "$b has no RPATH \$ORIGIN/../lib (link with BUNDLE=1)"
    ldd "$b" | grep -q 'bin/\.\./lib/libmatio' || die "$b does not load the bundled libmatio"
done

"$tmp/bin/settrain" prepare mat --in "$shared/lung_small.mat" --out "$tmp/data/lung_small.h5" \
    >/dev/null || die "settrain prepare mat failed"
cp "$fmnist"/*-ubyte.gz "$tmp/data/fashion-mnist/" || die "copy of $fmnist failed"
cp scripts/gpu_check.sh "$tmp/run.sh" || die "copy of scripts/gpu_check.sh failed"

{
    echo "settrain GPU bundle"
    "$tmp/bin/settrain" --version | head -n 1
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n) ($(uname -m))"
    echo "flags: CPU_ARCH=x86-64-v3 CUDA_ARCH=sm_90 (+PTX compute_90) BUNDLE=1"
    h5h=$(printf '#include <H5public.h>\nH5_VERS_MAJOR.H5_VERS_MINOR.H5_VERS_RELEASE\n' |
          cc -E -P -I/usr/include/hdf5/serial $(pkg-config --cflags hdf5 2>/dev/null) -x c - 2>/dev/null |
          tail -n 1 | tr -d ' ')
    echo "hdf5: ${h5h:-unknown} (headers the binaries were compiled with)"
    nv=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    echo "nvcc: $("$nv" --version 2>/dev/null | tail -n 1)"
    echo "files:"
    (cd "$tmp" && find . -type f ! -name BUILD_INFO | sort | while read -r f; do
        printf '  %10s  %s\n' "$(wc -c <"$f")" "${f#./}"; done)
} >"$tmp/BUILD_INFO"

kib=$(du -sk "$tmp" | cut -f1)
[ "$kib" -le $((60 * 1024)) ] || die "the bundle is $((kib / 1024)) MiB, over 60 MiB"
rm -rf "$bundle"
mv "$tmp" "$bundle" || die "cannot move $tmp to $bundle"
trap - EXIT
echo "gpu_bundle: $bundle ($((kib / 1024)) MiB): $(grep -c '^  ' "$bundle/BUILD_INFO") files; on a GPU machine: sh $bundle/run.sh [OUTDIR]"
