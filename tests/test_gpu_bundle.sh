#!/bin/sh
# test_gpu_bundle.sh: `make gpu-bundle` into $BUILD/gpubundle (objects kept
# in $BUILD/bundle between runs, so only the first run compiles CUDA), then
# what can be checked without a GPU:
#  - no EVEX-encoded (AVX-512) instruction in any bundled ELF file, by
#    objdump -d (an instruction whose opcode starts with 0x62 after its
#    legacy prefixes, or one naming %zmm or a {%k} mask); the detector is
#    first shown to find them in a -mavx512f object and none in the same
#    code built for x86-64-v3;
#  - ldd resolves every library of the bundled binaries but the CUDA driver
#    (libcuda.so.1), libmatio and libgomp from the bundle's lib/;
#  - the commit stamp is baked in (settrain --version names a commit) and
#    the bundle is under 60 MiB;
#  - run.sh without a device: exits non-zero at once, one line saying no
#    CUDA device is present, never "ok", nothing written to OUTDIR;
#  - run.sh with a stand-in device (a copy of the bundle whose bench_gpu
#    --devices answers yes; everything else is real and fails for want of
#    a GPU, one step times out): it still writes exactly an archive and a
#    summary (the device tool returns at most 8 files), the archive holds
#    every step's log, and the table (ok / FAIL / TIMEOUT for all seven
#    steps, the timed-out one included) is what it prints last; the GPU
#    tests fail there because ST_TEST_NO_SKIP=1 turns their skips into
#    failures.
# Skipped visibly without nvcc (or with NVCC= / ST_HAVE_CUDA empty), without
# lung_small.mat (ST_SHARED_DATA, default ../shared/data) or Fashion-MNIST.
# Prints "test_gpu_bundle: N passed, N failed, N skipped".
set -u
BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
shared=${ST_SHARED_DATA:-../shared/data}
fmnist=${FMNIST_SRC:-/usr/share/datasets/fashion-mnist}
pass=0; fail=0; skip=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() { fail=$((fail + 1)); echo "  FAIL $1"; }
finish() { echo "test_gpu_bundle: $pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }
skip_all() { echo "  SKIP: $1"; skip=$((skip + 1)); finish; }

if [ "${ST_HAVE_CUDA+set}" = set ] && [ "$ST_HAVE_CUDA" != 1 ]; then
    skip_all "built without CUDA (NVCC= or no nvcc): the GPU bundle is not built"
fi
command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || skip_all "nvcc not found"
[ -f "$shared/lung_small.mat" ] || skip_all "$shared/lung_small.mat absent"
[ -f "$fmnist/train-images-idx3-ubyte.gz" ] || skip_all "Fashion-MNIST absent ($fmnist; apt-get install dataset-fashion-mnist)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_gpu_bundle.XXXXXX") || { echo "test_gpu_bundle: 0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
B=$BUILD/gpubundle

t0=$(date +%s)
if $MAKE --no-print-directory BUILD="$BUILD" GPU_BUNDLE="$B" SHARED_DATA="$shared" FMNIST_SRC="$fmnist" \
        gpu-bundle >"$tmp/make.log" 2>&1; then
    ok "make gpu-bundle ($(($(date +%s) - t0))s): $(tail -n 1 "$tmp/make.log")"
else
    tail -n 20 "$tmp/make.log"
    bad "make gpu-bundle"
    finish
fi

# EVEX detector: FILE -> count of EVEX-encoded instructions in its code.
evex_count() {
    objdump -d "$1" 2>/dev/null | awk -F'\t' '
        NF >= 3 { n = split($2, b, " "); i = 1
                  while (i <= n && b[i] ~ /^(66|67|f2|f3|f0|2e|36|3e|26|64|65)$/) i++
                  if ((i <= n && b[i] == "62") || $3 ~ /%zmm|\{%k[0-7]\}/) c++ }
        END { print c + 0 }'
}
printf 'void f(float *a, int n) { for (int i = 0; i < n; i++) a[i] = a[i] * 3.0f + 1.0f; }\n' >"$tmp/v.c"
if gcc -O3 -mavx512f -mprefer-vector-width=512 -c -o "$tmp/v512.o" "$tmp/v.c" 2>/dev/null &&
   gcc -O3 -march=x86-64-v3 -c -o "$tmp/v3.o" "$tmp/v.c"; then
    n512=$(evex_count "$tmp/v512.o"); n3=$(evex_count "$tmp/v3.o")
    [ "$n512" -gt 0 ] && [ "$n3" -eq 0 ] &&
        ok "the EVEX detector finds $n512 in a -mavx512f object, 0 in the x86-64-v3 one" ||
        bad "the EVEX detector: $n512 in the -mavx512f object, $n3 in the x86-64-v3 one"
else
    bad "gcc could not build the detector's sample"
fi
elf=0; evex=""
for f in "$B"/bin/* "$B"/lib/*; do
    head -c 4 "$f" | grep -q 'ELF' || continue
    elf=$((elf + 1))
    n=$(evex_count "$f")
    [ "$n" -eq 0 ] || evex="$evex $(basename "$f"):$n"
done
[ "$elf" -ge 5 ] && [ -z "$evex" ] && ok "no EVEX instruction in the $elf bundled ELF files" ||
    bad "EVEX instructions in bundled files ($elf checked):$evex"

missing=""
for b in "$B"/bin/*; do
    m=$(ldd "$b" | grep 'not found' | grep -v 'libcuda\.so\.1' | awk '{ print $1 }' | tr '\n' ' ')
    [ -z "$m" ] || missing="$missing $(basename "$b"): $m"
    for lib in libmatio libgomp; do
        ldd "$b" | grep "$lib" | grep -q 'bin/\.\./lib/' || missing="$missing $(basename "$b"): $lib not from the bundle"
    done
done
[ -z "$missing" ] && ok "ldd resolves every library but libcuda.so.1; libmatio and libgomp from the bundle" ||
    bad "ldd:$missing"

ver=$("$B/bin/settrain" --version | head -n 1)
case $ver in
*"commit unknown"* | "") bad "commit stamp not baked in: '$ver'" ;;
*"commit "[0-9a-f]*) ok "commit stamp: $ver" ;;
*) bad "settrain --version: '$ver'" ;;
esac
kib=$(du -sk "$B" | cut -f1)
[ "$kib" -lt $((60 * 1024)) ] && ok "bundle size $((kib / 1024)) MiB (< 60 MiB)" || bad "bundle size $((kib / 1024)) MiB"

# Without a device.
if "$B/bin/bench_gpu" --devices >/dev/null 2>&1; then
    echo "  SKIP: a CUDA device is present, so the refusal without one cannot be checked"
    skip=$((skip + 1))
else
    out=$(sh "$B/run.sh" "$tmp/nodev" 2>&1); rc=$?
    lines=$(printf '%s\n' "$out" | wc -l)
    if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && printf '%s' "$out" | grep -q 'no CUDA device is present' &&
       ! printf '%s' "$out" | grep -qw ok && [ ! -e "$tmp/nodev" ]; then
        ok "run.sh without a device: exit $rc, one line: $out"
    else
        bad "run.sh without a device: exit $rc, $lines line(s), OUTDIR $( [ -e "$tmp/nodev" ] && echo created || echo absent): $out"
    fi
fi

# With a stand-in device: the outputs of a check where every step fails.
cp -r "$B" "$tmp/fake" && mv "$tmp/fake/bin/bench_gpu" "$tmp/fake/bin/bench_gpu.real" &&
cat >"$tmp/fake/bin/bench_gpu" <<'EOF'
#!/bin/sh
[ "${1:-}" = --devices ] && { echo "1 CUDA device(s): 0: stand-in (compute 9.0, 1.0 GiB)"; exit 0; }
exec "$(dirname "$0")/bench_gpu.real" "$@"
EOF
chmod +x "$tmp/fake/bin/bench_gpu"
# The e2e step's runs hang, so its limit (T_E2E=3) must stop it: on a fast
# machine the real runs fail (no device) within the limit, and the TIMEOUT
# row would depend on the machine's speed.
mv "$tmp/fake/bin/settrain" "$tmp/fake/bin/settrain.real" &&
cat >"$tmp/fake/bin/settrain" <<'EOF'
#!/bin/sh
for a; do case $a in */runs/e2e_*) sleep 60 ;; esac; done
exec "$(dirname "$0")/settrain.real" "$@"
EOF
chmod +x "$tmp/fake/bin/settrain"
T_E2E=3 sh "$tmp/fake/run.sh" "$tmp/out" >"$tmp/fake.log" 2>&1; rc=$?
files=$(ls -A "$tmp/out" 2>/dev/null | tr '\n' ' ')
[ "$rc" -ne 0 ] && [ "$files" = "gpu_check.tar.gz summary.txt " ] &&
    ok "stand-in device: exit $rc, OUTDIR holds $files" || bad "stand-in device: exit $rc, OUTDIR holds '$files'"
big=$(find "$tmp/out" -type f -size +16M)
[ -z "$big" ] && ok "both files under 16 MiB ($(du -k "$tmp/out/gpu_check.tar.gz" | cut -f1) KiB archive)" || bad "too big: $big"
listing=$(tar -tzf "$tmp/out/gpu_check.tar.gz" 2>/dev/null)
absent=""
for s in facts test_gpu memcheck racecheck e2e resume bench; do
    printf '%s\n' "$listing" | grep -qx "logs/$s.log" || absent="$absent $s.log"
done
[ -z "$absent" ] && ok "the archive holds every step's log" || bad "archive lacks:$absent"
rows=$(grep -cE '^(facts|test_gpu|memcheck|racecheck|e2e|resume|bench) +(ok|FAIL \(exit [0-9]+\)|TIMEOUT) ' "$tmp/out/summary.txt")
[ "$rows" -eq 7 ] && ok "the table has a status row for each of the 7 steps" || bad "table rows: $rows of 7"
grep -qE '^e2e +TIMEOUT ' "$tmp/out/summary.txt" && ok "a timed-out step is in the table as TIMEOUT" ||
    bad "no TIMEOUT row for e2e (T_E2E=3)"
grep -qE '^test_gpu +FAIL .*skipped' "$tmp/out/summary.txt" &&
    ok "the GPU tests fail without a device (ST_TEST_NO_SKIP=1)" || bad "test_gpu row: $(grep '^test_gpu' "$tmp/out/summary.txt")"
n=$(wc -l <"$tmp/out/summary.txt")
[ "$(tail -n "$n" "$tmp/fake.log")" = "$(cat "$tmp/out/summary.txt")" ] &&
    ok "the table is printed last" || bad "the output does not end with the table"
cat "$tmp/out/summary.txt" | sed 's/^/    /'
finish
