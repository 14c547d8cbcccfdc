#!/bin/sh
# submit_sweep.sh: submits a run table as one Slurm job array of
# sweep.sbatch, with --array=0-(runs - 1) computed from the table (blank and
# # lines skipped), so that adding a row never needs a hand-edited range.
#
# Usage (from the repository root, after `make`):
#   sh scripts/slurm/submit_sweep.sh [--dry-run] [TABLE] [-- sbatch options...]
#   e.g. sh scripts/slurm/submit_sweep.sh scripts/slurm/paper_grid.tsv -- -p gpu --time=08:00:00
# TABLE defaults to scripts/slurm/paper_grid.tsv. MAX_PARALLEL=K (environment)
# lets at most K tasks run at once (--array=0-N%K). --dry-run prints the
# sbatch command instead of running it. Exit code: sbatch's, 1 for a bad
# table, 2 for bad arguments.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/slurm/run_lib.sh
. "$root/scripts/slurm/run_lib.sh"
st_name=submit_sweep.sh

dry=0
if [ "${1:-}" = "--dry-run" ]; then
    dry=1
    shift
fi
table=$root/scripts/slurm/paper_grid.tsv
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    table=$1
    shift
fi
if [ $# -gt 0 ]; then
    if [ "$1" != "--" ]; then
        echo "usage: $0 [--dry-run] [TABLE] [-- sbatch options...]" >&2
        exit 2
    fi
    shift
fi

rows=$(st_table_rows "$table") || exit 1
n=$(printf '%s' "$rows" | grep -c '^' || true)
[ "$n" -gt 0 ] || st_die "$table holds no runs"
range="0-$((n - 1))"
if [ -n "${MAX_PARALLEL:-}" ]; then
    if ! st_is_uint "$MAX_PARALLEL" || [ "$MAX_PARALLEL" -eq 0 ]; then
        st_die "MAX_PARALLEL '$MAX_PARALLEL' is not a positive number"
    fi
    range="$range%$MAX_PARALLEL"
fi
# Absolute, so that the tasks find it whatever their working folder.
case "$table" in
/*) ;;
*) table="$(pwd)/$table" ;;
esac

set -- sbatch --array="$range" "$@" "$root/scripts/slurm/sweep.sbatch" "$table"
if [ "$dry" = 1 ]; then
    st_quote "$@"
    exit 0
fi
command -v sbatch >/dev/null 2>&1 || st_die "sbatch not found: run this on a Slurm login node (or use --dry-run)"
echo "$st_name: $n runs from $table"
cd "$root"
exec "$@"
