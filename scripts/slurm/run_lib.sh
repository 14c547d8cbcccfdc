# shellcheck shell=sh
# run_lib.sh: shell functions shared by train.sbatch, sweep.sbatch and
# submit_sweep.sh (sourced, not run): the run table parser, the command that
# starts or resumes a run folder, and the supervisor that runs settrain in
# the background, forwards Slurm's warning signal to it and requeues the job
# once settrain has written its checkpoint (exit code 3).
#
# Usage (from a script that has changed to the repository root):
#   . "$root/scripts/slurm/run_lib.sh"
#   st_table_rows TABLE            # "LINE<TAB>DATA<TAB>MOTIF<TAB>SEED<TAB>OPTIONS" per run
#   st_run_task NAME RUN_DIR DRY_RUN [settrain train options...]
# Environment (all optional):
#   SETTRAIN          the binary (default build/settrain; the scripts run
#                     from the repository root)
#   CHECKPOINT_EVERY  epochs between checkpoints (default 10)
#   BACKEND           settrain --backend (default gpu: a GPU job must not
#                     quietly train on the CPU)
#   MAX_RESTARTS      requeue at most this many times (default 100)
#   LAUNCHER          the MPI launcher of a job with several tasks (default
#                     srun; set, it is used for one task too)
# POSIX sh; `set -eu` is the caller's.

SETTRAIN=${SETTRAIN:-build/settrain}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-10}
BACKEND=${BACKEND:-gpu}
MAX_RESTARTS=${MAX_RESTARTS:-100}

st_say() {
    echo "$st_name: $(date '+%Y-%m-%d %H:%M:%S'): $*"
}

st_die() {
    echo "$st_name: error: $*" >&2
    exit 1
}

# Print the arguments as one line of shell words, quoted where needed, so
# that the printed command can be pasted back into a shell.
st_quote() {
    out=""
    for a in "$@"; do
        case "$a" in
        "" | *[!A-Za-z0-9_./,:=+@%-]*)
            a="'$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;;
        esac
        out="${out:+$out }$a"
    done
    printf '%s\n' "$out"
}

# st_is_uint TEXT: true when TEXT is a non-negative decimal integer.
st_is_uint() {
    case "$1" in
    "" | *[!0-9]*) return 1 ;;
    esac
    return 0
}

# st_table_rows TABLE: one line per run of the table, in order, as
# "LINE<TAB>DATA<TAB>MOTIF<TAB>SEED<TAB>OPTIONS" (LINE: the line number in the
# file). Blank lines and lines starting with # are skipped; columns are
# separated by tabs or spaces and OPTIONS is the rest of the line. A
# malformed line stops with an error naming it.
st_table_rows() {
    [ -f "$1" ] || st_die "$1: no such run table"
    awk -v table="$1" '
        { sub(/\r$/, "") }
        /^[ \t]*$/ || /^[ \t]*#/ { next }
        {
            if (NF < 3 || $2 !~ /^[1-9][0-9]*$/ || $3 !~ /^[0-9]+$/) {
                printf "%s:%d: expected DATA MOTIF SEED [OPTIONS] (motif >= 1, seed >= 0): %s\n",
                    table, NR, $0 > "/dev/stderr"
                bad = 1
                exit 1
            }
            opts = $0
            sub(/^[ \t]*[^ \t]+[ \t]+[^ \t]+[ \t]+[^ \t]+[ \t]*/, "", opts)
            sub(/[ \t]+$/, "", opts)
            printf "%d\t%s\t%s\t%s\t%s\n", NR, $1, $2, $3, opts
        }
        END { if (bad) exit 1 }' "$1"
}

# st_run_name DATA MOTIF SEED OPTIONS: the run folder's name, from the row's
# content (so that editing other rows never renames a run):
# <data file stem>_m<motif>_s<seed>[_<options as a slug>].
st_run_name() {
    stem=$(basename "$1")
    stem=${stem%.h5}
    slug=$(printf '%s' "$4" | sed -e 's/--//g' -e 's/[^A-Za-z0-9.]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')
    printf '%s_m%s_s%s%s\n' "$stem" "$2" "$3" "${slug:+_$slug}"
}

# st_wait_child PID: wait for PID while the traps below may interrupt wait;
# returns PID's exit status.
st_wait_child() {
    while :; do
        r=0
        wait "$1" || r=$?
        [ "$r" -gt 128 ] || return "$r"
        # A status above 128 is an interrupted wait (the child runs on) or
        # the child's own death by a signal.
        if kill -0 "$1" 2>/dev/null; then
            continue
        fi
        r2=0
        wait "$1" || r2=$?
        # 127: the status was already collected by the first wait.
        if [ "$r2" -eq 127 ]; then return "$r"; fi
        return "$r2"
    done
}

# st_forward SIGNAL: the trap action: pass the signal on to settrain (or,
# when it arrives before settrain started, keep it for st_run_task).
st_forward() {
    if [ -z "$st_child" ]; then
        st_pending=$1
        return 0
    fi
    st_signalled=$1
    st_say "got SIG$1: asking settrain (pid $st_child) to finish the batch, checkpoint and exit"
    kill -s "$1" "$st_child" 2>/dev/null || true
}

# st_run_task NAME RUN_DIR DRY_RUN [settrain train options...]: start the run
# in RUN_DIR with the options, or resume it when RUN_DIR holds a checkpoint;
# DRY_RUN=1 prints the command instead. Under Slurm settrain runs in the
# background with USR1, TERM and INT forwarded to it; when it exits with 3
# (interrupted, checkpoint written), or was killed by a forwarded signal
# before it could handle it, the job is requeued. Returns settrain's exit
# code.
st_run_task() {
    st_name=$1
    dir=$2
    dry=$3
    shift 3
    if [ -f "$dir/run.json" ] && grep -q '"status": *"finished"' "$dir/run.json"; then
        if [ "$dry" = 1 ]; then
            echo "# already finished: $dir (nothing to run)"
        else
            st_say "$dir already finished (run.json); nothing to do"
        fi
        return 0
    fi
    # One OpenMP thread per CPU Slurm gave the task (settrain's default is
    # every core of the node, which oversubscribes a shared node).
    threads=""
    if [ -n "${SLURM_CPUS_PER_TASK:-}" ] && st_is_uint "$SLURM_CPUS_PER_TASK"; then
        threads=$SLURM_CPUS_PER_TASK
    fi
    if [ -f "$dir/checkpoint.h5" ]; then
        set -- "$SETTRAIN" train --resume "$dir" --backend "$BACKEND" \
            --checkpoint-every "$CHECKPOINT_EVERY" ${threads:+--threads "$threads"}
    else
        if [ -e "$dir/metrics.csv" ]; then
            # Killed before its first checkpoint: nothing to resume from.
            stale="$dir.stale-$(date +%Y%m%d-%H%M%S)"
            if [ "$dry" = 1 ]; then
                echo "# $dir holds metrics.csv but no checkpoint.h5: it would be moved to $dir.stale-<time>" >&2
            else
                st_say "$dir holds metrics.csv but no checkpoint.h5 (killed before its first checkpoint): moving it to $stale and starting again"
                mv "$dir" "$stale"
            fi
        fi
        set -- "$SETTRAIN" train --out "$dir" --backend "$BACKEND" \
            --checkpoint-every "$CHECKPOINT_EVERY" ${threads:+--threads "$threads"} "$@"
    fi
    # Several tasks (sbatch -n N / --ntasks-per-node): one MPI rank each,
    # started by LAUNCHER (default srun, which passes the signals on to
    # every rank; e.g. LAUNCHER="srun --mpi=pmix" or "mpirun").
    if [ "${SLURM_NTASKS:-1}" -gt 1 ] 2>/dev/null || [ -n "${LAUNCHER:-}" ]; then
        # LAUNCHER split into words on purpose.
        # shellcheck disable=SC2086
        set -- ${LAUNCHER:-srun} "$@"
    fi
    if [ "$dry" = 1 ]; then
        st_quote "$@"
        return 0
    fi

    [ -x "$SETTRAIN" ] || st_die "$SETTRAIN is missing: run make in $(pwd) first (or set SETTRAIN)"
    st_say "job ${SLURM_JOB_ID:-?} on $(hostname), restart ${SLURM_RESTART_COUNT:-0}: $(st_quote "$@")"
    st_child=""
    st_pending=""
    st_signalled=""
    trap 'st_forward USR1' USR1
    trap 'st_forward TERM' TERM
    trap 'st_forward INT' INT
    "$@" &
    st_child=$!
    if [ -n "$st_pending" ]; then
        st_forward "$st_pending"
    fi
    rc=0
    st_wait_child "$st_child" || rc=$?
    trap - USR1 TERM INT
    why=""
    case "$rc" in
    0) st_say "settrain finished $dir" ;;
    3) why="settrain stopped with a checkpoint in $dir" ;;
    *)
        if [ "$rc" -gt 128 ] && [ -n "$st_signalled" ]; then
            # settrain handles the signals once its data are loaded; one that
            # came earlier killed it: nothing was lost since the last checkpoint.
            why="settrain was killed by SIG$st_signalled while starting (exit $rc); it continues from its last checkpoint"
        else
            st_say "settrain failed with exit code $rc (see above); not requeueing"
        fi
        ;;
    esac
    if [ -n "$why" ]; then
        restarts=${SLURM_RESTART_COUNT:-0}
        if [ "$restarts" -ge "$MAX_RESTARTS" ]; then
            st_say "$why; not requeueing: $restarts restarts reached MAX_RESTARTS=$MAX_RESTARTS"
        else
            st_say "$why: requeueing job $SLURM_JOB_ID"
            scontrol requeue "$SLURM_JOB_ID" ||
                st_say "scontrol requeue failed (a cancelled job is not requeued); resubmit later: the run continues from $dir/checkpoint.h5"
        fi
    fi
    return "$rc"
}
