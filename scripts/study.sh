#!/bin/sh
# study.sh: runs one experiment preset (presets/<name>.preset): makes the data
# file if it is missing (with the preset's `prepare` line), trains once per
# motif size and seed with `settrain train` into
#   STUDY_DIR/<backend>/m<M>_s<S>/            (STUDY_DIR: results/<name>)
# skipping runs whose run.json says "finished" and resuming, with
# `settrain train --resume`, runs whose folder holds a checkpoint.h5 but did not
# finish; then writes STUDY_DIR/report.md with scripts/report.sh. A run folder
# that holds a run with other settings is refused, never overwritten; one that
# died before its first checkpoint is moved aside to <folder>.stale-<time>.
#
# usage: scripts/study.sh PRESET [--backend cpu|gpu|auto] [--epochs N]
#                         [--seeds "S1 S2 ..."] [--threads T] [--out DIR]
#                         [--checkpoint-every N] [--quiet] [--dry-run]
#   PRESET      a preset file, or the name of one in presets/ (e.g. tox171-full)
#   --backend   settrain's backend [auto: gpu when the build has the GPU backend
#               and nvidia-smi lists a GPU, else cpu]; the folder is named after
#               the backend actually used
#   --epochs N  train N epochs instead of the preset's (also: EPOCHS=N in the
#               environment); STUDY_DIR becomes results/<name>-e<N>, so short
#               runs never mix with the preset's
#   --seeds L   train these seeds (blanks or commas between them) instead of the
#               preset's, into the same STUDY_DIR (runs are m<M>_s<S>: a later
#               invocation without --seeds adds the other seeds)
#   --threads T CPU threads for settrain [all cores]
#   --out DIR   STUDY_DIR instead of results/<name>[-e<N>]
#   --checkpoint-every N  also checkpoint every N epochs, so that a run killed
#               without warning (SIGKILL, a node lost) resumes from there; a
#               SIGTERM or SIGINT always leaves a checkpoint
#   --quiet     pass --quiet to settrain (no line per epoch)
#   --dry-run   print what would be run (and what is skipped), run nothing
# A run that diverged (run.json status "diverged") is a result, not an accident:
# it is neither resumed nor retrained (the same seed would diverge again); the
# other runs go on, the report lists it, and the exit status is 1.
# Also writes STUDY_DIR/study.preset (the preset as run, with the effective
# epochs) and STUDY_DIR/<backend>/study.env (the command line, date, backend).
# Paths in a preset are relative to the repository root; the script runs
# there. Preset format: see presets/README.md.
# environment: BIN (settrain; default ${BUILD:-build}/settrain), EPOCHS
# exit status: 0; 1 an error (one line "study: error: ..."), or a run diverged
# (after the other runs and the report); 2 a bad command line; 3 a training was
# interrupted (run the same command again to resume)
set -eu
set -f   # no globbing: preset values are split into words, never expanded

me=study
die() { printf '%s: error: %s\n' "$me" "$*" >&2; exit 1; }
usage_die() { printf '%s: error: %s (see scripts/study.sh --help)\n' "$me" "$*" >&2; exit 2; }
say() { printf '%s: %s\n' "$me" "$*"; }
tab=$(printf '\t')
root=$(cd "$(dirname "$0")/.." && pwd -P)
here=$(pwd -P)

usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'; }

# shell-quoted word, for printing commands
q() {
    case $1 in
    '' | *[!A-Za-z0-9_./:=,+@%-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
    esac
}
# absolute path of a (possibly not yet existing) path given relative to the caller
absp() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$here" "$1" ;; esac; }
# a path as printed: relative to the repository root when inside it
show() { case $1 in "$root"/*) printf '%s' "${1#"$root"/}" ;; *) printf '%s' "$1" ;; esac; }

list_presets() {
    find "$root/presets" -name '*.preset' -type f 2>/dev/null | sed 's|.*/||; s/\.preset$//' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'
}

preset_arg=""
backend=auto
epochs_opt=""
seeds_opt=""
seeds_given=0
seeds_raw=""
threads=""
ckpt=""
out=""
quiet=0
dry=0
cmdline="scripts/study.sh"
while [ $# -gt 0 ]; do
    cmdline="$cmdline $(q "$1")"
    case $1 in
    --help | -h) usage; exit 0 ;;
    --backend | --epochs | --seeds | --threads | --out | --checkpoint-every)
        [ $# -ge 2 ] || usage_die "option '$1' needs a value"
        cmdline="$cmdline $(q "$2")"
        case $1 in
        --backend) backend=$2 ;;
        --epochs) epochs_opt=$2 ;;
        --seeds) seeds_given=1; seeds_raw=$2; seeds_opt=$(printf '%s\n' "$2" | tr ',' ' ' | awk '{ $1 = $1; print }') ;;
        --threads) threads=$2 ;;
        --out) out=$2 ;;
        --checkpoint-every) ckpt=$2 ;;
        esac
        shift 2 ;;
    --quiet) quiet=1; shift ;;
    --dry-run) dry=1; shift ;;
    -*) usage_die "unknown option '$1'" ;;
    *)
        [ -z "$preset_arg" ] || usage_die "one preset only ('$preset_arg' and '$1' given)"
        preset_arg=$1; shift ;;
    esac
done
[ -n "$preset_arg" ] || usage_die "no preset given (one of: $(list_presets))"
case $backend in cpu | gpu | auto) ;; *) usage_die "--backend '$backend': expected cpu, gpu or auto" ;; esac
case $epochs_opt in '') ;; *[!0-9]* | 0) usage_die "--epochs '$epochs_opt': expected a positive integer" ;; esac
case $threads in '') ;; *[!0-9]* | 0) usage_die "--threads '$threads': expected a positive integer" ;; esac
if [ "$seeds_given" -eq 1 ]; then
    case $seeds_opt in
    '' | *[!0-9' ']*) usage_die "--seeds '$seeds_raw': expected seeds (non-negative integers) separated by blanks or commas" ;;
    esac
fi
case $ckpt in '') ;; *[!0-9]* | 0) usage_die "--checkpoint-every '$ckpt': expected a positive integer" ;; esac

# --- the preset ---------------------------------------------------------------------
if [ -f "$preset_arg" ]; then
    preset=$(absp "$preset_arg")
elif [ -f "$root/presets/$preset_arg.preset" ]; then
    preset=$root/presets/$preset_arg.preset
else
    die "preset '$preset_arg': no such file, and no presets/$preset_arg.preset (presets: $(list_presets))"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/study.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'say "interrupted: run the same command again to resume"; exit 130' INT
trap 'say "terminated: run the same command again to resume"; exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# Validates the preset and prints key<TAB>value; one error line per problem.
awk -v file="$(show "$preset")" -v OFS="$tab" '
function err(msg) { printf "%s:%d: %s\n", file, NR, msg > "/dev/stderr"; bad = 1 }
function isnum(v) { return v ~ /^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ }
function isint(v) { return v ~ /^[0-9]+$/ }
BEGIN {
    n = split("name description data prepare motifs seeds hidden epsilon zeta epochs batch lr momentum weight_decay dropout activation init pad_input train_limit checkpoint_every paper paper_s paper_epochs paper_source paper_note", k, " ")
    for (i = 1; i <= n; i++) { known[k[i]] = 1; klist = klist (i > 1 ? ", " : "") k[i] }
}
{ sub(/\r$/, "") }
/^[ \t]*(#.*)?$/ { next }
{
    line = $0
    sub(/[ \t]+#.*$/, "", line)
    e = index(line, "=")
    if (!e) { err("not a key=value line: " $0); next }
    key = substr(line, 1, e - 1); v = substr(line, e + 1)
    gsub(/^[ \t]+|[ \t]+$/, "", key); gsub(/^[ \t]+|[ \t]+$/, "", v)
    gsub(/[ \t]+/, " ", v)
    if (!(key in known)) { err("unknown key \"" key "\" (known keys: " klist ")"); next }
    if (key in val) { err("key \"" key "\" given twice (first on line " at[key] ")"); next }
    if (v == "") { err("key \"" key "\" has no value"); next }
    ok = 1
    if (key == "name") ok = (v ~ /^[A-Za-z0-9][A-Za-z0-9._-]*$/)
    else if (key == "data") ok = (v !~ / /)
    else if (key == "prepare") ok = (v ~ /^prepare /)
    else if (key == "motifs" || key == "seeds") ok = (v ~ /^[0-9]+( [0-9]+)*$/) && (key == "seeds" || v !~ /(^| )0+( |$)/)
    else if (key == "hidden") ok = (v ~ /^[0-9]+(,[0-9]+)*$/)
    else if (key == "epochs" || key == "batch" || key == "train_limit" || key == "checkpoint_every" || key == "paper_epochs") ok = isint(v)
    else if (key == "epsilon" || key == "zeta" || key == "lr" || key == "momentum" || key == "weight_decay" || key == "dropout") ok = isnum(v)
    else if (key == "activation") ok = (v ~ /^(relu|allrelu|sigmoid|tanh)$/)
    else if (key == "init") ok = (v ~ /^[a-z][a-z0-9-]*$/)
    else if (key == "pad_input") ok = (v ~ /^(true|false)$/)
    else if (key == "paper") ok = (v ~ /^[0-9]+:[0-9.]+:[0-9.]+( [0-9]+:[0-9.]+:[0-9.]+)*$/)
    else if (key == "paper_s") ok = (v ~ /^[0-9]+:-?[0-9.]+( [0-9]+:-?[0-9.]+)*$/)
    if (!ok) { err("bad value for \"" key "\": " v); next }
    val[key] = v; at[key] = NR; order[++no] = key
}
END {
    if (NR == 0) { printf "%s: empty preset\n", file > "/dev/stderr"; exit 1 }
    m = split("name data motifs hidden", req, " ")
    for (i = 1; i <= m; i++) if (!(req[i] in val)) { printf "%s: required key \"%s\" is missing\n", file, req[i] > "/dev/stderr"; bad = 1 }
    if (bad) exit 1
    for (i = 1; i <= no; i++) print order[i], val[order[i]]
}' "$preset" >"$tmp/preset.tsv" || die "$(show "$preset"): not a valid preset (see the lines above)"

pget() { awk -F "$tab" -v k="$1" '$1 == k { print $2; exit }' "$tmp/preset.tsv"; }
name=$(pget name)
data=$(pget data)
prepare=$(pget prepare)
motifs=$(pget motifs)
seeds=$(pget seeds)
[ -n "$seeds" ] || seeds=1
seeds_from=preset
if [ -n "$seeds_opt" ]; then seeds=$seeds_opt; seeds_from=--seeds; fi
preset_epochs=$(pget epochs)
epochs=$preset_epochs
epochs_from=preset
if [ -n "$epochs_opt" ]; then
    epochs=$epochs_opt; epochs_from=--epochs
elif [ -n "${EPOCHS:-}" ]; then
    case $EPOCHS in *[!0-9]* | 0) die "EPOCHS='$EPOCHS': expected a positive integer" ;; esac
    epochs=$EPOCHS; epochs_from=EPOCHS
fi
override=0
[ "$epochs_from" = preset ] || [ "$epochs" = "$preset_epochs" ] || override=1

if [ -n "$out" ]; then
    study=$(absp "$out")
elif [ "$override" -eq 1 ]; then
    study=$root/results/$name-e$epochs
else
    study=$root/results/$name
fi

# --- settrain and the backend --------------------------------------------------------
BIN=${BIN:-${BUILD:-build}/settrain}
case $BIN in
/*) ;;
*) if [ -x "$here/$BIN" ]; then BIN=$here/$BIN; else BIN=$root/$BIN; fi ;;
esac
[ -x "$BIN" ] || die "$(show "$BIN"): settrain is not built (run make NVCC= for the CPU backend, or make)"
version=$("$BIN" --version) || die "$(show "$BIN") --version failed"
if [ "$backend" = auto ]; then
    if printf '%s\n' "$version" | grep -q '^backends:.*gpu' && ! printf '%s\n' "$version" | grep -q 'without CUDA' &&
        command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
        backend=gpu
    else
        backend=cpu
    fi
    say "--backend auto: using $backend"
fi
if [ "$backend" = gpu ] && printf '%s\n' "$version" | grep -q 'without CUDA'; then
    die "--backend gpu: $(show "$BIN") was built without CUDA (build with make where nvcc is installed)"
fi

cd "$root"

# train options from the preset, in settrain's spelling (values hold no spaces)
opts="--hidden $(pget hidden)"
for k in epsilon zeta batch lr momentum weight_decay dropout activation init train_limit checkpoint_every; do
    v=$(pget "$k")
    [ "$k" != checkpoint_every ] || [ -z "$ckpt" ] || v=""   # --checkpoint-every wins
    [ -z "$v" ] || opts="$opts --$(echo "$k" | tr _ -) $v"
done
[ "$(pget pad_input)" != true ] || opts="$opts --pad-input"
[ -z "$epochs" ] || opts="$opts --epochs $epochs"
opts="$opts --backend $backend"
[ -z "$threads" ] || opts="$opts --threads $threads"
[ -z "$ckpt" ] || opts="$opts --checkpoint-every $ckpt"
[ "$quiet" -eq 0 ] || opts="$opts --quiet"
run_opts="--backend $backend"
[ -z "$threads" ] || run_opts="$run_opts --threads $threads"
[ -z "$ckpt" ] || run_opts="$run_opts --checkpoint-every $ckpt"
[ "$quiet" -eq 0 ] || run_opts="$run_opts --quiet"

ep_said=$epochs
[ -n "$ep_said" ] || ep_said="settrain's default"
say "preset $(show "$preset"): $name, motifs $motifs, seeds $seeds ($seeds_from), $ep_said epochs ($epochs_from), backend $backend"
say "study folder $(show "$study")"

# run CMD...: print it; run it unless --dry-run
run() {
    line=""
    for a in "$@"; do line="$line${line:+ }$(q "$(show "$a")")"; done
    if [ "$dry" -eq 1 ]; then
        printf '%s\n' "$line"
        return 0
    fi
    printf '+ %s\n' "$line"
    "$@"
}

# --- data -------------------------------------------------------------------------------
if [ ! -f "$data" ]; then
    [ -n "$prepare" ] || die "$data is missing and the preset has no prepare line to make it"
    # shellcheck disable=SC2086  # the prepare line is split into words on purpose
    if ! run "$BIN" $prepare; then
        die "preparing $data failed (the preset $(show "$preset") says where its source file comes from)"
    fi
    [ "$dry" -eq 1 ] || [ -f "$data" ] || die "the preset's prepare line did not make $data (it must write the preset's data file)"
fi

# --- the record of this study --------------------------------------------------------------
if [ "$dry" -eq 0 ]; then
    mkdir -p "$study/$backend"
    was=$preset_epochs
    [ -n "$was" ] || was="settrain's default"
    {
        echo "# copied by scripts/study.sh from $(show "$preset") on $(date -u +%Y-%m-%dT%H:%MZ)"
        [ "$override" -eq 0 ] || echo "# epochs overridden ($epochs_from): $epochs instead of $was"
        [ "$seeds_from" = preset ] || echo "# this invocation trained seeds $seeds (--seeds); the preset's seeds are below"
        awk -v ep="$epochs" -v ov="$override" -v was="$was" -v from="$epochs_from" '
            ov == 1 && /^[ \t]*epochs[ \t]*=/ { print "epochs=" ep; done = 1; next }
            ov == 1 && /^[ \t]*description[ \t]*=/ { print $0 " This study: " ep " epochs instead of " was " (" from ")."; next }
            { print }
            END { if (ov == 1 && !done) print "epochs=" ep }' "$preset"
    } >"$study/study.preset.tmp"
    mv "$study/study.preset.tmp" "$study/study.preset"
    {
        echo "# written by scripts/study.sh: its last invocation for this backend"
        echo "preset=$(show "$preset")"
        echo "name=$name"
        echo "backend=$backend"
        echo "epochs=$epochs"
        echo "threads=${threads:-all}"
        echo "settrain=$(printf '%s\n' "$version" | head -n 1)"
        echo "command=$cmdline"
        echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    } >"$study/$backend/study.env"
fi

# check_config DIR MOTIF SEED: the run in DIR has the settings this study would use
check_config() {
    sh "$root/scripts/report.sh" --flatten "$1/run.json" >"$tmp/run.tsv" ||
        die "$(show "$1")/run.json: cannot be read"
    # run.json records the data path as given (older files) or resolved to an
    # absolute path without symbolic links (newer ones): either matches
    data_real=$(realpath "$data" 2>/dev/null) ||
        data_real=$(cd "$(dirname "$data")" 2>/dev/null && printf '%s/%s' "$(pwd -P)" "$(basename "$data")") || data_real=""
    {
        printf 'data\t%s\t%s\n' "$data" "$data_real"
        printf 'motif\t%s\n' "$2"
        printf 'seed\t%s\n' "$3"
        [ -z "$epochs" ] || printf 'epochs\t%s\n' "$epochs"
        printf 'hidden\t%s\n' "$(pget hidden)"
        for k in epsilon zeta batch lr momentum weight_decay dropout activation init pad_input train_limit; do
            v=$(pget "$k")
            [ -z "$v" ] || printf '%s\t%s\n' "$k" "$v"
        done
    } >"$tmp/want.tsv"
    # run.json files written before --init and --pad-input existed have neither:
    # their runs used what are now the defaults
    awk -F "$tab" '
        function same(a, b,   d, m) {
            if (a == b) return 1
            if (a !~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ || b !~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/) return 0
            d = a - b; if (d < 0) d = -d
            m = (a < 0 ? -a : a); if ((b < 0 ? -b : b) > m) m = (b < 0 ? -b : b)
            return d <= 1e-9 * m
        }
        NR == FNR { have[$1] = $2; next }
        FNR == 1 { if (!("config.init" in have)) have["config.init"] = "he"
                   if (!("config.pad_input" in have)) have["config.pad_input"] = "false" }
        { k = "config." $1
          if (!(k in have)) { printf "%s %s (run.json has none)", sep, $1; sep = ","; bad = 1 }
          else if (NF >= 3 && $3 != "" && have[k] == $3) { }
          else if (!same(have[k], $2)) { printf "%s %s %s (this study: %s)", sep, $1, have[k], $2; sep = ","; bad = 1 } }
        END { exit bad }' "$tmp/run.tsv" "$tmp/want.tsv" >"$tmp/diff" && return 0
    die "$(show "$1") holds a run with other settings:$(cat "$tmp/diff"); use another --out, or move that folder away"
}

# --- the runs -----------------------------------------------------------------------------------
# shellcheck disable=SC2086  # count the words
total=$(( $(printf '%s\n' $seeds | wc -l) * $(printf '%s\n' $motifs | wc -l) ))
i=0
diverged=""
# run_error: run.json's error member (the flattened run.json in $tmp/run.tsv)
run_error() { awk -F "$tab" '$1 == "error" { print $2; exit }' "$tmp/run.tsv"; }
for seed in $seeds; do
    for m in $motifs; do
        i=$((i + 1))
        dir=$study/$backend/m${m}_s$seed
        tag="[$i/$total] m = $m, seed $seed"
        action=train
        if [ -f "$dir/run.json" ]; then
            check_config "$dir" "$m" "$seed"
            status=$(awk -F "$tab" '$1 == "status" { print $2 }' "$tmp/run.tsv")
            if [ "$status" = finished ]; then
                say "$tag: skip $(show "$dir") (finished)"
                continue
            fi
            if [ "$status" = diverged ]; then
                say "$tag: skip $(show "$dir") (diverged: $(run_error); the same seed diverges again: move the folder away to retry)"
                diverged="$diverged m$m/s$seed"
                continue
            fi
            if [ -f "$dir/checkpoint.h5" ]; then action=resume; else action=stale; fi
        elif [ -f "$dir/metrics.csv" ]; then
            action=stale
        fi
        if [ "$action" = stale ]; then
            aside=$dir.stale-$(date +%Y%m%d-%H%M%S)
            say "$tag: $(show "$dir") holds a run that stopped before its first checkpoint; moving it to $(show "$aside")"
            [ "$dry" -eq 1 ] || mv "$dir" "$aside"
            action=train
        fi
        rc=0
        if [ "$action" = resume ]; then
            say "$tag: resume $(show "$dir") (status $status)"
            # shellcheck disable=SC2086  # option words, no spaces in their values
            run "$BIN" train --resume "$dir" $run_opts || rc=$?
        else
            say "$tag: train into $(show "$dir")"
            # shellcheck disable=SC2086
            run "$BIN" train --data "$data" --motif "$m" --seed "$seed" $opts --out "$dir" || rc=$?
        fi
        if [ "$rc" -eq 3 ]; then
            say "$tag: interrupted; its checkpoint is in $(show "$dir"): run the same command again to resume"
            exit 3
        elif [ "$rc" -ne 0 ]; then
            if [ "$dry" -eq 0 ] && [ -f "$dir/run.json" ] &&
                sh "$root/scripts/report.sh" --flatten "$dir/run.json" >"$tmp/run.tsv" 2>/dev/null &&
                [ "$(awk -F "$tab" '$1 == "status" { print $2 }' "$tmp/run.tsv")" = diverged ]; then
                say "$tag: diverged ($(run_error)); going on with the other runs"
                diverged="$diverged m$m/s$seed"
                continue
            fi
            die "$tag: settrain train failed (exit $rc)"
        fi
    done
done

# --- the report -------------------------------------------------------------------------------------
if [ "$dry" -eq 1 ]; then
    run sh scripts/report.sh "$study"
    exit 0
fi
sh "$root/scripts/report.sh" "$study" || die "the report failed"
[ -z "$diverged" ] || die "runs that diverged (listed in the report, not retrained):$diverged"
