#!/bin/sh
# test_slurm_real.sh: the Slurm scripts against a real Slurm: a one-node
# cluster of Debian's slurmctld, slurmd and munged on this machine
# (scripts/slurm/local_cluster.sh; started here when it is not running and
# stopped again at the end). The project's own scripts/slurm/*.sbatch are
# submitted with sbatch:
#  1. requeue: a run longer than its 1-minute time limit. Slurm sends USR1
#     (--signal=B:USR1@59: at its first time-limit check, every 30 s),
#     train.sbatch passes it on, settrain checkpoints and exits with 3, the
#     job requeues itself, and later starts resume until the run finishes.
#     Its metrics.csv must equal an uninterrupted run's (all but the timing
#     columns), with every epoch once.
#  2. sweep: a job array over a 3-line run table (submit_sweep.sh): every
#     task completes, and a task's metrics equal the same run made directly.
#  3. mpi: a two-rank run of train.sbatch inside one two-task allocation
#     (srun starts the ranks), whose metrics equal the one-rank run's;
#     skipped when the build has no MPI.
# The job options the scripts' #SBATCH lines give for a GPU node are
# overridden on the command line for this 2-CPU machine (--gres=none -c 1
# --mem=1G), as a site's would be. Tiny data (lung_small, 49 training
# samples); about 2-3 minutes on 2 cores.
# Skipped, with a visible message, only when the daemons cannot start here
# (packages missing: sh scripts/install_deps.sh) or the shared data is absent.
# Prints "test_slurm_real: N passed, N failed, N skipped"; exits 1 on a failure.
# Usage: BUILD=build sh tests/test_slurm_real.sh   (from the repository root)
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
BIN=${BUILD:-build}/settrain
case "$BIN" in /*) ;; *) BIN=$root/$BIN ;; esac
shared=${ST_SHARED_DATA:-../shared/data}
SUITE=test_slurm_real
# shellcheck source=tests/check_lib.sh
. "$(dirname "$0")/check_lib.sh"
# Nothing from a surrounding Slurm job may leak into the tests.
unset SLURM_JOB_ID SLURM_ARRAY_TASK_ID SLURM_SUBMIT_DIR SLURM_RESTART_COUNT SLURM_CPUS_PER_TASK \
    SLURM_NTASKS SETTRAIN_ROOT RUNS_ROOT CHECKPOINT_EVERY BACKEND SETTRAIN MAX_RESTARTS \
    MAX_PARALLEL || true

skip_all() {
    for c in "requeue-resume run" "job array sweep" "two-rank MPI run"; do
        skipped "$c: $1"
    done
    summary
    exit 0
}

[ -x "$BIN" ] || { bad "$BIN exists (run make first)"; summary; exit 1; }
[ -f "$shared/lung_small.mat" ] || skip_all "$shared/lung_small.mat is absent"

tmp=$(mktemp -d /tmp/settrain-slurm-real.XXXXXX)
jobs=""
started=0
cleanup() {
    for j in $jobs; do scancel "$j" 2>/dev/null || true; done
    if [ "$started" = 1 ]; then sh scripts/slurm/local_cluster.sh stop >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One test at a time uses the local cluster (two CPUs): a second `make test`
# on the machine waits here.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${SETTRAIN_SLURM_DIR:-/tmp/settrain-slurm-$(id -u)}.lock"
    flock 9
fi

if ! sh scripts/slurm/local_cluster.sh status >/dev/null 2>&1; then
    # (9>&-: the daemons must not inherit the lock)
    if ! out=$(sh scripts/slurm/local_cluster.sh start 2>&1 9>&-); then
        printf '%s\n' "$out" | sed 's/^/    /'
        skip_all "the Slurm daemons cannot start here (see above; sh scripts/install_deps.sh installs them)"
    fi
    started=1
fi
eval "$(sh scripts/slurm/local_cluster.sh env)"
export SLURM_CONF
echo "    cluster: $(sinfo -h -o '%P %D nodes %C CPUs(A/I/O/T) %T' | head -n 1) ($SLURM_CONF)"

# Job options for this machine instead of the scripts' GPU-node defaults.
node_opts="--gres=none --mem=1G"
export BACKEND=cpu SETTRAIN="$BIN"

# job_state JOB: the job's state (of every task of an array, sorted, unique).
job_state() {
    scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | sort -u | tr '\n' ' ' |
        sed 's/ $//'
}
# wait_job JOB SECONDS: until no task of JOB is pending, running or requeued.
wait_job() {
    i=0
    while [ $i -lt "$2" ]; do
        case " $(job_state "$1") " in
        *" PENDING "* | *" RUNNING "* | *" REQUEUED "* | *" COMPLETING "* | *" CONFIGURING "* | \
            *" REQUEUE_HOLD "* | *" REQUEUE_FED "* | *" SUSPENDED "* | "  ") ;;
        *) return 0 ;;
        esac
        if ! scontrol ping 2>/dev/null | grep -q 'is UP'; then
            echo "    the Slurm controller stopped answering"
            return 1
        fi
        sleep 1
        i=$((i + 1))
    done
    return 1
}
# same_metrics A B: metrics.csv of two runs agree on every column but the
# four timings (6-9), row for row.
same_metrics() {
    sm_a=$(cut -d, -f1-5,10 "$1" 2>/dev/null) && sm_b=$(cut -d, -f1-5,10 "$2" 2>/dev/null) &&
        [ -n "$sm_a" ] && [ "$sm_a" = "$sm_b" ]
}
epochs_of() {
    tail -n +2 "$1" 2>/dev/null | cut -d, -f1 | tr '\n' ' ' | sed 's/ $//'
}
show_job_log() {
    echo "    job log $1:"
    sed 's/^/      /' "$1" 2>/dev/null | tail -n "${2:-30}"
}

"$BIN" prepare mat --in "$shared/lung_small.mat" --out "$tmp/lung.h5" >/dev/null

# --- 1. requeue: time limit shorter than the run --------------------------
# Slurm checks time limits every 30 s, so a start gets its signal 1-30 s
# after it began: the run must train for longer than that. Its length in
# epochs comes from a short calibration run: about 40 s of training on one
# core at the fastest epoch time the calibration saw (at least 300 epochs):
# at its mean, a calibration slowed by other work made a run that then
# finished before the first signal when the machine became quieter.
net="--hidden 2000,2000 --batch 8 --seed 3"
# shellcheck disable=SC2086
"$BIN" train --data "$tmp/lung.h5" $net --epochs 20 --threads 1 --out "$tmp/calib" --quiet \
    >/dev/null 2>&1 || bad "the calibration run"
epochs=$(awk -F, 'NR > 2 && ($9 < s || !n) { s = $9 } NR > 2 { n++ } END { e = (n && s > 0) ? int(40 / s) : 300;
    if (e < 300) e = 300; if (e > 4000) e = 4000; print e }' "$tmp/calib/metrics.csv" 2>/dev/null)
req_opts="$net --epochs ${epochs:-300}"
run=$tmp/runs/requeue
# shellcheck disable=SC2086
j=$(CHECKPOINT_EVERY=100 sbatch --parsable -J st-requeue $node_opts -c 1 --time=1 \
    --signal=B:USR1@59 --output="$tmp/requeue.out" scripts/slurm/train.sbatch "$run" \
    --data "$tmp/lung.h5" $req_opts)
jobs="$jobs $j"
echo "    requeue: job $j submitted ($epochs epochs)"

# --- 2. sweep: a job array over a 3-line table (runs meanwhile) -----------
table=$tmp/table.tsv
printf '%s\n' "# three small runs" \
    "$tmp/lung.h5	1	1	--hidden 100,100 --epochs 6 --batch 8" \
    "" \
    "$tmp/lung.h5	1	2	--hidden 100,100 --epochs 6 --batch 8" \
    "$tmp/lung.h5	1	3	--hidden 64,64 --epochs 4 --batch 16" >"$table"
# shellcheck disable=SC2086
arr=$(RUNS_ROOT=$tmp/sweep sh scripts/slurm/submit_sweep.sh "$table" -- --parsable -J st-sweep \
    $node_opts -c 1 --time=5 --output="$tmp/sweep-%A_%a.out" | tail -n 1)
jobs="$jobs $arr"
echo "    sweep: array job $arr submitted"

# The uninterrupted run of case 1, while the jobs run.
# shellcheck disable=SC2086
"$BIN" train --data "$tmp/lung.h5" $req_opts --threads 1 --out "$tmp/ref-requeue" --quiet \
    >"$tmp/ref-requeue.log" 2>&1 || bad "the uninterrupted run" "$(tail -n 3 "$tmp/ref-requeue.log")"

if wait_job "$j" 300; then
    expect "requeue: the job completed (after its time limit)" "COMPLETED" "$(job_state "$j")"
else
    bad "requeue: the job finished within 300 s" "state: $(job_state "$j")"
    scancel "$j" 2>/dev/null || true
fi
restarts=$(scontrol show job "$j" 2>/dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
signals=$(grep -c 'got SIGUSR1' "$tmp/requeue.out" 2>/dev/null || true)
resumes=$(grep -c "restart [1-9][0-9]*: .* train --resume $run " "$tmp/requeue.out" 2>/dev/null || true)
if [ "${restarts:-0}" -ge 1 ] && [ "$signals" -ge 1 ] && [ "$resumes" = "$restarts" ]; then
    ok "requeue: Slurm signalled it $signals time(s), it requeued itself $restarts time(s), every restart resumed"
else
    bad "requeue: signalled, requeued and resumed at least once" \
        "Restarts=$restarts, signals in the log: $signals, resumes: $resumes"
    show_job_log "$tmp/requeue.out"
fi
if same_metrics "$run/metrics.csv" "$tmp/ref-requeue/metrics.csv"; then
    ok "requeue: metrics.csv equals the uninterrupted run's (non-timing columns)"
else
    bad "requeue: metrics.csv equals the uninterrupted run's" \
        "$(diff "$tmp/ref-requeue/metrics.csv" "$run/metrics.csv" 2>&1 | head -n 6)"
fi
expect "requeue: every epoch 1..$epochs once" "$(seq 1 "$epochs" | tr '\n' ' ' | sed 's/ $//')" \
    "$(epochs_of "$run/metrics.csv")"
if grep -q '"status": *"finished"' "$run/run.json" 2>/dev/null; then
    ok "requeue: run.json says finished"
else
    bad "requeue: run.json says finished" "$(grep '"status"' "$run/run.json" 2>&1)"
fi

if wait_job "$arr" 180; then
    st=$(job_state "$arr")
else
    st="unfinished: $(job_state "$arr")"
    scancel "$arr" 2>/dev/null || true
fi
ntasks=$(scontrol show job "$arr" 2>/dev/null | grep -c 'JobState=COMPLETED' || true)
if [ "$st" = COMPLETED ] && [ "$ntasks" = 3 ]; then
    ok "sweep: all 3 array tasks completed"
else
    bad "sweep: all 3 array tasks completed" "states: $st ($ntasks completed)"
    for f in "$tmp"/sweep-*.out; do show_job_log "$f" 10; done
fi
n_done=0
for d in "$tmp"/sweep/*; do
    grep -q '"status": *"finished"' "$d/run.json" 2>/dev/null && n_done=$((n_done + 1))
done
expect "sweep: 3 finished run folders, named from their lines" \
    "3 lung_m1_s1_hidden-100-100-epochs-6-batch-8 lung_m1_s2_hidden-100-100-epochs-6-batch-8 lung_m1_s3_hidden-64-64-epochs-4-batch-16" \
    "$n_done $(cd "$tmp/sweep" 2>/dev/null && printf '%s ' * | sed 's/ $//')"
"$BIN" train --data "$tmp/lung.h5" --seed 3 --hidden 64,64 --epochs 4 --batch 16 --threads 1 \
    --out "$tmp/ref-sweep" --quiet >/dev/null 2>&1 || true
if same_metrics "$tmp/sweep/lung_m1_s3_hidden-64-64-epochs-4-batch-16/metrics.csv" \
    "$tmp/ref-sweep/metrics.csv"; then
    ok "sweep: task 2's metrics equal the same run made directly"
else
    bad "sweep: task 2's metrics equal the same run made directly"
fi

# --- 3. two ranks in one allocation ------------------------------------------
if "$BIN" --version 2>/dev/null | grep -q '^mpi: yes' && [ -f "$shared/TOX-171.mat" ]; then
    # TOX-171 split 90/10 (153 training samples), batch 128: two chunks of
    # the exact reduction, one per rank.
    "$BIN" prepare mat --in "$shared/TOX-171.mat" --out "$tmp/tox.h5" --test-fraction 0.1 >/dev/null
    mpi_opts="--hidden 200,200 --epochs 8 --batch 128 --seed 5"
    # (mpirun as root; Open MPI's own allocations are not ours to leak-check)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    run=$tmp/runs/mpi2
    # shellcheck disable=SC2086
    m=$(sbatch --parsable -J st-mpi $node_opts -n 2 -c 1 --time=5 --output="$tmp/mpi.out" \
        scripts/slurm/train.sbatch "$run" --data "$tmp/tox.h5" $mpi_opts)
    jobs="$jobs $m"
    # shellcheck disable=SC2086
    mpirun -np 1 "$BIN" train --data "$tmp/tox.h5" $mpi_opts --threads 1 --out "$tmp/ref-mpi" \
        --quiet >/dev/null 2>&1 || bad "the one-rank run (mpirun -np 1)"
    if wait_job "$m" 180; then
        expect "mpi: the two-task job completed" "COMPLETED" "$(job_state "$m")"
    else
        bad "mpi: the two-task job finished within 180 s" "state: $(job_state "$m")"
        scancel "$m" 2>/dev/null || true
    fi
    expect "mpi: run.json records world size 2 and each rank's host" "2 [\"$(hostname -s)\", \"$(hostname -s)\"]" \
        "$(sed -n 's/.*"world_size": *\([0-9]*\).*"rank_hosts": *\(\[[^]]*\]\).*/\1 \2/p' "$run/run.json" 2>/dev/null | head -n 1)"
    if same_metrics "$run/metrics.csv" "$tmp/ref-mpi/metrics.csv"; then
        ok "mpi: srun's two ranks give metrics.csv equal to mpirun -np 1's (non-timing columns)"
    else
        bad "mpi: two ranks' metrics.csv equals the one-rank run's" \
            "$(diff "$tmp/ref-mpi/metrics.csv" "$run/metrics.csv" 2>&1 | head -n 6)"
        show_job_log "$tmp/mpi.out"
    fi
else
    skipped "two-rank MPI run: $BIN is built without MPI (--version has no 'mpi: yes') or $shared/TOX-171.mat is absent"
fi

summary
