#!/bin/sh
# test_slurm.sh: tests of the Slurm scripts in scripts/slurm/ without Slurm:
# the dry runs (the array task -> table line mapping with comments and
# blank lines skipped, every task listed, an out-of-range or malformed task
# id refused, a malformed table refused, new run vs resume vs finished run),
# the refusal to run outside Slurm, submit_sweep.sh's --array range, the
# paper grid's composition, and the signal path with a stand-in settrain and
# scontrol: USR1 to the batch shell reaches settrain, whose exit code 3
# requeues the job, and the requeued job resumes; shellcheck when installed.
# Prints "test_slurm: N passed, N failed, N skipped"; exits 1 on a failure.
# Usage: sh tests/test_slurm.sh   (from the repository root; make test runs it)
set -eu

cd "$(dirname "$0")/.."
S=scripts/slurm
SUITE=test_slurm
# shellcheck source=tests/check_lib.sh
. "$(dirname "$0")/check_lib.sh"
tmp=$(mktemp -d /tmp/settrain-slurm-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# Nothing from a surrounding Slurm job may leak into the tests.
unset SLURM_JOB_ID SLURM_ARRAY_TASK_ID SLURM_SUBMIT_DIR SLURM_RESTART_COUNT SLURM_CPUS_PER_TASK \
    SLURM_NTASKS LAUNCHER \
    SETTRAIN_ROOT RUNS_ROOT CHECKPOINT_EVERY BACKEND SETTRAIN MAX_RESTARTS MAX_PARALLEL || true

# expect_has NAME TEXT NEEDLE
expect_has() {
    case "$2" in
    *"$3"*) ok "$1" ;;
    *) bad "$1" "expected to find: $3" "in: $2" ;;
    esac
}

# A table with comments, blank lines, CRLF, spaces and tabs.
table="$tmp/grid.tsv"
printf '%s\n' \
    "# a comment" \
    "" \
    "data/a.h5	1	1	--hidden 8,8 --epochs 3" \
    "   # an indented comment" \
    "	" \
    "data/b.h5 2 7" \
    "data/a.h5	4	3	--epochs 5 --lr 0.1" >"$table"
printf 'data/c.h5\t1\t2\t--epochs 2\r\n' >>"$table"

# task ID -> "TASK<tab>COMMAND" of sweep.sbatch --dry-run
sweep_dry() {
    SLURM_ARRAY_TASK_ID=$1 RUNS_ROOT="$tmp/runs" sh $S/sweep.sbatch --dry-run "$table"
}

out=$(sweep_dry 0)
expect "task 0 is the first run line (comments and blank lines skipped)" \
    "0	build/settrain train --out $tmp/runs/a_m1_s1_hidden-8-8-epochs-3 --backend gpu --checkpoint-every 10 --data data/a.h5 --motif 1 --seed 1 --hidden 8,8 --epochs 3" \
    "$out"
out=$(sweep_dry 1)
expect "task 1 skips an indented comment and a blank line; no options" \
    "1	build/settrain train --out $tmp/runs/b_m2_s7 --backend gpu --checkpoint-every 10 --data data/b.h5 --motif 2 --seed 7" \
    "$out"
out=$(sweep_dry 2)
expect_has "task 2 maps to the third run line" "$out" "--data data/a.h5 --motif 4 --seed 3 --epochs 5 --lr 0.1"
out=$(sweep_dry 3)
expect "task 3: a CRLF line loses its carriage return" \
    "3	build/settrain train --out $tmp/runs/c_m1_s2_epochs-2 --backend gpu --checkpoint-every 10 --data data/c.h5 --motif 1 --seed 2 --epochs 2" \
    "$out"

out=$(RUNS_ROOT="$tmp/runs" sh $S/sweep.sbatch --dry-run "$table" | cut -f 1 | tr '\n' ' ')
expect "without SLURM_ARRAY_TASK_ID every task is listed with its index" "0 1 2 3 " "$out"
all=$(RUNS_ROOT="$tmp/runs" sh $S/sweep.sbatch --dry-run "$table")
one=$(sweep_dry 2)
expect "the listing and the single task agree" "$one" "$(printf '%s\n' "$all" | sed -n 3p)"

rc=0
out=$(sweep_dry 4 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
    expect_has "an out-of-range task id is an error naming the range" "$out" "task 4 is out of range"
    expect_has "  ... and saying how many runs the table holds" "$out" "holds 4 runs (tasks 0..3)"
else
    bad "an out-of-range task id is an error" "exit 0, output: $out"
fi
rc=0
out=$(sweep_dry x1 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
    expect_has "a task id that is not a number is an error" "$out" "is not a task number"
else
    bad "a task id that is not a number is an error" "exit 0"
fi

rc=0
out=$(sh $S/sweep.sbatch "$table" 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
    expect_has "sweep.sbatch outside Slurm without --dry-run refuses" "$out" "not inside a Slurm job"
else
    bad "sweep.sbatch outside Slurm without --dry-run refuses" "exit 0: $out"
fi
rc=0
out=$(sh $S/train.sbatch "$tmp/runs/x" --data data/a.h5 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
    expect_has "train.sbatch outside Slurm without --dry-run refuses" "$out" "not inside a Slurm job"
else
    bad "train.sbatch outside Slurm without --dry-run refuses" "exit 0: $out"
fi

printf 'data/a.h5\tone\t1\n' >"$tmp/badtable.tsv"
rc=0
out=$(sh $S/sweep.sbatch --dry-run "$tmp/badtable.tsv" 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
    expect_has "a malformed table line is an error naming the file and line" "$out" "badtable.tsv:1:"
else
    bad "a malformed table line is an error" "exit 0: $out"
fi

# train.sbatch: new run, resume, finished, and a folder without checkpoint.
run="$tmp/runs/single"
out=$(CHECKPOINT_EVERY=5 sh $S/train.sbatch --dry-run "$run" --data data/a.h5 --motif 2)
expect "train.sbatch --dry-run prints the new run's command" \
    "build/settrain train --out $run --backend gpu --checkpoint-every 5 --data data/a.h5 --motif 2" "$out"
mkdir -p "$run"
: >"$run/checkpoint.h5"
out=$(sh $S/train.sbatch --dry-run "$run" --data data/a.h5 --motif 2)
expect "a run folder with checkpoint.h5 is resumed" \
    "build/settrain train --resume $run --backend gpu --checkpoint-every 10" "$out"
printf '{\n  "status": "finished",\n}\n' >"$run/run.json"
out=$(sh $S/train.sbatch --dry-run "$run" --data data/a.h5)
expect_has "a finished run is not run again" "$out" "already finished"
rm -f "$run/checkpoint.h5" "$run/run.json"
: >"$run/metrics.csv"
out=$(sh $S/train.sbatch --dry-run "$run" --data data/a.h5 2>&1)
expect_has "a run killed before its first checkpoint starts again (dry run says so)" \
    "$out" "holds metrics.csv but no checkpoint.h5"
rm -rf "$run"

out=$(SLURM_CPUS_PER_TASK=4 sh $S/train.sbatch --dry-run "$tmp/q" --data d.h5)
expect "one OpenMP thread per CPU of the task (SLURM_CPUS_PER_TASK)" \
    "build/settrain train --out $tmp/q --backend gpu --checkpoint-every 10 --threads 4 --data d.h5" "$out"

out=$(SLURM_NTASKS=4 sh $S/train.sbatch --dry-run "$tmp/q" --data d.h5)
expect "several tasks: the ranks are started by srun" \
    "srun build/settrain train --out $tmp/q --backend gpu --checkpoint-every 10 --data d.h5" "$out"
out=$(SLURM_NTASKS=2 LAUNCHER="mpirun --bind-to core" sh $S/train.sbatch --dry-run "$tmp/q" --data d.h5)
expect "  or by LAUNCHER" \
    "mpirun --bind-to core build/settrain train --out $tmp/q --backend gpu --checkpoint-every 10 --data d.h5" "$out"

out=$(sh $S/train.sbatch --dry-run "$tmp/q" --data "my data.h5")
expect_has "arguments with spaces are printed quoted" "$out" "--data 'my data.h5'"

# submit_sweep.sh computes the array range.
out=$(sh $S/submit_sweep.sh --dry-run "$table")
expect_has "submit_sweep.sh: --array=0-3 for a 4-run table" "$out" "sbatch --array=0-3 "
out=$(MAX_PARALLEL=2 sh $S/submit_sweep.sh --dry-run "$table" -- -p gpu)
expect_has "submit_sweep.sh: MAX_PARALLEL and sbatch options" "$out" "sbatch --array=0-3%2 -p gpu "

# The paper's grid: 27 runs, motifs 1 2 4 x seeds 1..3 for each of three set-ups.
grid=$(sh $S/sweep.sbatch --dry-run)
expect "paper_grid.tsv holds 27 runs (tasks 0..26)" "27" "$(printf '%s\n' "$grid" | grep -c '^[0-9]')"
expect "  9 full FMNIST runs (784-3000-3000-3000-10)" "9" \
    "$(printf '%s\n' "$grid" | grep 'fmnist.h5' | grep -c -- '--hidden 3000,3000,3000 --epochs 300')"
expect "  9 simplified FMNIST runs (784-1000-1000-10)" "9" \
    "$(printf '%s\n' "$grid" | grep 'fmnist.h5' | grep -c -- '--hidden 1000,1000 --epochs 300')"
expect "  9 microarray runs" "9" "$(printf '%s\n' "$grid" | grep -c 'lung.h5')"
combos=$(printf '%s\n' "$grid" | sed -n 's/.*--motif \([0-9]*\) --seed \([0-9]*\).*/\1:\2/p' | sort | uniq -c |
    awk '{print $1 "x" $2}' | tr '\n' ' ')
expect "  each motif (1 2 4) x seed (1..3) three times" \
    "3x1:1 3x1:2 3x1:3 3x2:1 3x2:2 3x2:3 3x4:1 3x4:2 3x4:3 " "$combos"
expect "  every run folder is distinct" "27" \
    "$(printf '%s\n' "$grid" | sed -n 's/.*--out \([^ ]*\).*/\1/p' | sort -u | wc -l | tr -d ' ')"

# The signal path, with stand-ins: a settrain that records its arguments,
# waits for a signal, writes checkpoint.h5 and exits 3 (as the real one
# does), and an scontrol that records the requeue.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/settrain" <<'EOF'
#!/bin/sh
for a in "$@"; do case "$a" in --out | --resume) next=1 ;; *) [ -n "${next:-}" ] && dir=$a; next= ;; esac; done
mkdir -p "$dir"
printf '%s\n' "$*" >>"$dir/calls"
trap 'echo "got $sig" >>"$dir/calls"; : >"$dir/checkpoint.h5"; exit 3' USR1 TERM
sig=signal
echo started >"$dir/started"
i=0
while [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
exit 0
EOF
cat >"$tmp/bin/scontrol" <<EOF
#!/bin/sh
echo "\$*" >>"$tmp/scontrol.log"
EOF
chmod +x "$tmp/bin/settrain" "$tmp/bin/scontrol"
run="$tmp/runs/signalled"
(
    cd "$tmp"
    PATH="$tmp/bin:$PATH" SLURM_JOB_ID=4242 SLURM_SUBMIT_DIR="$PWD" SETTRAIN_ROOT="$OLDPWD" \
        SETTRAIN="$tmp/bin/settrain" exec sh "$OLDPWD/$S/train.sbatch" "$run" --data d.h5
) >"$tmp/job.log" 2>&1 &
job=$!
i=0
while [ ! -f "$run/started" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -s USR1 "$job"
rc=0
wait "$job" || rc=$?
expect "USR1 to the batch shell: the job exits with settrain's code 3" "3" "$rc"
expect_has "  settrain got the signal (forwarded)" "$(cat "$run/calls" 2>/dev/null)" "got signal"
expect "  and the job requeued itself" "requeue 4242" "$(cat "$tmp/scontrol.log" 2>/dev/null)"
rm -f "$run/started"
(
    cd "$tmp"
    PATH="$tmp/bin:$PATH" SLURM_JOB_ID=4242 SLURM_RESTART_COUNT=1 SLURM_SUBMIT_DIR="$PWD" \
        SETTRAIN_ROOT="$OLDPWD" SETTRAIN="$tmp/bin/settrain" \
        exec sh "$OLDPWD/$S/train.sbatch" "$run" --data d.h5
) >>"$tmp/job.log" 2>&1 &
job=$!
i=0
while [ ! -f "$run/started" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -s TERM "$job"
rc=0
wait "$job" || rc=$?
expect "the requeued job resumes from the checkpoint" \
    "train --resume $run --backend gpu --checkpoint-every 10" "$(sed -n 3p "$run/calls" 2>/dev/null)"
expect "  TERM is forwarded too and requeues again" "3 2" \
    "$rc $(grep -c 'requeue 4242' "$tmp/scontrol.log" 2>/dev/null)"
# A settrain still loading its data has no handler yet: the forwarded signal
# kills it, and the job must still requeue (nothing is lost since the last
# checkpoint).
cat >"$tmp/bin/settrain-starting" <<'EOF'
#!/bin/sh
for a in "$@"; do case "$a" in --out | --resume) next=1 ;; *) [ -n "${next:-}" ] && dir=$a; next= ;; esac; done
mkdir -p "$dir"
echo started >"$dir/started"
i=0
while [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
EOF
chmod +x "$tmp/bin/settrain-starting"
run="$tmp/runs/starting"
: >"$tmp/scontrol.log"
(
    cd "$tmp"
    PATH="$tmp/bin:$PATH" SLURM_JOB_ID=77 SLURM_SUBMIT_DIR="$PWD" SETTRAIN_ROOT="$OLDPWD" \
        SETTRAIN="$tmp/bin/settrain-starting" exec sh "$OLDPWD/$S/train.sbatch" "$run" --data d.h5
) >>"$tmp/job.log" 2>&1 &
job=$!
i=0
while [ ! -f "$run/started" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -s USR1 "$job"
rc=0
wait "$job" || rc=$?
expect "a settrain killed by the forwarded signal while starting: exit 138, requeued" \
    "138 requeue 77" "$rc $(cat "$tmp/scontrol.log")"

if [ "$fail" -gt 0 ]; then
    echo "    job log:"
    sed 's/^/      /' "$tmp/job.log"
fi

# profile_nsys.sh: refuses without nsys; with a stand-in nsys, checks the
# flags and that the report lands next to the run.
rc=0
out=$(NSYS="$tmp/no-such-nsys" sh scripts/profile_nsys.sh "$tmp/prof" --data d.h5 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
    expect_has "profile_nsys.sh refuses clearly when nsys is missing" "$out" "is not installed or not on PATH"
else
    bad "profile_nsys.sh refuses when nsys is missing" "exit 0: $out"
fi
cat >"$tmp/bin/nsys" <<'NSYS'
#!/bin/sh
echo "$*" >>"$(dirname "$0")/../nsys.log"
if [ "$1" = stats ]; then echo "NVTX range summary"; exit 0; fi
shift
out=
while [ $# -gt 0 ]; do
    case "$1" in --output=*) out=${1#--output=} ;; -*) ;; *) break ;; esac
    shift
done
: >"$out.nsys-rep"
exec "$@"
NSYS
printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/settrain-ok"
chmod +x "$tmp/bin/nsys" "$tmp/bin/settrain-ok"
rc=0
out=$(NSYS="$tmp/bin/nsys" SETTRAIN="$tmp/bin/settrain-ok" EPOCHS=2 \
    sh scripts/profile_nsys.sh "$tmp/prof" --data d.h5 --motif 2 2>&1) || rc=$?
expect "profile_nsys.sh runs nsys with the documented flags" \
    "profile --trace=cuda,nvtx,cublas,cusparse --sample=none --cpuctxsw=none --force-overwrite=true --output=$tmp/prof/profile $tmp/bin/settrain-ok train --backend gpu --epochs 2 --out $tmp/prof --data d.h5 --motif 2" \
    "$(sed -n 1p "$tmp/nsys.log" 2>/dev/null)"
expect "  the report and its summary are next to the run; exit 0" "0 yes yes" \
    "$rc $([ -f "$tmp/prof/profile.nsys-rep" ] && echo yes) $(grep -q 'NVTX range' "$tmp/prof/profile_stats.txt" 2>/dev/null && echo yes)"

if command -v shellcheck >/dev/null 2>&1; then
    if out=$(shellcheck -x $S/train.sbatch $S/sweep.sbatch $S/submit_sweep.sh $S/run_lib.sh \
        $S/local_cluster.sh scripts/profile_nsys.sh tests/test_slurm.sh tests/test_slurm_real.sh 2>&1); then
        ok "shellcheck: the Slurm and profiling scripts are clean"
    else
        bad "shellcheck: the Slurm and profiling scripts are clean" "$out"
    fi
else
    skipped "shellcheck is not installed"
fi

summary
