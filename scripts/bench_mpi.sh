#!/bin/sh
# bench_mpi.sh: what data-parallel training costs and moves on this machine.
# For each network it trains Fashion-MNIST (the first TRAIN_LIMIT samples)
# three ways: one plain process (the fused single-process path), mpirun -np 1
# and mpirun -np 2 (the chunked exact reduction, one rank per core), and
# records the mean epoch time (epochs 2..), the training part of it, the
# seconds per batch spent in MPI_Allreduce (waiting for the slower rank
# included), and the bytes reduced per batch (8 per gradient value: the
# reduction is in 64-bit fixed point). Checks that the N = 1 and N = 2 runs
# wrote the same metrics. Not a test: timings on a shared machine vary.
#
# Usage (from the repository root, after make):
#   sh scripts/bench_mpi.sh
# Environment: DATA (default data/fmnist.h5, prepared when missing), NETS
# (default "3000,3000,3000 10000,10000,10000"), EPOCHS (3), TRAIN_LIMIT
# (10000), BATCH (128), RANKS ("1 2"), THREADS (threads of the plain run and
# of each rank; default 1), BUILD (build).
# Writes results/bench/mpi-<host>-<commit>.csv and prints it as a table.
set -eu
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}/settrain
DATA=${DATA:-data/fmnist.h5}
NETS=${NETS:-"3000,3000,3000 10000,10000,10000"}
EPOCHS=${EPOCHS:-3}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
BATCH=${BATCH:-128}
RANKS=${RANKS:-"1 2"}
THREADS=${THREADS:-1}

die() {
    echo "bench_mpi: error: $*" >&2
    exit 1
}
[ -x "$BIN" ] || die "$BIN is missing: run make first"
"$BIN" --version | grep -q '^mpi: yes' || die "$BIN is built without MPI (apt-get install libopenmpi-dev; make)"
command -v mpirun >/dev/null 2>&1 || die "mpirun is not installed (apt-get install openmpi-bin)"
if [ ! -f "$DATA" ]; then
    mkdir -p "$(dirname "$DATA")"
    "$BIN" prepare fmnist --out "$DATA"
fi
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
host=$(hostname -s)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mkdir -p results/bench
csv=results/bench/mpi-$host-$commit.csv
tmp=$(mktemp -d /tmp/settrain-bench-mpi.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# json_num FILE KEY: the first number after "KEY": in FILE.
json_num() { sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -n 1; }

{
    echo "# bench_mpi.sh: $cpu, $(nproc) cores, commit $commit, $(date -u '+%Y-%m-%d %H:%M UTC'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# data $DATA, first $TRAIN_LIMIT samples, batch $BATCH, $EPOCHS epochs, $THREADS thread(s) per process"
    echo "network,connections,mode,ranks,mean_epoch_s,mean_train_s,reduce_s_per_batch,bytes_per_batch,batches"
} >"$csv"

for net in $NETS; do
    opts="--data $DATA --hidden $net --epochs $EPOCHS --batch $BATCH --train-limit $TRAIN_LIMIT --seed 1 --threads $THREADS --quiet --backend cpu"
    for mode in plain $RANKS; do
        out=$tmp/$net-$mode
        echo "bench_mpi: $net, $( [ "$mode" = plain ] && echo "one plain process" || echo "mpirun -np $mode")" >&2
        # shellcheck disable=SC2086
        if [ "$mode" = plain ]; then
            "$BIN" train $opts --out "$out" >"$out.log" 2>&1 || die "see $out.log"
            ranks=1
        else
            mpirun -np "$mode" --bind-to core "$BIN" train $opts --out "$out" >"$out.log" 2>&1 ||
                die "mpirun -np $mode failed: $(tail -n 3 "$out.log")"
            ranks=$mode
        fi
        conn=$(tail -n 1 "$out/metrics.csv" | cut -d, -f10)
        mean=$(json_num "$out/run.json" mean_epoch_s_excluding_first)
        train=$(awk -F, 'NR > 2 { s += $6; n++ } END { if (n) printf "%.4f", s / n }' "$out/metrics.csv")
        if [ "$mode" = plain ]; then
            red="" bytes="" nb=""
        else
            nb=$(json_num "$out/run.json" batches_reduced)
            red=$(awk -v t="$(json_num "$out/run.json" reduce_s_total)" -v n="$nb" 'BEGIN { if (n) printf "%.6f", t / n }')
            bytes=$(json_num "$out/run.json" reduce_bytes_per_batch)
        fi
        echo "$(echo "$net" | tr , -),$conn,$( [ "$mode" = plain ] && echo plain || echo mpi),$ranks,$mean,$train,$red,$bytes,$nb" >>"$csv"
    done
    # shellcheck disable=SC2086
    set -- $RANKS
    if [ $# -ge 2 ]; then
        a=$(cut -d, -f1-5,10 "$tmp/$net-$1/metrics.csv")
        b=$(cut -d, -f1-5,10 "$tmp/$net-$2/metrics.csv")
        [ "$a" = "$b" ] && echo "bench_mpi: $net: N = $1 and N = $2 wrote the same metrics" >&2 ||
            echo "bench_mpi: WARNING: $net: N = $1 and N = $2 metrics differ" >&2
    fi
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$csv"
echo "bench_mpi: wrote $csv" >&2
grep -v '^#' "$csv" | column -s, -t
