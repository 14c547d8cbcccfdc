#!/bin/sh
# bench_scale.sh: how settrain's CPU backend scales with the network's width, from three
# hidden layers of 3,000 neurons up to three of 1,000,000 (about 110M connections).
#
# For each network, one run of EPOCHS epochs (default 2: two epochs of training with one SET
# evolution between them, then the final checkpoint) on the first SAMPLES (default 2000)
# Fashion-MNIST training images, evaluated on the first TEST_SAMPLES (default 1000) test
# images, epsilon 20, batch 128, with each thread count of THREADS.
# Each row of the table gives:
#   connections        the network's connections (run.json)
#   train_s            seconds of training per epoch (the mean over the epochs after the first)
#   ns_conn_sample     train_s / (connections x samples): the cost of one connection for one
#                      sample (its forward, backward and gradient multiply-adds)
#   vs_smallest        ns_conn_sample / that of the smallest network in the same run and
#                      thread count (the issue's goal: at most 2 at 3 x 1M)
#   evolve_s, ns_conn_evolve   one SET evolution, in all and per connection
#   ckpt_s             the final checkpoint's write (run.json checkpoint_s_last)
#   estimate_gib, peak_gib, peak_vs_estimate   the memory settrain printed before allocating
#                      (run.json memory_estimate_bytes) and the process's peak resident memory
#                      (run.json peak_rss_bytes)
# Writes results/bench/scale-<date>-<commit>.csv (its first line: CPU, cores, memory, commit,
# load average) and prints the table.
# Then the memory floor (PARTS: "train gather" by default, either alone): tests/bench_gather.c
# times the kernels' access pattern alone, a 512-byte row of activations gathered and added
# into an output row with 512-bit FMAs, for a matrix as wide as each network's first hidden
# layer: at random (an Erdős–Rényi layer, with and without the kernels' prefetch), in storage
# order (the best locality a reordering of neurons or connections could give), and a plain
# streaming read. Each m = 1 connection gathers two such rows a training step (the forward's
# activation row, the backward's delta row), so 2 x the random gather's ns is the floor under
# ns_conn_sample x BATCH, whatever the kernels do around the gathers; the table prints both,
# and the floor's own growth from the smallest width, beside the training's.
# results/bench/scale-<date>-<commit>-gather.csv holds those rows. A network that does not fit is refused by settrain's
# memory check before anything large is allocated; its row says so.
#
# Usage: scripts/bench_scale.sh [DATA.h5]   (default data/fmnist.h5; made if absent)
# Environment: NETS (hidden sizes, blank-separated; default
#   "3000,3000,3000 30000,30000,30000 100000,100000,100000 300000,300000,300000 1000000
#    1000000,1000000,1000000"), THREADS (default "1"), EPOCHS (2), SAMPLES (2000),
#   TEST_SAMPLES (1000), EPSILON (20), BATCH (128), MOTIF (1: the motif size of every run; the
#   widths must be multiples of it), BIN (build/settrain), PARTS.
# The largest network takes about 12 GiB and 10-20 minutes per thread count on one core.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/settrain}
DATA=${1:-data/fmnist.h5}
NETS=${NETS:-"3000,3000,3000 30000,30000,30000 100000,100000,100000 300000,300000,300000 1000000 1000000,1000000,1000000"}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-2}
SAMPLES=${SAMPLES:-2000}
EPSILON=${EPSILON:-20}
BATCH=${BATCH:-128}
MOTIF=${MOTIF:-1}
[ -x "$BIN" ] || make NVCC=
[ -f "$DATA" ] || "$BIN" prepare fmnist --out "$DATA"
TEST_SAMPLES=${TEST_SAMPLES:-1000}
PARTS=${PARTS:-"train gather"}
has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include 2>/dev/null || commit="$commit-dirty"
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
stamp=$(date +%Y%m%d-%H%M%S)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d /tmp/settrain_scale_XXXXXX)
trap 'rm -rf "$work"' EXIT
out=results/bench/scale-$stamp-$commit.csv
mkdir -p results/bench

if has train; then
# The runs read a copy of DATA cut to its first SAMPLES training and TEST_SAMPLES test images:
# each epoch's evaluation goes over the whole test split, which at 3 x 1M would take longer
# than the training being measured. The copy is made with Debian's h5py (installed here if
# missing: this script's own need, not the build's or the tests').
PY=/usr/bin/python3
if ! "$PY" -c 'import h5py' 2>/dev/null; then
    echo "bench_scale: installing python3-h5py (apt-get) to cut the data file" >&2
    apt-get install -y python3-h5py >/dev/null 2>&1 || { echo "bench_scale: error: python3-h5py is needed (apt-get install python3-h5py)" >&2; exit 1; }
fi
"$PY" - "$DATA" "$work/data.h5" "$SAMPLES" "$TEST_SAMPLES" <<'EOF'
import sys, h5py
src, dst, ntr, nte = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    for k, v in f.attrs.items():
        g.attrs[k] = v
    for split, n in (("train", ntr), ("test", nte)):
        if f[split + "/X"].shape[0] < n:
            sys.exit("bench_scale: error: %s has %d %s samples, fewer than %d" % (src, f[split + "/X"].shape[0], split, n))
        g.create_dataset(split + "/X", data=f[split + "/X"][:n])
        g.create_dataset(split + "/y", data=f[split + "/y"][:n])
EOF

# row NET THREADS: one run, one CSV line on stdout
row() {
    net=$1; th=$2; netx=$(echo "$net" | tr ',' 'x'); dir=$work/run-$th-$netx
    ld=$(cut -d' ' -f1 /proc/loadavg)
    echo "bench_scale: $net hidden, $th thread(s), load $ld ..." >&2
    if ! "$BIN" train --data "$work/data.h5" --hidden "$net" --epsilon "$EPSILON" --batch "$BATCH" \
            --epochs "$EPOCHS" --threads "$th" --motif "$MOTIF" --backend cpu --quiet \
            --out "$dir" >"$work/out.txt" 2>"$work/err.txt"; then
        why=$(tail -1 "$work/err.txt" | tr ',"' ';'"'")
        echo "$netx,$th,,,,,,,,,,,$ld,\"$why\""
        return 0
    fi
    python3 - "$dir" "$netx" "$th" "$SAMPLES" "$ld" <<'EOF'
import csv, json, sys
d, net, th, samples, ld = sys.argv[1:]
r = json.load(open(d + "/run.json"))
rows = list(csv.DictReader(open(d + "/metrics.csv")))
later = rows[1:] or rows
train_s = sum(float(x["t_train_s"]) for x in later) / len(later)
evo = [float(x["t_evolve_s"]) for x in rows[:-1]]
evolve_s = sum(evo) / len(evo) if evo else float("nan")
conn = int(r["connections"])
sparse = sum(l["connections"] for l in r["layers"] if not l["dense"])
est = r["memory_estimate_bytes"]["total"]
peak = r.get("peak_rss_bytes") or 0
g = 1024.0 ** 3
print("%s,%s,%d,%.4f,%.4f,,%.4f,%.1f,%.3f,%.3f,%.3f,%.3f,%s," % (
    net, th, conn, train_s, train_s / (conn * int(samples)) * 1e9, evolve_s,
    evolve_s / sparse * 1e9 if evo else float("nan"), r["checkpoint_s_last"],
    est / g, peak / g, peak / est if est else float("nan"), ld))
EOF
}

header="hidden,threads,connections,train_s,ns_conn_sample,vs_smallest,evolve_s,ns_conn_evolve,ckpt_s,estimate_gib,peak_gib,peak_vs_estimate,load1,note"
{
    echo "$header"
    for th in $THREADS; do
        for net in $NETS; do row "$net" "$th"; done
    done
} >"$work/raw.csv"
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# vs_smallest: the per-connection cost relative to the first network of the same thread count
awk -F, -v OFS=, 'NR == 1 { print; next }
    { if (!($2 in base) && $5 != "") base[$2] = $5
      if ($5 != "" && base[$2] > 0) $6 = sprintf("%.2f", $5 / base[$2]); print }' \
    "$work/raw.csv" >"$work/table.csv"
{
    echo "# settrain scale benchmark: cpu \"$cpu\", cores $(nproc), memory $mem, commit $commit, $(date -u +%Y-%m-%dT%H:%M:%SZ), samples $SAMPLES, test samples $TEST_SAMPLES, epsilon $EPSILON, batch $BATCH, motif $MOTIF, epochs $EPOCHS, load average $load0 at start and $load1 at the end"
    cat "$work/table.csv"
} >"$out"

echo
echo "Scale: epsilon $EPSILON, batch $BATCH, motif $MOTIF, $SAMPLES samples, $EPOCHS epochs; $cpu; load $load0 -> $load1"
awk -F, 'NR == 1 { next }
    BEGIN { printf "%-27s %3s %12s %9s %8s %6s %8s %7s %7s %8s %7s %6s  %s\n", "hidden", "thr", "connections",
                   "train_s", "ns/c/s", "x3k", "evolve_s", "ns/c_ev", "ckpt_s", "est_GiB", "peak", "p/est", "note" }
    { printf "%-27s %3s %12s %9s %8s %6s %8s %7s %7s %8s %7s %6s  %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14 }' \
    "$work/table.csv"
echo "wrote $out"
fi

if has gather; then
    # the memory floor: tests/bench_gather.c at each network's first hidden width
    ${CC:-cc} -O3 -march="${CPU_ARCH:-native}" -std=gnu99 -Wall -Wextra -o "$work/bench_gather" \
        tests/bench_gather.c
    widths=$(for net in $NETS; do echo "${net%%,*}"; done | awk '!seen[$0]++' | tr '\n' ' ')
    gout=results/bench/scale-$stamp-$commit-gather.csv
    gl0=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "bench_scale: memory floor at widths $widths..." >&2
    # shellcheck disable=SC2086
    "$work/bench_gather" $widths >"$work/gather.csv"
    {
        echo "# settrain scale benchmark, memory floor (tests/bench_gather.c, one thread, rows of 128 floats, 40 gathers an output row): cpu \"$cpu\", cores $(nproc), commit $commit, $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $gl0 at start and $(cut -d' ' -f1-3 /proc/loadavg) at the end"
        cat "$work/gather.csv"
    } >"$gout"
    echo
    echo "Memory floor: ns per gathered 512-byte row with its FMAs (one thread; x small: vs the smallest width)"
    # beside it, from the training table of this run (if any): the ns per connection and
    # training step (ns_conn_sample x BATCH) of the first network of two or more hidden
    # layers of that width (their hidden-to-hidden layers gather both rows) and 2 gathers' floor
    awk -F, -v batch="$BATCH" -v t="${work}/table.csv" '
        BEGIN { while ((getline l < t) > 0) { split(l, f, ","); if (f[5] != "" && f[1] ~ /x/) {
                    w = f[1]; sub(/x.*/, "", w); if (!(w in step)) step[w] = f[5] * batch } }
                printf "%-9s %9s %9s %8s %9s %8s %10s %7s  %s\n", "width", "matrix_MiB", "random", "x small",
                       "prefetch", "x small", "sequential", "stream", "settrain ns/connection/step vs 2 x prefetch"
        }
        NR == 1 { next }
        { if (NR == 2) { r0 = $4; p0 = $5 }
          s = ($1 in step) ? sprintf("%.1f vs %.1f (%.2fx)", step[$1], 2 * $5, step[$1] / (2 * $5)) : "-"
          printf "%-9s %9.1f %9.2f %8.2f %9.2f %8.2f %10.2f %5.1f GB/s  %s\n", $1, $2, $4, $4 / r0, $5, $5 / p0, $6, $7, s }' \
        "$work/gather.csv"
    echo "wrote $gout"
fi
