#!/bin/sh
# bench_cpu.sh: CPU seconds per epoch of settrain on the two reference SET
# configurations, beside the reference implementation's published range, and
# the same small network trained dense (every layer p = 1) as a baseline.
#
#   A: 784-1000-1000-1000-10, epsilon 13, batch 40, 2000 training samples
#      (reference SET code on a 2-core machine: 0.67-1.13 s per epoch of training)
#   B: 784-3000-3000-3000-10, epsilon 13, batch 40, all 60000 samples
#      (reference: 66-85 s per epoch of training)
#   A-dense: A with every layer dense
#
# Means are over epochs 2..N (the first is excluded). Writes
# results/bench/cpu-<date>-<commit>.csv and prints a table.
# Usage: scripts/bench_cpu.sh [DATA.h5]   (default data/fmnist.h5; made if absent)
# Environment: EPOCHS_A (default 11), EPOCHS_B (default 3), THREADS (default all cores).
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/settrain}
DATA=${1:-data/fmnist.h5}
EPOCHS_A=${EPOCHS_A:-11}
EPOCHS_B=${EPOCHS_B:-3}
THREADS=${THREADS:-$(nproc)}
[ -x "$BIN" ] || make
[ -f "$DATA" ] || "$BIN" prepare fmnist --out "$DATA"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
stamp=$(date +%Y%m%d-%H%M%S)
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "bench: warning: load average $load: other work on this machine slows these numbers" >&2
fi
work=$(mktemp -d /tmp/settrain_bench_XXXXXX)
out=results/bench/cpu-$stamp-$commit.csv
mkdir -p results/bench

# run NAME REF_LOW REF_HIGH EPOCHS ARGS...
run() {
    name=$1; lo=$2; hi=$3; ep=$4; shift 4
    echo "bench: $name ($*, $ep epochs)" >&2
    "$BIN" train --data "$DATA" --epochs "$ep" --threads "$THREADS" --backend cpu --quiet \
        --out "$work/$name" "$@" >/dev/null
    awk -F, -v name="$name" -v lo="$lo" -v hi="$hi" -v args="$*" 'NR > 2 {
            n++; tr += $6; ev += $7; el += $8; ep += $9; conn = $10 }
        END {
            tr /= n; ev /= n; el /= n; ep /= n
            rlo = (lo == "") ? "" : sprintf("%.1f", lo / tr)
            rhi = (hi == "") ? "" : sprintf("%.1f", hi / tr)
            printf "%s,\"%s\",%d,%d,%.4f,%.4f,%.4f,%.4f,%s,%s,%s,%s\n",
                name, args, n, conn, tr, ev, el, ep, lo, hi, rlo, rhi }' "$work/$name/metrics.csv"
}

{
    echo "config,options,epochs_measured,connections,t_train_s,t_evolve_s,t_eval_s,t_epoch_s,ref_train_low_s,ref_train_high_s,speedup_vs_ref_low,speedup_vs_ref_high"
    run A 0.67 1.13 "$EPOCHS_A" --hidden 1000,1000,1000 --epsilon 13 --batch 40 --train-limit 2000
    run A-dense "" "" "$EPOCHS_A" --hidden 1000,1000,1000 --epsilon 1000000 --batch 40 --train-limit 2000
    run B 66 85 "$EPOCHS_B" --hidden 3000,3000,3000 --epsilon 13 --batch 40
} > "$work/table.csv"
{
    echo "# settrain CPU benchmark: cpu \"$cpu\", threads $THREADS, commit $commit, $(date -u +%Y-%m-%dT%H:%M:%SZ), load average at start $load"
    cat "$work/table.csv"
} > "$out"
rm -rf "$work"
echo
echo "CPU: $cpu, threads $THREADS, commit $commit (seconds per epoch, mean of epochs 2..N)"
printf '%-8s %11s %9s %9s %9s %9s %14s %12s\n' config connections train evolve eval epoch "reference" "speed-up"
# the quoted options column holds commas: blank it out before splitting
table=$(grep -v '^#' "$out" | sed 's/"[^"]*"/-/')
echo "$table" | awk -F, 'NR > 1 { ref = ($9 == "") ? "-" : $9 "-" $10; sp = ($11 == "") ? "-" : $11 "-" $12 "x";
    printf "%-8s %11d %9.4f %9.4f %9.4f %9.4f %14s %12s\n", $1, $4, $5, $6, $7, $8, ref, sp }'
echo "$table" | awk -F, '$1 == "A" { a = $5 } $1 == "A-dense" { d = $5 }
    END { if (a > 0 && d > 0) printf "A: sparse trains %.1fx faster than the same network dense\n", d / a }'
echo "written: $out"
