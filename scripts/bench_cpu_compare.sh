#!/bin/sh
# bench_cpu_compare.sh: the CPU backend against itself (motif sizes), against
# PyTorch on the CPU and against the reference SET code, in one table, with
# and without a competing CPU-bound process.
#
# Sections (all at epsilon 20, batch 128, Fashion-MNIST, unless named):
#   kernel  tests/bench_cpu.c, one thread, process CPU time: one training
#           step (forward + dropout + ReLU, backward delta, fused SDDMM and
#           update), evolution, evaluation per epoch; multiply-add rate
#           (3 x connections x samples a step) against the core's peak,
#           measured by an FMA loop in the same program. Best of ROUNDS
#           rounds, motif sizes interleaved.
#   e2e     settrain train, wall clock, seconds of training per epoch (epoch 2
#           of 2, scaled from TRAIN_LIMIT samples to 60000), threads 1 and 2,
#           quiet and beside one busy-looping process.
#   torch   scripts/bench_torch.py: torch.sparse CSR and dense x 0/1 mask,
#           one thread, process CPU time, per epoch (60000 / 128 steps),
#           against settrain's one-thread kernel time at m = 1.
#   ref     the reference SET code (NumPy/SciPy/Cython, one thread: 0.70-0.93 s
#           per epoch on A, 63-94 s on B, measured on this machine beside
#           settrain; it is not built or run here), against settrain's
#           one-thread kernel time (CPU time) on the same configurations:
#           A 784-1000-1000-1000-10 eps 13 batch 40 2000 samples,
#           B 784-3000-3000-3000-10 eps 13 batch 40 (60000 samples); A also
#           with settrain train --threads 1 (wall clock).
# torch is installed from PyPI into build/bench/venv on the first run (the
# build and the tests never need it); NO_TORCH=1 skips that section.
#   threads settrain m = 1 beside one busy process, REPEATS (3) times in
#           turn: --threads 1, --threads 2, and --threads 2 with the measured
#           choice of the thread count off (SETTRAIN_ADAPT_THREADS=0).
#   profile where a one-thread training step's time goes, by phase, for each
#           network and motif size: perf (linux-perf, cpu-clock sampling;
#           the section says it is skipped where perf is missing or not
#           allowed) over tests/bench_cpu.c with BENCH_STEP_ONLY=1, its
#           kernels' symbols grouped into phases, each phase's share times
#           the step's time in that run: sparse forward, backward (delta;
#           for m = 1 hidden layers with their gradient in one pass),
#           SDDMM (weight gradient), dropout mask, activation (a = f(z) x
#           mask and its store), dense output layer, update (momentum
#           step), other. PROFILE_ROUNDS (20) rounds of 20 steps a run,
#           sampled at 1 kHz; the step time is that run's best round, under
#           the sampling (a few % slower than the kernel section's).
# SECTIONS="kernel e2e torch ref threads profile" (the default) picks sections;
# THREAD_NETS (default 1000,1000) the networks of the threads section.
# Writes results/bench/compare-<date>-<commit>.csv (one row per measurement,
# with CPU, threads, load average and commit) and prints the table.
# Usage: scripts/bench_cpu_compare.sh [DATA.h5]   (default data/fmnist.h5; made if absent)
# Environment: BUILD (default build), ROUNDS (5), PROFILE_ROUNDS (20), TRAIN_LIMIT (12800), MOTIFS ("1 2 4 8"), NETS ("3000,3000,3000 1000,1000").
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/settrain
DATA=${1:-data/fmnist.h5}
ROUNDS=${ROUNDS:-5}
PROFILE_ROUNDS=${PROFILE_ROUNDS:-20}
TRAIN_LIMIT=${TRAIN_LIMIT:-12800}
MOTIFS=${MOTIFS:-"1 2 4 8"}
SECTIONS=${SECTIONS:-"kernel e2e torch ref threads profile"}
has() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
NETS=${NETS:-"3000,3000,3000 1000,1000"}
[ -x "$BIN" ] || make BUILD="$BUILD" NVCC=
[ -f "$DATA" ] || "$BIN" prepare fmnist --out "$DATA"
# the kernel benchmark, linked against settrain's own objects of the kernels
objs=
for o in cpu/cpu_ops model/model model/evolve util/common; do objs="$objs $BUILD/obj/$o.o"; done
${CC:-cc} -O3 -march="${CPU_ARCH:-native}" -std=gnu99 -Wall -Wno-psabi -Iinclude -fopenmp \
    -o "$BUILD/bench_cpu" tests/bench_cpu.c $objs -lm
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include tests/bench_cpu.c 2>/dev/null || commit="$commit-dirty"
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
isa=$(grep -qw avx512f /proc/cpuinfo && echo avx512 || (grep -qw avx2 /proc/cpuinfo && echo avx2 || echo sse))
stamp=$(date +%Y%m%d-%H%M%S)
out=results/bench/compare-$stamp-$commit.csv
work=$(mktemp -d /tmp/settrain_cmp_XXXXXX)
mkdir -p results/bench
load() { cut -d' ' -f1 /proc/loadavg; }
comp_pid=
competitor_on() { sh -c 'while :; do :; done' & comp_pid=$!; sleep 1; }
competitor_off() { [ -n "$comp_pid" ] && kill "$comp_pid" 2>/dev/null; wait "$comp_pid" 2>/dev/null || true; comp_pid=; }
trap 'competitor_off; rm -rf "$work"' EXIT INT TERM

echo "section,network,motif,threads,competitor,connections,value_s,what,load1" > "$work/rows.csv"
row() { echo "$1,$2,$3,$4,$5,$6,$7,$8,$(load)" >> "$work/rows.csv"; }

# --- kernel: one thread, CPU time ------------------------------------------
# network names: 784-H-..-10 (the CSV has no quoted fields)
netname() { echo "784,$1,10" | tr , -; }
has kernel && for net in $NETS; do
    echo "bench: kernels $net (one thread, $ROUNDS rounds)" >&2
    OMP_NUM_THREADS=1 "$BUILD/bench_cpu" "$net" 128 "$ROUNDS" $MOTIFS > "$work/k.csv"
    nn=$(netname "$net")
    tail -n +2 "$work/k.csv" | while IFS=, read -r m conn step ep evo ev gf pk frac fw bw sd; do
        row kernel "$nn" "$m" 1 no "$conn" "$ep" train_epoch
        row kernel "$nn" "$m" 1 no "$conn" "$evo" evolve
        row kernel "$nn" "$m" 1 no "$conn" "$ev" eval_epoch
        row kernel "$nn" "$m" 1 no "$conn" "$fw" step_forward
        row kernel "$nn" "$m" 1 no "$conn" "$bw" step_backward
        row kernel "$nn" "$m" 1 no "$conn" "$sd" step_sddmm_update
        row kernel "$nn" "$m" 1 no "$conn" "$frac" peak_fraction
        row kernel "$nn" "$m" 1 no "$conn" "$pk" peak_gfma_s
    done
done

# --- e2e: settrain, wall clock ----------------------------------------------
# e2e NET MOTIF THREADS COMP EPS BATCH LIMIT NAME
e2e() {
    d="$work/run_$8_$(netname "$1")_$2_$3_$4"
    "$BIN" train --data "$DATA" --hidden "$1" --motif "$2" --threads "$3" --epsilon "$5" \
        --batch "$6" --train-limit "$7" --epochs 2 --backend cpu --quiet --out "$d" >/dev/null
    # epoch 2: training time scaled to 60000 samples
    tail -n 1 "$d/metrics.csv" | awk -F, -v lim="$7" '{ printf "%.4f %d %.4f %.4f\n", $6 * 60000 / lim, $10, $7, $8 }'
}
has e2e && for comp in no yes; do
    [ "$comp" = yes ] && competitor_on
    for net in $NETS; do
        for m in $MOTIFS; do
            for t in 1 2; do
                echo "bench: settrain $net m $m threads $t competitor $comp" >&2
                set -- $(e2e "$net" "$m" "$t" "$comp" 20 128 "$TRAIN_LIMIT" s)
                nn=$(netname "$net")
                row e2e "$nn" "$m" "$t" "$comp" "$2" "$1" train_epoch
                row e2e "$nn" "$m" "$t" "$comp" "$2" "$3" evolve
                row e2e "$nn" "$m" "$t" "$comp" "$2" "$4" eval_epoch
            done
        done
    done
    competitor_off
done

# --- torch --------------------------------------------------------------------
if has torch && [ "${NO_TORCH:-0}" != 1 ]; then
    PY=build/bench/venv/bin/python
    if ! [ -x "$PY" ] || ! "$PY" -c 'import torch' 2>/dev/null; then
        echo "bench: installing torch into build/bench/venv (PyPI, once)" >&2
        python3 -m venv build/bench/venv
        build/bench/venv/bin/pip install -q torch numpy
    fi
    for net in $NETS; do
        echo "bench: torch $net (one thread)" >&2
        "$PY" -W ignore scripts/bench_torch.py --hidden "$net" --batch 128 --threads 1 \
            --steps 10 --dense-steps 3 > "$work/t.csv"
        while IFS=, read -r mode tnet b th conn step ep; do
            row torch "$(netname "$net")" 1 1 no "$conn" "$ep" "train_epoch_$mode"
        done < "$work/t.csv"
    done
fi

# --- reference configurations -----------------------------------------------
if has ref; then
echo "bench: reference configurations A, B (kernels, one thread, CPU time)" >&2
BENCH_EPS=13 OMP_NUM_THREADS=1 "$BUILD/bench_cpu" 1000,1000,1000 40 "$ROUNDS" 1 > "$work/ra.csv"
BENCH_EPS=13 OMP_NUM_THREADS=1 "$BUILD/bench_cpu" 3000,3000,3000 40 "$ROUNDS" 1 > "$work/rb.csv"
# A trains 2000 samples an epoch, B 60000 (epoch_train_s is for 60000)
tail -n 1 "$work/ra.csv" | awk -F, '{ printf "%d %.5f\n", $2, $4 * 2000 / 60000 }' > "$work/ra"
tail -n 1 "$work/rb.csv" | awk -F, '{ printf "%d %.4f\n", $2, $4 }' > "$work/rb"
read -r conn t < "$work/ra"; row ref A 1 1 no "$conn" "$t" train_epoch
read -r conn t < "$work/rb"; row ref B 1 1 no "$conn" "$t" train_epoch
echo "bench: reference configuration A (settrain --threads 1, wall clock)" >&2
set -- $(e2e 1000,1000,1000 1 1 no 13 40 2000 A)
row ref A 1 1 no "$2" "$(echo "$1" | awk '{ printf "%.4f", $1 * 2000 / 60000 }')" train_epoch_wall
fi

# --- threads: interleaved repeats beside one busy process ---------------------
# 1 thread, 2 threads (measured choice), 2 threads with the choice off
# (SETTRAIN_ADAPT_THREADS=0: OpenMP as it comes), REPEATS times in turn.
if has threads; then
    competitor_on
    for rep in $(seq "${REPEATS:-3}"); do
        for net in ${THREAD_NETS:-1000,1000}; do
            for mode in 1 2 2fixed; do
                t=${mode%fixed}
                echo "bench: threads $net m 1 $mode beside a busy process ($rep)" >&2
                if [ "$mode" = 2fixed ]; then
                    set -- $(SETTRAIN_ADAPT_THREADS=0 e2e "$net" 1 "$t" "yes$rep$mode" 20 128 "$TRAIN_LIMIT" T)
                else
                    set -- $(e2e "$net" 1 "$t" "yes$rep$mode" 20 128 "$TRAIN_LIMIT" T)
                fi
                row threads "$(netname "$net")" 1 "$mode" "yes$rep" "$2" "$1" train_epoch
            done
        done
    done
    competitor_off
fi

# --- profile: perf over one-thread training steps, by phase ------------------
if has profile; then
    if ! command -v perf >/dev/null 2>&1 || ! perf record -q -e cpu-clock -o "$work/p.test" true >/dev/null 2>&1; then
        echo "bench: profile section skipped: perf (linux-perf) is missing or not allowed here" >&2
    else
        for net in $NETS; do
            nn=$(netname "$net")
            for m in $MOTIFS; do
                echo "bench: profile $net m $m (one thread, perf)" >&2
                BENCH_STEP_ONLY=1 OMP_NUM_THREADS=1 perf record -q -e cpu-clock -F 1000 -o "$work/p.data" \
                    "$BUILD/bench_cpu" "$net" 128 "$PROFILE_ROUNDS" "$m" > "$work/p.csv" 2>/dev/null
                set -- $(tail -n 1 "$work/p.csv" | awk -F, '{ print $2, $3 }')
                conn=$1 step=$2
                perf report -i "$work/p.data" --no-children --sort sym --stdio -q -g none 2>/dev/null |
                    awk -v step="$step" '
                    { pct = $1; sub(/%/, "", pct); sym = $NF
                      if (sym ~ /^(net_init|falloc|model_init|model_free|layer_build|st_malloc|_start|__libc)/ || $2 == "[k]") next
                      if (sym ~ /^fw_/) ph = "forward_sparse"
                      else if (sym ~ /^(bw_|fused_col|backward_delta|backward_grad)/) ph = "backward"
                      else if (sym ~ /^(sz_|sd_|sddmm_block_row|sparse_grad)/) ph = "sddmm"
                      else if (sym ~ /dropout|philox/) ph = "dropout"
                      else if (sym ~ /^(cpu_layer_forward_act|act_row|finish_rows)/) ph = "activation"
                      else if (sym ~ /^dense_/) ph = "dense_output"
                      else if (sym ~ /^(cpu_layer_update|momentum)/) ph = "update"
                      else ph = "other"
                      share[ph] += pct; tot += pct }
                    END { for (p in share) printf "%s %.6f\n", p, step * share[p] / tot }' > "$work/ph"
                while read -r ph t; do
                    row profile "$nn" "$m" 1 no "$conn" "$t" "step_$ph"
                done < "$work/ph"
                row profile "$nn" "$m" 1 no "$conn" "$step" step
            done
        done
    fi
fi

{
    echo "# settrain CPU comparison: cpu \"$cpu\" ($isa), cores $(nproc), commit $commit, $(date -u +%Y-%m-%dT%H:%M:%SZ), load average at start $(head -2 "$work/rows.csv" | tail -1 | awk -F, '{ print $NF }')"
    cat "$work/rows.csv"
} > "$out"

# --- the table ---------------------------------------------------------------
names=$(for n in $NETS; do netname "$n"; done | tr '\n' ' ')
torch_on=
if has torch && [ "${NO_TORCH:-0}" != 1 ]; then torch_on=torch; fi
awk -F, -v cpu="$cpu" -v isa="$isa" -v commit="$commit" -v motifs="$MOTIFS" -v nets="$names" \
    -v secs="$(echo " $SECTIONS " | sed 's/ torch / /') $torch_on" '
    function has(sec) { return index(" " secs " ", " " sec " ") > 0 } # sections that ran
    /^#/ || $1 == "section" { next }
    { key = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4 SUBSEP $5 SUBSEP $8; v[key] = $7
      if ($1 == "kernel") conn[$2 SUBSEP $3] = $6
      if (!($1 in lmin) || $9 < lmin[$1]) lmin[$1] = $9
      if ($9 > lmax[$1]) lmax[$1] = $9 }
    END {
        nm = split(motifs, M, " "); nn = split(nets, N, " ")
        printf "CPU: %s (%s), commit %s\n", cpu, isa, commit
        if (has("kernel")) {
        printf "\n1. One thread, process CPU time (tests/bench_cpu.c; load average %s-%s)\n", lmin["kernel"], lmax["kernel"]
        printf "%-20s %5s %8s %9s %7s %8s %8s %8s %7s %6s\n", "network", "motif", "conn", "train s/ep", "x m=1", "evolve s", "eval s/ep", "GFMA/s", "peak", "of peak"
        for (i = 1; i <= nn; i++) for (j = 1; j <= nm; j++) {
            k = "kernel" SUBSEP N[i] SUBSEP M[j] SUBSEP 1 SUBSEP "no" SUBSEP
            t = v[k "train_epoch"]; t1 = v["kernel" SUBSEP N[i] SUBSEP 1 SUBSEP 1 SUBSEP "no" SUBSEP "train_epoch"]
            printf "%-20s %5s %8d %9.3f %7.2f %8.4f %8.3f %8.1f %7.1f %5.0f%%\n", N[i], M[j], conn[N[i] SUBSEP M[j]], t, t / t1, v[k "evolve"], v[k "eval_epoch"], 3 * conn[N[i] SUBSEP M[j]] * 60000 / t / 1e9, v[k "peak_gfma_s"], 100 * v[k "peak_fraction"]
        }
        }
        if (has("e2e")) {
        printf "\n2. settrain, wall clock, s of training per epoch (load average %s-%s)\n", lmin["e2e"], lmax["e2e"]
        printf "%-20s %5s %9s %9s %7s %11s %11s %7s\n", "network", "motif", "quiet 1t", "quiet 2t", "2t/1t", "busy 1t", "busy 2t", "2t/1t"
        for (i = 1; i <= nn; i++) for (j = 1; j <= nm; j++) {
            b = "e2e" SUBSEP N[i] SUBSEP M[j] SUBSEP
            q1 = v[b 1 SUBSEP "no" SUBSEP "train_epoch"]; q2 = v[b 2 SUBSEP "no" SUBSEP "train_epoch"]
            c1 = v[b 1 SUBSEP "yes" SUBSEP "train_epoch"]; c2 = v[b 2 SUBSEP "yes" SUBSEP "train_epoch"]
            printf "%-20s %5s %9.3f %9.3f %7.2f %11.3f %11.3f %7.2f\n", N[i], M[j], q1, q2, q2 / q1, c1, c2, c2 / c1
        }
        }
        if (has("torch") && has("kernel")) {
        printf "\n3. PyTorch %s, one thread, s of training per epoch, against settrain m = 1 (section 1)\n", "(torch.sparse CSR; dense x mask)"
        printf "%-20s %10s %10s %10s %9s %9s\n", "network", "settrain", "torch CSR", "masked", "vs CSR", "vs masked"
        for (i = 1; i <= nn; i++) {
            s = v["kernel" SUBSEP N[i] SUBSEP 1 SUBSEP 1 SUBSEP "no" SUBSEP "train_epoch"]
            c = v["torch" SUBSEP N[i] SUBSEP 1 SUBSEP 1 SUBSEP "no" SUBSEP "train_epoch_csr"]
            d = v["torch" SUBSEP N[i] SUBSEP 1 SUBSEP 1 SUBSEP "no" SUBSEP "train_epoch_masked"]
            if (c != "") printf "%-20s %10.3f %10.3f %10.3f %8.1fx %8.1fx\n", N[i], s, c, d, c / s, d / s
        }
        }
        if (has("ref")) {
        printf "\n4. Reference SET code (measured beside settrain on this machine, one thread) vs settrain, one thread, CPU time\n"
        a = v["ref" SUBSEP "A" SUBSEP 1 SUBSEP 1 SUBSEP "no" SUBSEP "train_epoch"]
        aw = v["ref" SUBSEP "A" SUBSEP 1 SUBSEP 1 SUBSEP "no" SUBSEP "train_epoch_wall"]
        bb = v["ref" SUBSEP "B" SUBSEP 1 SUBSEP 1 SUBSEP "no" SUBSEP "train_epoch"]
        printf "A 784-1000-1000-1000-10 eps 13 batch 40, 2000 samples: settrain %.4f s, reference 0.70-0.93 s: %.0f-%.0fx\n", a, 0.70 / a, 0.93 / a
        printf "B 784-3000-3000-3000-10 eps 13 batch 40, 60000 samples: settrain %.3f s, reference 63-94 s: %.0f-%.0fx\n", bb, 63 / bb, 94 / bb
        printf "(A with settrain train --threads 1, wall clock, load average %s: %.4f s)\n", lmax["ref"], aw
        }
        if (has("threads")) {
        printf "\n5. Beside one busy process, m = 1, wall clock, s of training per epoch, runs in turn (load average %s-%s)\n", lmin["threads"], lmax["threads"]
        printf "%-20s %4s %9s %9s %12s %7s %12s\n", "network", "rep", "1 thread", "2 threads", "2, choice off", "2t/1t", "off/1t"
        for (i = 1; i <= nn; i++) for (r = 1; r <= 20; r++) {
            b = "threads" SUBSEP N[i] SUBSEP 1 SUBSEP
            t1 = v[b 1 SUBSEP "yes" r SUBSEP "train_epoch"]; t2 = v[b 2 SUBSEP "yes" r SUBSEP "train_epoch"]
            tf = v[b "2fixed" SUBSEP "yes" r SUBSEP "train_epoch"]
            if (t1 != "") printf "%-20s %4d %9.3f %9.3f %12.3f %7.2f %12.2f\n", N[i], r, t1, t2, tf, t2 / t1, tf / t1
        }
        }
        if (has("profile") && v["profile" SUBSEP N[1] SUBSEP M[1] SUBSEP 1 SUBSEP "no" SUBSEP "step"] != "") {
        printf "\n6. Where a one-thread training step goes (perf, cpu-clock; ms a step, batch 128; load average %s-%s)\n", lmin["profile"], lmax["profile"]
        np = split("forward_sparse backward sddmm dropout activation dense_output update other", P, " ")
        printf "%-20s %5s %7s", "network", "motif", "step"
        for (p = 1; p <= np; p++) printf " %9s", substr(P[p], 1, 9)
        printf "\n"
        for (i = 1; i <= nn; i++) for (j = 1; j <= nm; j++) {
            b = "profile" SUBSEP N[i] SUBSEP M[j] SUBSEP 1 SUBSEP "no" SUBSEP
            printf "%-20s %5s %7.3f", N[i], M[j], 1000 * v[b "step"]
            for (p = 1; p <= np; p++) printf " %9.3f", 1000 * v[b "step_" P[p]]
            printf "\n"
        }
        printf "(backward: for m = 1 the hidden layers weight gradient too, so its sddmm is the first layers alone)\n"
        }
    }' "$out" | tee "$work/table.txt"
cp "$work/table.txt" "${out%.csv}.txt"
echo "written: $out ${out%.csv}.txt"
